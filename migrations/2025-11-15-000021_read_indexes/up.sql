-- Indexes shaped for what the dashboard and the API read at millions of
-- finished tasks (docs/benchmarks.md, "Every page at a million tasks").

-- The metric windows: every window ends within the last hour, and a task
-- assigned in a window finished (if it did) after the window began, so
-- the finished tasks a window counts all lie in this index from the
-- window's start on. It carries the columns the windows read, so that a
-- day of tasks is an index-only range, not a fetch of each row. Retention
-- reads it as before (its key and predicate are unchanged).
DROP INDEX idx_tasks_finished_completed_at;
CREATE INDEX idx_tasks_finished_completed_at ON tasks (completed_at)
    INCLUDE (status, task_type, assigned_droplet_id, created_at, assigned_at, started_at)
    WHERE status IN ('completed', 'cancelled', 'failed');

-- The list's order, newest first with the id breaking ties: a page, a
-- cursor and an offset walk it from its head without a sort.
DROP INDEX idx_tasks_created_at;
CREATE INDEX idx_tasks_created_at ON tasks (created_at DESC, id DESC);

-- The list's search (`title ILIKE '%text%'`) by trigrams. pg_trgm ships
-- with PostgreSQL and is a trusted extension: the database's owner may
-- create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX idx_tasks_title_trgm ON tasks USING gin (title gin_trgm_ops);
