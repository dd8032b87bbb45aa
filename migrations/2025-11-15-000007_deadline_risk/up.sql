-- When the orchestrator warned that the task's deadline is at risk: the
-- task_deadline_at_risk event is sent once per task.
ALTER TABLE tasks ADD COLUMN deadline_risk_at TIMESTAMP;
