DROP TRIGGER tasks_counted_on_delete ON tasks;
DROP TRIGGER tasks_counted_on_update ON tasks;
DROP TRIGGER tasks_counted_on_insert ON tasks;
DROP FUNCTION count_tasks_by_status();
DROP TABLE task_counts;
