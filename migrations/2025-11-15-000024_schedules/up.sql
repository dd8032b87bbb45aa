-- Cron schedules (issue "Time and dependencies"): a task template fired at
-- the times of a cron expression read in a time zone. `last_fire_at` is the
-- last fire time dealt with (fired or skipped): a fire moves it with a
-- compare-and-set, so that of replicas dealing with one fire time one wins.
CREATE TABLE schedules (
    name         VARCHAR(100) PRIMARY KEY,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    template     JSONB NOT NULL,
    overlap      VARCHAR(10) NOT NULL CHECK (overlap IN ('skip', 'allow')),
    catch_up     VARCHAR(10) NOT NULL CHECK (catch_up IN ('last', 'none')),
    paused       BOOLEAN NOT NULL DEFAULT false,
    created_by   TEXT,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    last_fire_at TIMESTAMP,
    last_task_id BIGINT,
    fires        BIGINT NOT NULL DEFAULT 0,
    skips        BIGINT NOT NULL DEFAULT 0
);

-- The unique key of a fire that made a task, written with the task: one
-- task per schedule and fire time, whatever races. A fire deletes the keys
-- of the schedule's earlier fire times, which the compare-and-set already
-- keeps from firing again, so the table holds about one row a schedule.
CREATE TABLE schedule_fires (
    schedule_name VARCHAR(100) NOT NULL,
    fire_at       TIMESTAMP NOT NULL,
    task_id       BIGINT NOT NULL,
    PRIMARY KEY (schedule_name, fire_at)
);
