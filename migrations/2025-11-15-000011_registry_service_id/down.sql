DROP INDEX idx_droplets_service_id;
ALTER TABLE droplets DROP COLUMN service_id;
