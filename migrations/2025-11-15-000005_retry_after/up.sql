-- A retried task waits out its backoff before the router may claim it again; this is when that wait ends.
ALTER TABLE tasks ADD COLUMN retry_after TIMESTAMP;
