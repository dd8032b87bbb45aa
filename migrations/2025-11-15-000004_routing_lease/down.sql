ALTER TABLE tasks DROP COLUMN routing_lease_until;
