DROP INDEX idx_tasks_recoverable;
ALTER TABLE droplets DROP COLUMN session_started_at;
ALTER TABLE tasks
    DROP COLUMN timeout_seconds,
    DROP COLUMN progress,
    DROP COLUMN progress_message,
    DROP COLUMN progress_at,
    DROP COLUMN requeues;
