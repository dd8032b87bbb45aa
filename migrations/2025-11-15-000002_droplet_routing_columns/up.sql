-- Routing needs each droplet's capacity and when it last got work (least loaded, then idle longest), and an admin's deactivation must outlast heartbeats.
ALTER TABLE droplets
    ADD COLUMN max_concurrent_tasks INTEGER NOT NULL DEFAULT 10 CHECK (max_concurrent_tasks > 0),
    ADD COLUMN manually_deactivated BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN last_assigned_at TIMESTAMP;
