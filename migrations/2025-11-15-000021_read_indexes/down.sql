-- pg_trgm stays: other objects of the database may use it.
DROP INDEX idx_tasks_title_trgm;

DROP INDEX idx_tasks_created_at;
CREATE INDEX idx_tasks_created_at ON tasks (created_at DESC);

DROP INDEX idx_tasks_finished_completed_at;
CREATE INDEX idx_tasks_finished_completed_at ON tasks (completed_at)
    WHERE status IN ('completed', 'cancelled', 'failed');
