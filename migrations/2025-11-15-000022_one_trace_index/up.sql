-- trace_id is UNIQUE, and its constraint's index serves every lookup by
-- it. This second index on the same column was written at every insert
-- and every end of a task for nothing (0 scans at a million tasks); W1
-- ran 3 % faster without it (docs/benchmarks.md).
DROP INDEX idx_tasks_trace_id;
