//! Statements about `idempotency_keys`.

/// Takes the key (`$1` caller, `$2` key, `$3` fingerprint, `$4` now), or
/// takes it over when it was recorded before `$5`. A concurrent request
/// with the same key waits here for this one's commit, then finds the key
/// taken.
pub(crate) const TAKE: &str = r"
INSERT INTO idempotency_keys (caller, key, fingerprint, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (caller, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at, task_ids = '{}'
    WHERE idempotency_keys.created_at < $5
RETURNING caller";

/// Records the tasks `$3` made under key `$2` of caller `$1`.
pub(crate) const RECORD_TASKS: &str =
    "UPDATE idempotency_keys SET task_ids = $3 WHERE caller = $1 AND key = $2";

/// What key `$2` of caller `$1` was taken for, and the tasks it made.
pub(crate) const SEEN: &str =
    "SELECT fingerprint, task_ids FROM idempotency_keys WHERE caller = $1 AND key = $2";

/// Deletes the keys recorded before `$1`.
pub(crate) const DELETE_EXPIRED: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";
