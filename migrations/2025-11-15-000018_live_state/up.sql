-- The live state of unfinished work, apart from the wide row
-- (docs/storage-layout.md). Every change of a running task used to write a
-- new version of its `tasks` row (payload, result) and an entry in each of
-- the table's indexes, because `status` and the droplet are indexed.
--
-- `task_queue`: one row per task waiting for a droplet, inserted when the
-- task becomes pending and deleted when it is assigned or ends. Its one
-- ordering index is the routing order, so the pick walks it from its head
-- whatever the planner's statistics say.
CREATE TABLE task_queue (
    task_id             BIGINT PRIMARY KEY,
    priority            INTEGER,
    deadline            TIMESTAMP,
    created_at          TIMESTAMP NOT NULL,
    required_capability VARCHAR(100),
    attempt             INTEGER NOT NULL,
    retry_after         TIMESTAMP,
    routing_lease_until TIMESTAMP
);
CREATE INDEX idx_task_queue_order ON task_queue (priority, deadline, created_at, task_id);

-- `task_runs`: one row per task a droplet holds (assigned or in progress),
-- with every column a transition or a progress report changes, under the
-- same names as in `tasks`. Inserted at assignment, updated at start, on
-- progress and on a cancel request, deleted when the task leaves the
-- droplet (its final state is then written to `tasks`). No index covers a
-- column that changes during a run, and half of each page is left free so
-- that a batch's updates find room beside the rows they replace: they are
-- heap-only.
CREATE TABLE task_runs (
    task_id             BIGINT PRIMARY KEY,
    assigned_droplet_id BIGINT NOT NULL,
    status              VARCHAR(20) NOT NULL CHECK (status IN ('assigned', 'in_progress')),
    assigned_at         TIMESTAMP,
    started_at          TIMESTAMP,
    completed_at        TIMESTAMP,
    result              JSONB,
    error_message       TEXT,
    retry_count         INTEGER,
    updated_at          TIMESTAMP,
    retry_after         TIMESTAMP,
    attempt             INTEGER NOT NULL,
    cancel_requested_at TIMESTAMP,
    requeues            INTEGER NOT NULL,
    progress            SMALLINT CHECK (progress BETWEEN 0 AND 100),
    progress_message    TEXT,
    progress_at         TIMESTAMP
) WITH (fillfactor = 50);
-- The droplet does not change during a run, so this index costs no update
-- its heap-only path.
CREATE INDEX idx_task_runs_droplet ON task_runs (assigned_droplet_id);

-- Today's unfinished work moves in. A held task without a droplet cannot
-- be run by anyone: it waits for routing again.
INSERT INTO task_runs (task_id, assigned_droplet_id, status, assigned_at, started_at, completed_at, result,
                       error_message, retry_count, updated_at, retry_after, attempt, cancel_requested_at,
                       requeues, progress, progress_message, progress_at)
SELECT id, assigned_droplet_id, status, assigned_at, started_at, completed_at, result, error_message,
       retry_count, updated_at, retry_after, attempt, cancel_requested_at, requeues, progress,
       progress_message, progress_at
FROM tasks
WHERE status IN ('assigned', 'in_progress') AND assigned_droplet_id IS NOT NULL;
UPDATE tasks SET assigned_droplet_id = NULL, assigned_at = NULL, started_at = NULL
WHERE status IN ('assigned', 'in_progress') AND assigned_droplet_id IS NULL;
INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt, retry_after,
                        routing_lease_until)
SELECT id, priority, deadline, coalesce(created_at, now() AT TIME ZONE 'UTC'), required_capability, attempt,
       retry_after, routing_lease_until
FROM tasks
WHERE status = 'pending' OR (status IN ('assigned', 'in_progress') AND assigned_droplet_id IS NULL);
-- `tasks.status` is now `pending` for all unfinished work and final
-- otherwise; `task_view` says which unfinished state a task is in.
UPDATE tasks SET status = 'pending' WHERE status IN ('assigned', 'in_progress');

DROP INDEX idx_tasks_pending_order;
DROP INDEX idx_tasks_held_by_droplet;
DROP INDEX idx_tasks_recoverable;
-- Recovery's retries read failed tasks; the held ones are `task_runs`.
CREATE INDEX idx_tasks_failed ON tasks (id) WHERE status = 'failed';
ALTER TABLE tasks DROP COLUMN routing_lease_until;

-- A history row no longer locks (and dirties) the task it is about: the
-- statement that writes a task writes its history, so a row for a task
-- that does not exist cannot be written, and retention deletes a task's
-- history with it.
ALTER TABLE task_state_history DROP CONSTRAINT task_state_history_task_id_fkey;

-- Every task as the API shows it: its live state where a droplet holds it,
-- else its row. `stored_status` and `run_status` let a filter on the
-- status use the index of the table that holds it.
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
       r.status AS run_status
FROM tasks t
LEFT JOIN task_runs r ON r.task_id = t.id;
