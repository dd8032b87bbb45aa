-- Layout A, the one before migration 18 (live state in tasks, routing by a partial index of tasks,
-- history with a foreign key to tasks): m2_base has the shipped layout, and this is migration 18's
-- own way back. Every variant but the shipped one starts from it.
\ir ../../migrations/2025-11-15-000018_live_state/down.sql
