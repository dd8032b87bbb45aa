-- Layout A, the one before migrations 18 to 22 (live state in tasks, routing by a partial index of
-- tasks, history with a foreign key to tasks, no kept counts): m2_base has the shipped layout, and
-- these are the migrations' own ways back. Every variant but the shipped one starts from it.
\ir ../../migrations/2025-11-15-000022_one_trace_index/down.sql
\ir ../../migrations/2025-11-15-000021_read_indexes/down.sql
\ir ../../migrations/2025-11-15-000020_held_rows_as_pending/down.sql
\ir ../../migrations/2025-11-15-000019_task_counts/down.sql
\ir ../../migrations/2025-11-15-000018_live_state/down.sql
