-- Variant E (a prototype, not shipped): a task's end goes into a narrow insert-only table,
-- `task_ends`, and its `tasks` row is never written after creation. The indexes are those the reads
-- of finished tasks would need: by id, the windows' and retention's range on completed_at (covering),
-- a droplet's list, and the failed tasks recovery retries.
CREATE TABLE task_ends (
    task_id BIGINT PRIMARY KEY,
    status VARCHAR(20) NOT NULL,
    assigned_droplet_id BIGINT,
    attempt INT NOT NULL,
    assigned_at TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP NOT NULL,
    result JSONB,
    error_message TEXT,
    retry_count INT,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX idx_task_ends_completed_at ON task_ends (completed_at)
    INCLUDE (status, assigned_droplet_id, assigned_at, started_at);
CREATE INDEX idx_task_ends_droplet ON task_ends (assigned_droplet_id);
CREATE INDEX idx_task_ends_failed ON task_ends (task_id) WHERE status = 'failed';
