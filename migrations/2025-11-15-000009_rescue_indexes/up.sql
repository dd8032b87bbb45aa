-- Rescue figures of /metrics/routing read the history rows that recovery
-- and refused reports write, and the tasks warned of their deadline, by
-- time; these stay small beside the whole history.
CREATE INDEX idx_history_rescues ON task_state_history (changed_at)
    WHERE metadata ? 'recovery' OR metadata ? 'refused';
CREATE INDEX idx_tasks_deadline_risk_at ON tasks (deadline_risk_at)
    WHERE deadline_risk_at IS NOT NULL;
