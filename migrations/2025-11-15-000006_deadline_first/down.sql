DROP INDEX idx_tasks_pending_order;
CREATE INDEX idx_tasks_pending_order ON tasks (priority, created_at, id) WHERE status = 'pending';
