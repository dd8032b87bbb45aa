ALTER TABLE droplets
    DROP COLUMN last_assigned_at,
    DROP COLUMN manually_deactivated,
    DROP COLUMN max_concurrent_tasks;
