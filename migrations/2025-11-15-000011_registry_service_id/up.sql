-- The Registry's id of the service a droplet is (its directory's
-- `service_id`), so that a heartbeat or a token naming the service finds
-- its droplet. Unique: one service is one droplet.
ALTER TABLE droplets ADD COLUMN service_id BIGINT;
CREATE UNIQUE INDEX idx_droplets_service_id ON droplets(service_id);
