ALTER TABLE tasks DROP COLUMN deadline_risk_at;
