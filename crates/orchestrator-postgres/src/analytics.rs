//! The analytics of spec section 5, computed by PostgreSQL: counts with
//! `FILTER`, percentiles with `percentile_cont`, one statement each.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Integer, Nullable, Text, Timestamp};
use diesel_async::RunQueryDsl;
use orchestrator_domain::{DropletId, TaskStatus};
use orchestrator_ports::{
    AnalyticsStore, Percentiles, RescueCounts, RoutingStats, StoreResult, TaskPerformance, Throughput,
    TimeWindow, TypeBreakdown,
};

use crate::PgStore;
use crate::error::store_error;
use crate::rows::naive;

fn bounds(window: TimeWindow) -> (NaiveDateTime, NaiveDateTime) {
    (naive(window.since), naive(window.until))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `percentile_cont(ARRAY[0.5, 0.95, 0.99])`: `None` when nothing was measured.
fn percentiles(values: Option<Vec<f64>>) -> Percentiles {
    let values = values.unwrap_or_default();
    let at = |rank: usize| values.get(rank).copied();
    Percentiles {
        p50: at(0),
        p95: at(1),
        p99: at(2),
    }
}

#[derive(QueryableByName)]
struct ThroughputRow {
    #[diesel(sql_type = BigInt)]
    created: i64,
    #[diesel(sql_type = BigInt)]
    finished: i64,
}

#[derive(QueryableByName)]
struct PerformanceRow {
    #[diesel(sql_type = BigInt)]
    finished: i64,
    #[diesel(sql_type = BigInt)]
    completed: i64,
    #[diesel(sql_type = Nullable<Array<Double>>)]
    queue_wait: Option<Vec<f64>>,
    #[diesel(sql_type = Nullable<Array<Double>>)]
    run_time: Option<Vec<f64>>,
}

#[derive(QueryableByName)]
struct TypeRow {
    #[diesel(sql_type = Text)]
    task_type: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct RescueRow {
    #[diesel(sql_type = Nullable<Text>)]
    capability: Option<String>,
    #[diesel(sql_type = BigInt)]
    reassignments: i64,
    #[diesel(sql_type = BigInt)]
    ack_timeouts: i64,
    #[diesel(sql_type = BigInt)]
    stale_reports_refused: i64,
    #[diesel(sql_type = BigInt)]
    deadline_failures: i64,
    #[diesel(sql_type = BigInt)]
    deadline_at_risk: i64,
}

impl From<RescueRow> for RescueCounts {
    fn from(row: RescueRow) -> Self {
        RescueCounts {
            capability: row.capability,
            reassignments: count(row.reassignments),
            ack_timeouts: count(row.ack_timeouts),
            stale_reports_refused: count(row.stale_reports_refused),
            deadline_failures: count(row.deadline_failures),
            deadline_at_risk: count(row.deadline_at_risk),
        }
    }
}

#[derive(QueryableByName)]
struct WaitRow {
    #[diesel(sql_type = Nullable<Array<Double>>)]
    wait: Option<Vec<f64>>,
}

#[async_trait]
impl AnalyticsStore for PgStore {
    async fn throughput(&self, window: TimeWindow) -> StoreResult<Throughput> {
        let (since, until) = bounds(window);
        let mut conn = self.conn().await?;
        let row: ThroughputRow = diesel::sql_query(THROUGHPUT)
            .bind::<Timestamp, _>(since)
            .bind::<Timestamp, _>(until)
            .get_result(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(Throughput {
            created: count(row.created),
            finished: count(row.finished),
        })
    }

    async fn task_performance(
        &self,
        window: TimeWindow,
        task_type: Option<String>,
        droplet: Option<DropletId>,
    ) -> StoreResult<TaskPerformance> {
        let (since, until) = bounds(window);
        // An id beyond the column's range names no droplet: nothing matches.
        let droplet = droplet.map(|d| i32::try_from(d).unwrap_or(-1));
        let mut conn = self.conn().await?;
        let row: PerformanceRow = diesel::sql_query(PERFORMANCE)
            .bind::<Timestamp, _>(since)
            .bind::<Timestamp, _>(until)
            .bind::<Nullable<Text>, _>(task_type)
            .bind::<Nullable<Integer>, _>(droplet)
            .get_result(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(TaskPerformance {
            finished: count(row.finished),
            completed: count(row.completed),
            failed: count(row.finished - row.completed),
            queue_wait_seconds: percentiles(row.queue_wait),
            run_seconds: percentiles(row.run_time),
        })
    }

    async fn tasks_by_type(&self, window: TimeWindow) -> StoreResult<Vec<TypeBreakdown>> {
        let (since, until) = bounds(window);
        let mut conn = self.conn().await?;
        let rows: Vec<TypeRow> = diesel::sql_query(BY_TYPE)
            .bind::<Timestamp, _>(since)
            .bind::<Timestamp, _>(until)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        let mut types: BTreeMap<String, TypeBreakdown> = BTreeMap::new();
        for row in rows {
            let entry = types
                .entry(row.task_type.clone())
                .or_insert_with(|| TypeBreakdown {
                    task_type: row.task_type,
                    total: 0,
                    by_status: BTreeMap::new(),
                });
            entry.total += count(row.n);
            if let Ok(status) = row.status.parse::<TaskStatus>() {
                *entry.by_status.entry(status).or_default() += count(row.n);
            }
        }
        let mut breakdown: Vec<TypeBreakdown> = types.into_values().collect();
        breakdown.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.task_type.cmp(&b.task_type)));
        Ok(breakdown)
    }

    async fn routing_stats(&self, window: TimeWindow) -> StoreResult<RoutingStats> {
        let (since, until) = bounds(window);
        let mut conn = self.conn().await?;
        let wait: WaitRow = diesel::sql_query(TIME_TO_ASSIGN)
            .bind::<Timestamp, _>(since)
            .bind::<Timestamp, _>(until)
            .get_result(&mut conn)
            .await
            .map_err(store_error)?;
        let per_droplet: Vec<CountRow> = diesel::sql_query(ASSIGNMENTS_PER_DROPLET)
            .bind::<Timestamp, _>(since)
            .bind::<Timestamp, _>(until)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        let stranded: Vec<CountRow> = diesel::sql_query(PENDING_WITHOUT_CAPABLE_DROPLET)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        let rescues: Vec<RescueRow> = diesel::sql_query(RESCUES)
            .bind::<Timestamp, _>(since)
            .bind::<Timestamp, _>(until)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(RoutingStats {
            time_to_assign_seconds: percentiles(wait.wait),
            assignments_per_droplet: per_droplet
                .into_iter()
                .filter_map(|r| Some((r.key.parse::<DropletId>().ok()?, count(r.n))))
                .collect(),
            pending_without_capable_droplet: stranded.into_iter().map(|r| (r.key, count(r.n))).collect(),
            rescues: rescues
                .into_iter()
                .map(RescueCounts::from)
                .filter(|c| !c.is_empty())
                .collect(),
        })
    }

    async fn pending_by_priority(&self) -> StoreResult<BTreeMap<u8, u64>> {
        let mut conn = self.conn().await?;
        let rows: Vec<CountRow> = diesel::sql_query(PENDING_BY_PRIORITY)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.key.parse::<u8>().ok()?, count(r.n))))
            .collect())
    }
}

/// Pending tasks by priority; the partial index of routing covers it.
const PENDING_BY_PRIORITY: &str = "\
SELECT coalesce(priority, 5)::text AS key, count(*) AS n
FROM tasks
WHERE status = 'pending'
GROUP BY coalesce(priority, 5)";

const THROUGHPUT: &str = "\
SELECT count(*) FILTER (WHERE created_at >= $1 AND created_at < $2) AS created,
       count(*) FILTER (WHERE status IN ('completed', 'failed') AND completed_at >= $1 AND completed_at < $2)
         AS finished
FROM tasks
WHERE (created_at >= $1 AND created_at < $2) OR (completed_at >= $1 AND completed_at < $2)";

/// `$3`: the task type or NULL; `$4`: the droplet's external id or NULL.
const PERFORMANCE: &str = "\
SELECT count(*) FILTER (WHERE status IN ('completed', 'failed') AND completed_at >= $1 AND completed_at < $2)
         AS finished,
       count(*) FILTER (WHERE status = 'completed' AND completed_at >= $1 AND completed_at < $2) AS completed,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - created_at)::float8)
         FILTER (WHERE assigned_at >= $1 AND assigned_at < $2) AS queue_wait,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at)::float8)
         FILTER (WHERE status = 'completed' AND completed_at >= $1 AND completed_at < $2
                 AND started_at IS NOT NULL) AS run_time
FROM tasks
WHERE ($3::text IS NULL OR task_type = $3)
  AND ($4::int4 IS NULL OR assigned_droplet_id = (SELECT id FROM droplets WHERE droplet_id = $4))
  AND ((completed_at >= $1 AND completed_at < $2) OR (assigned_at >= $1 AND assigned_at < $2))";

const BY_TYPE: &str = "\
SELECT task_type::text, status::text, count(*) AS n
FROM tasks
WHERE created_at >= $1 AND created_at < $2
GROUP BY task_type, status";

const TIME_TO_ASSIGN: &str = "\
SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
         WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - created_at)::float8) AS wait
FROM tasks
WHERE assigned_at >= $1 AND assigned_at < $2";

const ASSIGNMENTS_PER_DROPLET: &str = "\
SELECT d.droplet_id::text AS key, count(*) AS n
FROM tasks t JOIN droplets d ON d.id = t.assigned_droplet_id
WHERE t.assigned_at >= $1 AND t.assigned_at < $2
GROUP BY d.droplet_id";

const PENDING_WITHOUT_CAPABLE_DROPLET: &str = "\
SELECT t.required_capability::text AS key, count(*) AS n
FROM tasks t
WHERE t.status = 'pending' AND t.required_capability IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM droplets d
    WHERE d.status = 'active' AND d.capabilities @> jsonb_build_array(t.required_capability)
  )
GROUP BY t.required_capability";

/// What recovery and fencing did in the window, by capability: from the
/// history rows they write (see `RescueCounts::count_history`; the partial
/// index of migration 9 finds them) and the deadline warnings.
const RESCUES: &str = "\
WITH rescued AS (
    SELECT t.required_capability AS capability,
           count(*) FILTER (WHERE h.metadata->>'recovery' IN ('droplet_inactive', 'not_started'))
             AS reassignments,
           count(*) FILTER (WHERE h.metadata->>'recovery' = 'not_started') AS ack_timeouts,
           count(*) FILTER (WHERE h.metadata->>'refused' = 'true') AS stale_reports_refused,
           count(*) FILTER (WHERE h.metadata->>'recovery' = 'deadline_passed') AS deadline_failures,
           0::bigint AS deadline_at_risk
    FROM task_state_history h JOIN tasks t ON t.id = h.task_id
    WHERE h.changed_at >= $1 AND h.changed_at < $2
      AND (h.metadata ? 'recovery' OR h.metadata ? 'refused')
    GROUP BY t.required_capability
    UNION ALL
    SELECT required_capability, 0, 0, 0, 0, count(*)
    FROM tasks
    WHERE deadline_risk_at >= $1 AND deadline_risk_at < $2
    GROUP BY required_capability
)
SELECT capability::text AS capability,
       sum(reassignments)::bigint AS reassignments,
       sum(ack_timeouts)::bigint AS ack_timeouts,
       sum(stale_reports_refused)::bigint AS stale_reports_refused,
       sum(deadline_failures)::bigint AS deadline_failures,
       sum(deadline_at_risk)::bigint AS deadline_at_risk
FROM rescued
GROUP BY capability
ORDER BY capability NULLS FIRST";
