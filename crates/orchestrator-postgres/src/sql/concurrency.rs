//! Concurrency limits per key (migration 26).

use diesel::sql_types::{Array, Text};

named_statement! {
    /// Locks the limits of `keys`, in key order (so that two assignments
    /// never wait for each other in a cycle): assignments of one key are
    /// made one transaction at a time, each counting the others' runs.
    pub(crate) LOCK_LIMITS: LockLimits<'a> {
        keys: Array<Text> = &'a [String],
    } = "SELECT key, max_running FROM concurrency_limits WHERE key = ANY(:keys) ORDER BY key FOR UPDATE";
}

named_statement! {
    /// The tasks of each of `keys` assigned or running (their run rows,
    /// by the partial index of keyed runs).
    pub(crate) COUNT_RUNNING: CountRunning<'a> {
        keys: Array<Text> = &'a [String],
    } = "SELECT concurrency_key AS key, count(*) AS running FROM task_runs
WHERE concurrency_key = ANY(:keys) GROUP BY concurrency_key";
}

/// Every limit with its key's runs.
pub(crate) const LIMITS_WITH_RUNNING: &str = "\
SELECT l.key, l.max_running, l.updated_by, l.updated_at,
       (SELECT count(*) FROM task_runs r WHERE r.concurrency_key = l.key) AS running
FROM concurrency_limits l";
