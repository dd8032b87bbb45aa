//! Session-level advisory locks, each on key `$1`. They belong to the
//! connection, not to a transaction: PostgreSQL releases them when it ends.

/// Takes the lock if it is free; `taken` says whether it was.
pub(crate) const TRY_TAKE: &str = "SELECT pg_try_advisory_lock($1) AS taken";

/// Takes the lock, waiting for its holder to release it.
pub(crate) const TAKE: &str = "SELECT pg_advisory_lock($1)";

pub(crate) const RELEASE: &str = "SELECT pg_advisory_unlock($1)";
