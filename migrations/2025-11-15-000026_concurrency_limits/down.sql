DROP TABLE concurrency_limits;
DROP INDEX idx_task_runs_concurrency_key;
-- A view loses columns only by being made again.
DROP VIEW task_view;
CREATE VIEW task_view AS
SELECT t.id, t.trace_id, t.task_type, t.title, t.description, t.payload, t.required_capability,
       CASE WHEN r.task_id IS NULL THEN t.assigned_droplet_id ELSE r.assigned_droplet_id END AS assigned_droplet_id,
       CASE WHEN r.task_id IS NULL THEN t.status ELSE r.status END AS status,
       t.priority, t.created_at,
       CASE WHEN r.task_id IS NULL THEN t.assigned_at ELSE r.assigned_at END AS assigned_at,
       CASE WHEN r.task_id IS NULL THEN t.started_at ELSE r.started_at END AS started_at,
       CASE WHEN r.task_id IS NULL THEN t.completed_at ELSE r.completed_at END AS completed_at,
       t.deadline,
       CASE WHEN r.task_id IS NULL THEN t.result ELSE r.result END AS result,
       CASE WHEN r.task_id IS NULL THEN t.error_message ELSE r.error_message END AS error_message,
       CASE WHEN r.task_id IS NULL THEN t.retry_count ELSE r.retry_count END AS retry_count,
       t.max_retries, t.created_by,
       CASE WHEN r.task_id IS NULL THEN t.updated_at ELSE r.updated_at END AS updated_at,
       CASE WHEN r.task_id IS NULL THEN t.retry_after ELSE r.retry_after END AS retry_after,
       t.deadline_risk_at,
       CASE WHEN r.task_id IS NULL THEN t.attempt ELSE r.attempt END AS attempt,
       CASE WHEN r.task_id IS NULL THEN t.cancel_requested_at ELSE r.cancel_requested_at END AS cancel_requested_at,
       t.timeout_seconds,
       CASE WHEN r.task_id IS NULL THEN t.progress ELSE r.progress END AS progress,
       CASE WHEN r.task_id IS NULL THEN t.progress_message ELSE r.progress_message END AS progress_message,
       CASE WHEN r.task_id IS NULL THEN t.progress_at ELSE r.progress_at END AS progress_at,
       CASE WHEN r.task_id IS NULL THEN t.requeues ELSE r.requeues END AS requeues,
       t.status AS stored_status,
       r.status AS run_status,
       t.run_at
FROM tasks t
LEFT JOIN task_runs r ON r.task_id = t.id;
ALTER TABLE task_runs DROP COLUMN concurrency_key;
ALTER TABLE task_queue DROP COLUMN concurrency_key;
ALTER TABLE tasks DROP COLUMN concurrency_key;
