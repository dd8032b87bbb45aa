DROP INDEX idx_task_history_rescues;
