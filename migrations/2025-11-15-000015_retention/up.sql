-- Retention: the task_retention job deletes the tasks finished long ago,
-- with their history. It finds them by completion time among finished
-- rows only, so that its deletes never read, let alone lock, live work.
CREATE INDEX idx_tasks_finished_completed_at ON tasks (completed_at)
    WHERE status IN ('completed', 'cancelled', 'failed');
