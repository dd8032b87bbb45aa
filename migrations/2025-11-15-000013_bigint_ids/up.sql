-- Every id that grows with use is 64-bit. At a thousand droplets beating
-- every second, a 32-bit serial runs out within weeks, and the statement
-- that writes the next row fails from then on. Droplets' internal ids grow
-- too: every registration and directory sync draws one from the sequence
-- (an upsert takes a value even when it updates). The external ids the API
-- shows (`droplet_id`) are the mesh's and stay as they are.
ALTER TABLE droplets ALTER COLUMN id TYPE bigint;
ALTER SEQUENCE droplets_id_seq AS bigint;
ALTER TABLE tasks ALTER COLUMN id TYPE bigint, ALTER COLUMN assigned_droplet_id TYPE bigint;
ALTER SEQUENCE tasks_id_seq AS bigint;
ALTER TABLE task_state_history ALTER COLUMN id TYPE bigint, ALTER COLUMN task_id TYPE bigint;
ALTER SEQUENCE task_state_history_id_seq AS bigint;
ALTER TABLE heartbeats ALTER COLUMN id TYPE bigint, ALTER COLUMN droplet_id TYPE bigint;
ALTER SEQUENCE heartbeats_id_seq AS bigint;
ALTER TABLE idempotency_keys ALTER COLUMN task_ids TYPE bigint[];
