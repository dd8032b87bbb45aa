-- Tasks counted by the status of their `tasks` row, kept by the writes
-- themselves, so that the overview and an unfiltered list read a few
-- rows, not every task. Since migration 18, `tasks.status` changes only at
-- creation, when a task becomes pending again, when it ends and when
-- retention deletes it; held tasks are counted from `task_runs`.
--
-- Each connection adds to its own slot (its process id modulo 16), so
-- that concurrent transactions do not wait for one another's counter
-- rows; a count is the sum of its slots, exact in every transaction.
CREATE TABLE task_counts (
    status VARCHAR(20) NOT NULL,
    slot   SMALLINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (status, slot)
);
INSERT INTO task_counts (status, slot, n) SELECT status, 0, count(*) FROM tasks GROUP BY status;

CREATE FUNCTION count_tasks_by_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_counts AS c (status, slot, n)
        SELECT status, (pg_backend_pid() % 16)::smallint, count(*) FROM new_rows GROUP BY status
        ON CONFLICT (status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_counts AS c (status, slot, n)
        SELECT status, (pg_backend_pid() % 16)::smallint, -count(*) FROM old_rows GROUP BY status
        ON CONFLICT (status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO task_counts AS c (status, slot, n)
        SELECT status, (pg_backend_pid() % 16)::smallint, sum(change) FROM (
            SELECT n.status, 1 AS change FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE o.status <> n.status
            UNION ALL
            SELECT o.status, -1 FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE o.status <> n.status
        ) moved
        GROUP BY status
        ON CONFLICT (status, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_counted_on_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_tasks_by_status();
CREATE TRIGGER tasks_counted_on_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_tasks_by_status();
CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_tasks_by_status();
