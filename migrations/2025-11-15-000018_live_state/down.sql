DROP VIEW task_view;
ALTER TABLE task_state_history ADD CONSTRAINT task_state_history_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasks(id) ON DELETE CASCADE NOT VALID;
ALTER TABLE tasks ADD COLUMN routing_lease_until TIMESTAMP;
UPDATE tasks t SET status = r.status, assigned_droplet_id = r.assigned_droplet_id, assigned_at = r.assigned_at,
    started_at = r.started_at, completed_at = r.completed_at, result = r.result,
    error_message = r.error_message, retry_count = r.retry_count, updated_at = r.updated_at,
    retry_after = r.retry_after, attempt = r.attempt, cancel_requested_at = r.cancel_requested_at,
    requeues = r.requeues, progress = r.progress, progress_message = r.progress_message,
    progress_at = r.progress_at
FROM task_runs r WHERE r.task_id = t.id;
UPDATE tasks t SET routing_lease_until = q.routing_lease_until FROM task_queue q WHERE q.task_id = t.id;
DROP INDEX idx_tasks_failed;
CREATE INDEX idx_tasks_recoverable ON tasks (id) WHERE status IN ('assigned', 'in_progress', 'failed');
CREATE INDEX idx_tasks_held_by_droplet ON tasks (assigned_droplet_id) WHERE status IN ('assigned', 'in_progress');
CREATE INDEX idx_tasks_pending_order ON tasks (priority, deadline, created_at, id) WHERE status = 'pending';
DROP TABLE task_runs;
DROP TABLE task_queue;
