//! Statements about `droplets`.

/// The columns of `droplets` that `DropletRow` reads, in its order: what a
/// statement returns of each droplet it reads whole.
pub(crate) const COLUMNS: &str = "id, droplet_id, name, steward, endpoint, capabilities, status, \
    last_heartbeat, registered_at, updated_at, max_concurrent_tasks, manually_deactivated, last_assigned_at, \
    service_id, session_started_at";

/// Active droplets whose last heartbeat is older than `$1` seconds become inactive.
pub(crate) const MARK_SILENT: &str = statement!(
    "\
UPDATE droplets SET status = 'inactive', updated_at = now() AT TIME ZONE 'UTC'
WHERE status = 'active'
  AND (last_heartbeat IS NULL OR last_heartbeat < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1))
RETURNING ",
    COLUMNS
);

/// Locks the droplets a batch assigns to (external ids `$1`) in id order,
/// so that concurrent batches cannot deadlock. `NO KEY UPDATE`: the
/// assignment changes no key of the droplet, so the foreign-key checks of
/// heartbeats and assignments elsewhere (`KEY SHARE`) need not wait for it;
/// other lockers still do.
pub(crate) const LOCK_TARGETS: &str = "\
SELECT id, droplet_id, status::text, max_concurrent_tasks FROM droplets
WHERE droplet_id = ANY($1)
ORDER BY id
FOR NO KEY UPDATE";
