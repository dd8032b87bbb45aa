//! Session-level advisory locks, each on one key. They belong to the
//! connection, not to a transaction: PostgreSQL releases them when it ends.

use diesel::sql_types::BigInt;

named_statement! {
    /// Takes the lock on `key` if it is free; `taken` says whether it was.
    pub(crate) TRY_TAKE: TryTake { key: BigInt = i64 } = "SELECT pg_try_advisory_lock(:key) AS taken";
}

// The migration lock's two statements run on the migration harness's
// synchronous connection, which binds a raw statement itself (`$1`, the
// key): the named statements' queries are for the asynchronous one.

/// Takes the lock on key `$1`, waiting for its holder to release it.
pub(crate) const TAKE: &str = "SELECT pg_advisory_lock($1)";

/// Releases the lock on key `$1`.
pub(crate) const RELEASE: &str = "SELECT pg_advisory_unlock($1)";
