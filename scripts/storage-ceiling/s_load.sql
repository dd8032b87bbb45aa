-- The shipped layout (migration 18) working set, same pools as b1_load.sql: in tasks every
-- unfinished task reads 'pending'; its live state is in task_runs / task_queue.
SET session_replication_role = replica;
INSERT INTO tasks (id, task_type, title, payload, required_capability, status, priority, created_at,
                   retry_count, max_retries, created_by, updated_at, attempt)
SELECT g, 'noop', 'task '||g, '{"n":1}', 'echo', 'pending', 5,
       timestamp '2026-12-01' + (g - 200000) * interval '1 ms', 0, 3, 'bench',
       timestamp '2026-12-01' + (g - 200000) * interval '1 ms', 0
FROM generate_series(200001, 200000 + 4 * :pool) g;
SELECT setval('tasks_id_seq', 200000 + 4 * :pool);
INSERT INTO task_runs (task_id, status, assigned_droplet_id, attempt, assigned_at, started_at, updated_at, requeues)
SELECT g, CASE WHEN g <= 200000 + :pool THEN 'in_progress' ELSE 'assigned' END, 1 + g % 50, 1,
       timestamp '2026-12-01' + (g - 200000) * interval '1 ms' + interval '10 ms',
       CASE WHEN g <= 200000 + :pool THEN timestamp '2026-12-01' + (g - 200000) * interval '1 ms' + interval '20 ms' END,
       timestamp '2026-12-01' + (g - 200000) * interval '1 ms', 0
FROM generate_series(200001, 200000 + 2 * :pool) g;
INSERT INTO task_queue (task_id, priority, created_at, required_capability, attempt)
SELECT g, 5, timestamp '2026-12-01' + (g - 200000) * interval '1 ms', 'echo', 0
FROM generate_series(200000 + 2 * :pool + 1, 200000 + 4 * :pool) g;
