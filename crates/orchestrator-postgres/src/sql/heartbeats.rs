//! Statements about `heartbeats`.

use chrono::NaiveDateTime;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Timestamp};

use super::droplets;

named_statement! {
    /// Writes heartbeats (`droplet`, `status`, `metrics`, `received_at`, one
    /// element per heartbeat, with `sample_every` each one's sample interval
    /// in seconds): moves `last_heartbeat` forward
    /// with every one, and keeps as a row the first of each droplet's that is
    /// due, one sample interval after the droplet's `heartbeat_sampled_at`, or
    /// every one when the interval is zero. The droplets are locked in id order,
    /// as transitions lock them, so that the two never deadlock, and
    /// `heartbeat_sampled_at` is read under that lock, so that replicas
    /// writing heartbeats of one droplet at once sample as one. Reads back the
    /// state of every droplet in `known`.
    pub(crate) FLUSH: Flush<'a> {
        droplet: Array<BigInt> = Vec<i64>,
        status: Array<Text> = Vec<&'a str>,
        metrics: Array<Nullable<Jsonb>> = Vec<Option<&'a serde_json::Value>>,
        received_at: Array<Timestamp> = Vec<NaiveDateTime>,
        known: Array<BigInt> = Vec<i64>,
        sample_every: Array<Double> = Vec<f64>,
    } = statement!(
    "\
WITH beats AS (
    SELECT * FROM unnest(:droplet::int8[], :status::text[], :metrics::jsonb[], :received_at::timestamp[], :sample_every::float8[])
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
FROM droplets WHERE id = ANY(:known)"
);
}

named_statement! {
    /// Keeps one heartbeat of the `droplet` (its `status`, `metrics` and time
    /// `at`) as a row when it changes the droplet's status (`status_changed`)
    /// or is due: `sample_every` seconds after the droplet's
    /// `heartbeat_sampled_at`, or always when `sample_every` is zero. Run with the droplet's row locked.
    pub(crate) SAMPLE: Sample<'a> {
        droplet: BigInt = i64,
        status: Text = &'a str,
        metrics: Nullable<Jsonb> = &'a Option<serde_json::Value>,
        at: Timestamp = NaiveDateTime,
        sample_every: Double = f64,
        status_changed: Bool = bool,
    } = "\
WITH due AS (
    UPDATE droplets SET heartbeat_sampled_at = GREATEST(heartbeat_sampled_at, :at)
    WHERE id = :droplet
      AND (:status_changed OR :sample_every <= 0 OR heartbeat_sampled_at IS NULL
           OR :at >= heartbeat_sampled_at + make_interval(secs => :sample_every))
    RETURNING id
)
INSERT INTO heartbeats (droplet_id, status, metrics, received_at)
SELECT id, :status, :metrics, :at FROM due";
}

named_statement! {
    /// At most `limit` heartbeat samples older than `age_seconds`, oldest first,
    /// so that one run never holds locks on a large part of the table.
    pub(crate) DELETE_OLD: DeleteOld {
        age_seconds: Double = f64,
        limit: Integer = i32,
    } = "\
DELETE FROM heartbeats WHERE id IN (
    SELECT id FROM heartbeats
    WHERE received_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => :age_seconds)
    ORDER BY received_at
    LIMIT :limit
)";
}
