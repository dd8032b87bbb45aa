//! Workflows (migration 25): a task waiting for its dependencies keeps its
//! queue row with `not_before` at 'infinity', which no pick reaches.

use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Timestamp};

/// The gate of a task waiting for its dependencies.
const HELD: &str = "'infinity'";

named_statement! {
    /// Holds the queued `tasks` out of routing until they are released.
    pub(crate) HOLD: Hold<'a> {
        tasks: Array<BigInt> = &'a [i64],
    } = statement!("UPDATE task_queue SET not_before = ", HELD, " WHERE task_id = ANY(:tasks)");
}

named_statement! {
    /// Locks the queue rows of the waiting dependants of `ended`, in id
    /// order (so that two settlings never wait for each other in a
    /// cycle). It waits for a lock held: a settling that holds it may have
    /// read a dependency before it ended, and this one reads it after.
    pub(crate) LOCK_WAITING_DEPENDANTS: LockWaitingDependants<'a> {
        ended: Array<BigInt> = &'a [i64],
    } = statement!(
        "SELECT q.task_id AS id FROM task_queue q
WHERE q.not_before = ",
        HELD,
        " AND q.task_id IN (SELECT d.task_id FROM task_dependencies d WHERE d.depends_on = ANY(:ended))
ORDER BY q.task_id
FOR UPDATE OF q"
    );
}

named_statement! {
    /// Releases waiting tasks: each its payload as given and its queue
    /// gate back to its own `run_at`.
    pub(crate) RELEASE: #[derive(Default)] Release {
        id: Array<BigInt> = Vec<i64>,
        payload: Array<Jsonb> = Vec<serde_json::Value>,
        updated_at: Array<Timestamp> = Vec<chrono::NaiveDateTime>,
    } = statement!(
        "WITH i AS (
    SELECT * FROM unnest(:id::int8[], :payload::jsonb[], :updated_at::timestamp[]) AS i(id, payload, updated_at)
), stored AS (
    UPDATE tasks t SET payload = i.payload, updated_at = i.updated_at FROM i WHERE t.id = i.id
    RETURNING t.id, t.run_at
)
UPDATE task_queue q SET not_before = s.run_at FROM stored s
WHERE q.task_id = s.id AND q.not_before = ",
        HELD
    );
}

named_statement! {
    /// Which of `tasks` wait for their dependencies.
    pub(crate) WAITING_AMONG: WaitingAmong<'a> {
        tasks: Array<BigInt> = &'a [i64],
    } = statement!(
        "SELECT task_id AS id FROM task_queue WHERE task_id = ANY(:tasks) AND not_before = ",
        HELD
    );
}

named_statement! {
    /// Finished dependencies of waiting tasks, at most `limit`: what the
    /// sweep settles. `tasks.status` is written when a task ends, so it
    /// holds every end; a failure with retries left is among them, and
    /// settling it changes nothing.
    pub(crate) UNSETTLED: Unsettled {
        limit: Integer = i32,
    } = statement!(
        "SELECT DISTINCT d.depends_on AS id
FROM task_queue q
JOIN task_dependencies d ON d.task_id = q.task_id
JOIN tasks t ON t.id = d.depends_on
WHERE q.not_before = ",
        HELD,
        " AND t.status IN ('completed', 'failed', 'cancelled')
LIMIT :limit"
    );
}
