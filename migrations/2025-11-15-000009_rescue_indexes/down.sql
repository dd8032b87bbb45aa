DROP INDEX idx_tasks_deadline_risk_at;
DROP INDEX idx_history_rescues;
