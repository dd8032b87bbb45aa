-- Workflows (issue "Time and dependencies"): tasks submitted together, some
-- depending on others. The tasks are ordinary tasks; these tables say which
-- workflow each belongs to and what it waits for. Like the task's other side
-- tables they have no foreign keys: retention deletes their rows with the
-- task (`DELETE_FINISHED`).
--
-- A task waiting for its dependencies is pending and queued, with its queue
-- row's `not_before` at 'infinity': no pick ever reaches it, and its queue
-- row stays the lock of its compare-and-set, so cancelling it is the usual
-- change. Releasing it sets `not_before` back to its `run_at`.
CREATE TABLE workflows (
    id         BIGSERIAL PRIMARY KEY,
    name       VARCHAR(100),
    created_by TEXT,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE workflow_tasks (
    task_id               BIGINT PRIMARY KEY,
    workflow_id           BIGINT NOT NULL,
    key                   VARCHAR(100) NOT NULL,
    -- Its place in the workflow's dependency order.
    position              INTEGER NOT NULL,
    on_dependency_failure VARCHAR(10) NOT NULL CHECK (on_dependency_failure IN ('cancel', 'run_anyway')),
    UNIQUE (workflow_id, position)
);

-- One row per dependency; the index on `depends_on` finds the dependants of
-- a task that ended.
CREATE TABLE task_dependencies (
    task_id    BIGINT NOT NULL,
    depends_on BIGINT NOT NULL,
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX idx_task_dependencies_depends_on ON task_dependencies (depends_on);
