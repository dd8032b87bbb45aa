-- Fails, as it should, once an id no longer fits in 32 bits.
ALTER TABLE idempotency_keys ALTER COLUMN task_ids TYPE integer[];
ALTER SEQUENCE heartbeats_id_seq AS integer;
ALTER TABLE heartbeats ALTER COLUMN id TYPE integer, ALTER COLUMN droplet_id TYPE integer;
ALTER SEQUENCE task_state_history_id_seq AS integer;
ALTER TABLE task_state_history ALTER COLUMN id TYPE integer, ALTER COLUMN task_id TYPE integer;
ALTER SEQUENCE tasks_id_seq AS integer;
ALTER TABLE tasks ALTER COLUMN id TYPE integer, ALTER COLUMN assigned_droplet_id TYPE integer;
ALTER SEQUENCE droplets_id_seq AS integer;
ALTER TABLE droplets ALTER COLUMN id TYPE integer;
