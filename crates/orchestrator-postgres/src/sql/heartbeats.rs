//! Statements about `heartbeats`.

use super::droplets;

/// Writes heartbeats (`$1`–`$4`, one element per heartbeat, with `$6`
/// each one's sample interval in seconds): moves `last_heartbeat` forward
/// with every one, and keeps as a row the first of each droplet's that is
/// due, one sample interval after the droplet's `heartbeat_sampled_at`, or
/// every one when the interval is zero. The droplets are locked in id order,
/// as transitions lock them, so that the two never deadlock, and
/// `heartbeat_sampled_at` is read under that lock, so that replicas
/// writing heartbeats of one droplet at once sample as one. Reads back the
/// state of every droplet in `$5`.
pub(crate) const FLUSH: &str = statement!(
    "\
WITH beats AS (
    SELECT * FROM unnest($1::int8[], $2::text[], $3::jsonb[], $4::timestamp[], $6::float8[])
        AS b(droplet_id, status, metrics, received_at, sample_every)
), latest AS (
    SELECT droplet_id, max(received_at) AS at FROM beats GROUP BY droplet_id
), locked AS (
    SELECT id, heartbeat_sampled_at FROM droplets WHERE id IN (SELECT droplet_id FROM latest)
    ORDER BY id FOR NO KEY UPDATE
), due AS (
    SELECT b.*, row_number() OVER (PARTITION BY b.droplet_id ORDER BY b.received_at) AS nth
    FROM beats b JOIN locked ON locked.id = b.droplet_id
    WHERE b.sample_every <= 0 OR locked.heartbeat_sampled_at IS NULL
       OR b.received_at >= locked.heartbeat_sampled_at + make_interval(secs => b.sample_every)
), sampled AS (
    SELECT droplet_id, status, metrics, received_at FROM due WHERE sample_every <= 0 OR nth = 1
), inserted AS (
    INSERT INTO heartbeats (droplet_id, status, metrics, received_at)
    SELECT droplet_id, status, metrics, received_at FROM sampled
), last_sampled AS (
    SELECT droplet_id, max(received_at) AS at FROM sampled GROUP BY droplet_id
), touched AS (
    UPDATE droplets d
    SET last_heartbeat = GREATEST(d.last_heartbeat, latest.at),
        updated_at = GREATEST(d.updated_at, latest.at),
        heartbeat_sampled_at = GREATEST(d.heartbeat_sampled_at, last_sampled.at)
    FROM latest JOIN locked ON locked.id = latest.droplet_id
    LEFT JOIN last_sampled ON last_sampled.droplet_id = latest.droplet_id
    WHERE d.id = latest.droplet_id
)
SELECT ",
    droplets::COLUMNS,
    "
FROM droplets WHERE id = ANY($5)"
);

/// Keeps one heartbeat of droplet `$1` (`$2` status, `$3` metrics, `$4`
/// time) as a row when it changes the droplet's status (`$6`) or is due:
/// `$5` seconds after the droplet's `heartbeat_sampled_at`, or always when
/// `$5` is zero. Run with the droplet's row locked.
pub(crate) const SAMPLE: &str = "\
WITH due AS (
    UPDATE droplets SET heartbeat_sampled_at = GREATEST(heartbeat_sampled_at, $4)
    WHERE id = $1
      AND ($6 OR $5 <= 0 OR heartbeat_sampled_at IS NULL
           OR $4 >= heartbeat_sampled_at + make_interval(secs => $5))
    RETURNING id
)
INSERT INTO heartbeats (droplet_id, status, metrics, received_at)
SELECT id, $2, $3, $4 FROM due";

/// At most `$2` heartbeat rows older than `$1` seconds, oldest first, so
/// that one run never holds locks on a large part of the table.
pub(crate) const DELETE_OLD: &str = "\
DELETE FROM heartbeats WHERE id IN (
    SELECT id FROM heartbeats
    WHERE received_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1)
    ORDER BY received_at
    LIMIT $2
)";
