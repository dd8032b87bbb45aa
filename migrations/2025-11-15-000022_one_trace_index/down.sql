CREATE INDEX idx_tasks_trace_id ON tasks (trace_id);
