-- Within a priority the router takes the earlier deadline first (none
-- counts as last, as NULLs sort last ascending), then the older task.
DROP INDEX idx_tasks_pending_order;
CREATE INDEX idx_tasks_pending_order ON tasks (priority, deadline, created_at, id) WHERE status = 'pending';
