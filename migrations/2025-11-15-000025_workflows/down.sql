-- Tasks still waiting for their dependencies become routable: without the
-- workflow tables nothing would release them.
UPDATE task_queue SET not_before = NULL WHERE not_before = 'infinity';
DROP TABLE task_dependencies;
DROP TABLE workflow_tasks;
DROP TABLE workflows;
