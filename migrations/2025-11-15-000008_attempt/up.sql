-- How many times the task has been assigned: the fence that lets a
-- droplet's report name the assignment it is about.
ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
UPDATE tasks t SET attempt = (
    SELECT count(*) FROM task_state_history h WHERE h.task_id = t.id AND h.to_status = 'assigned'
);
