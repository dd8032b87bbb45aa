-- A replica's router claims pending tasks for a short lease (FOR UPDATE SKIP LOCKED), so that replicas sharing the database route disjoint batches.
ALTER TABLE tasks ADD COLUMN routing_lease_until TIMESTAMP;
