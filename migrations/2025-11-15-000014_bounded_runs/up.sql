-- Runs are bounded and restarts are seen.
-- `timeout_seconds`: how long a run may go without progress (NULL: the
-- server's TASK_RUN_TIMEOUT; 0: no limit). `progress*`: the latest report of
-- the droplet running it, which also restarts the run's clock. `requeues`:
-- assignments in a row that no droplet started, bounded by MAX_REQUEUES.
ALTER TABLE tasks
    ADD COLUMN timeout_seconds INTEGER CHECK (timeout_seconds >= 0),
    ADD COLUMN progress SMALLINT CHECK (progress BETWEEN 0 AND 100),
    ADD COLUMN progress_message TEXT,
    ADD COLUMN progress_at TIMESTAMP,
    ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
-- When the droplet's current process registered: tasks assigned to it
-- before then belonged to a process that is gone.
ALTER TABLE droplets ADD COLUMN session_started_at TIMESTAMP;
UPDATE droplets SET session_started_at = registered_at WHERE last_heartbeat IS NOT NULL;
-- Recovery looks only at tasks held by droplets or failed; this keeps its
-- pass from reading finished work.
CREATE INDEX idx_tasks_recoverable ON tasks (id) WHERE status IN ('assigned', 'in_progress', 'failed');
