//! Statements about `droplets`.

use diesel::sql_types::{Array, Double, Integer};

/// The columns of `droplets` that `DropletRow` reads, in its order: what a
/// statement returns of each droplet it reads whole.
pub(crate) const COLUMNS: &str = "id, droplet_id, name, steward, endpoint, capabilities, status, \
    last_heartbeat, registered_at, updated_at, max_concurrent_tasks, manually_deactivated, last_assigned_at, \
    service_id, session_started_at";

named_statement! {
    /// Active droplets whose last heartbeat is older than `timeout_seconds`
    /// become inactive.
    pub(crate) MARK_SILENT: MarkSilent {
        timeout_seconds: Double = f64,
    } = statement!(
    "\
UPDATE droplets SET status = 'inactive', updated_at = now() AT TIME ZONE 'UTC'
WHERE status = 'active'
  AND (last_heartbeat IS NULL OR last_heartbeat < (now() AT TIME ZONE 'UTC') - make_interval(secs => :timeout_seconds))
RETURNING ",
    COLUMNS
);
}

named_statement! {
    /// Locks the `droplets` a batch assigns to (external ids) in id order, so
    /// that concurrent batches cannot deadlock. `NO KEY UPDATE`: the
    /// assignment changes no key of the droplet, so the foreign-key checks of
    /// heartbeats and assignments elsewhere (`KEY SHARE`) need not wait for it;
    /// other lockers still do.
    pub(crate) LOCK_TARGETS: LockTargets<'a> {
        droplets: Array<Integer> = &'a [i32],
    } = "\
SELECT id, droplet_id, status::text, max_concurrent_tasks FROM droplets
WHERE droplet_id = ANY(:droplets)
ORDER BY id
FOR NO KEY UPDATE";
}
