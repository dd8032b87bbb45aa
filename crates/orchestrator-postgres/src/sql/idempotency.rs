//! Statements about `idempotency_keys`.

use chrono::NaiveDateTime;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

named_statement! {
    /// Takes the `key` of the `caller` for the request's `fingerprint` at `at`
    /// (now), or takes it over when it was recorded before `expired_before`.
    /// A concurrent request with the same key waits here for this one's
    /// commit, then finds the key taken.
    pub(crate) TAKE: Take<'a> {
        caller: Text = &'a str,
        key: Text = &'a str,
        fingerprint: Text = &'a str,
        at: Timestamp = NaiveDateTime,
        expired_before: Timestamp = NaiveDateTime,
    } = r"
INSERT INTO idempotency_keys (caller, key, fingerprint, created_at)
VALUES (:caller, :key, :fingerprint, :at)
ON CONFLICT (caller, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at, task_ids = '{}'
    WHERE idempotency_keys.created_at < :expired_before
RETURNING caller";
}

named_statement! {
    /// Records the `tasks` made under the `key` of the `caller`.
    pub(crate) RECORD_TASKS: RecordTasks<'a> {
        caller: Text = &'a str,
        key: Text = &'a str,
        tasks: Array<BigInt> = &'a [i64],
    } = "UPDATE idempotency_keys SET task_ids = :tasks WHERE caller = :caller AND key = :key";
}

named_statement! {
    /// What the `key` of the `caller` was taken for, and the tasks it made.
    pub(crate) SEEN: Seen<'a> {
        caller: Text = &'a str,
        key: Text = &'a str,
    } = "SELECT fingerprint, task_ids FROM idempotency_keys WHERE caller = :caller AND key = :key";
}

named_statement! {
    /// Deletes the keys recorded before `before`.
    pub(crate) DELETE_EXPIRED: DeleteExpired {
        before: Timestamp = NaiveDateTime,
    } = "DELETE FROM idempotency_keys WHERE created_at < :before";
}
