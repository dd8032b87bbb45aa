ALTER TABLE droplets DROP COLUMN heartbeat_sampled_at;
DROP INDEX idx_tasks_finished_completed_at;
