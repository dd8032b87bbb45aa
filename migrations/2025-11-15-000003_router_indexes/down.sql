DROP INDEX idx_tasks_held_by_droplet;
DROP INDEX idx_tasks_pending_order;
