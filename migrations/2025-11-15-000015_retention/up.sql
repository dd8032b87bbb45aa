-- Retention: the task_retention job deletes the tasks finished long ago,
-- with their history. It finds them by completion time among finished
-- rows only, so that its deletes never read, let alone lock, live work.
CREATE INDEX idx_tasks_finished_completed_at ON tasks (completed_at)
    WHERE status IN ('completed', 'cancelled', 'failed');

-- Heartbeat rows are samples: one when a droplet's status changes and at
-- most one per HEARTBEAT_SAMPLE_SECONDS otherwise. When the droplet's last
-- row was kept, read and moved under the droplet's row lock by every
-- replica that writes heartbeats, so that they sample as one.
ALTER TABLE droplets ADD COLUMN heartbeat_sampled_at TIMESTAMP;
