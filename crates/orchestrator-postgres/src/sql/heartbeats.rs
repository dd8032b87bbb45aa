//! Statements about `heartbeats`.

use super::droplets;

/// Writes heartbeats (`$1`–`$4`, one element per heartbeat) in one
/// statement, moves `last_heartbeat` forward (locking the droplets in id
/// order, as transitions do, so that the two never deadlock), and reads
/// back the state of every droplet in `$5`.
pub(crate) const FLUSH: &str = statement!(
    "\
WITH beats AS (
    SELECT * FROM unnest($1::int8[], $2::text[], $3::jsonb[], $4::timestamp[])
        AS b(droplet_id, status, metrics, received_at)
), inserted AS (
    INSERT INTO heartbeats (droplet_id, status, metrics, received_at)
    SELECT droplet_id, status, metrics, received_at FROM beats
), latest AS (
    SELECT droplet_id, max(received_at) AS at FROM beats GROUP BY droplet_id
), locked AS (
    SELECT id FROM droplets WHERE id IN (SELECT droplet_id FROM latest) ORDER BY id FOR NO KEY UPDATE
), touched AS (
    UPDATE droplets d
    SET last_heartbeat = GREATEST(d.last_heartbeat, latest.at),
        updated_at = GREATEST(d.updated_at, latest.at)
    FROM latest JOIN locked ON locked.id = latest.droplet_id
    WHERE d.id = latest.droplet_id
)
SELECT ",
    droplets::COLUMNS,
    "
FROM droplets WHERE id = ANY($5)"
);

/// At most `$2` heartbeat rows older than `$1` seconds, oldest first, so
/// that one run never holds locks on a large part of the table.
pub(crate) const DELETE_OLD: &str = "\
DELETE FROM heartbeats WHERE id IN (
    SELECT id FROM heartbeats
    WHERE received_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1)
    ORDER BY received_at
    LIMIT $2
)";
