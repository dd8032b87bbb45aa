-- The router reads pending tasks in priority-then-age order and counts the tasks each droplet holds; these partial indexes serve exactly those queries.
CREATE INDEX idx_tasks_pending_order ON tasks (priority, created_at, id) WHERE status = 'pending';
CREATE INDEX idx_tasks_held_by_droplet ON tasks (assigned_droplet_id) WHERE status IN ('assigned', 'in_progress');
