-- When the task's creator or an admin asked the droplet running it to stop
-- (POST /tasks/{id}/cancel-request); a task asked to stop is not retried.
ALTER TABLE tasks ADD COLUMN cancel_requested_at TIMESTAMP;
