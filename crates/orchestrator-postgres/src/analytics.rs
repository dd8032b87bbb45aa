//! The analytics of spec section 5, computed by PostgreSQL: counts with
//! `FILTER`, percentiles with `percentile_cont`, one statement each.
//!
//! Unlike the lifecycle's statements, these are not prepared: their best
//! plan depends on the window's size (a few index entries for the
//! dashboard's five-minute slices, most of a day's tasks for a day), and a
//! prepared statement's generic plan, chosen for any window, read the
//! whole table for every slice (the overview took 483 ms at a million
//! tasks prepared, 56 ms planned per call).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text};
use diesel_async::RunQueryDsl;
use orchestrator_domain::{DropletId, TaskStatus};
use orchestrator_ports::{
    AnalyticsStore, Percentiles, RescueCounts, RoutingStats, StoreResult, TaskPerformance, Throughput,
    TimeWindow, TypeBreakdown,
};

use crate::PgStore;
use crate::error::store_error;
use crate::rows::naive;
use crate::sql;

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

/// A count by some key.
#[derive(QueryableByName)]
pub(crate) struct CountRow {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
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
        let row: ThroughputRow = sql::tasks::Throughput { since, until }
            .planned_per_call()
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
        let row: PerformanceRow = sql::tasks::Performance {
            since,
            until,
            task_type: task_type.as_deref(),
            droplet,
        }
        .planned_per_call()
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
        let rows: Vec<TypeRow> = sql::tasks::ByType { since, until }
            .planned_per_call()
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
        let wait: WaitRow = sql::tasks::TimeToAssign { since, until }
            .planned_per_call()
            .get_result(&mut conn)
            .await
            .map_err(store_error)?;
        let per_droplet: Vec<CountRow> = sql::tasks::AssignmentsPerDroplet { since, until }
            .planned_per_call()
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        let stranded: Vec<CountRow> = diesel::sql_query(sql::tasks::PENDING_WITHOUT_CAPABLE_DROPLET)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        drop(conn);
        let rescues = self.rescues(window).await?;
        Ok(RoutingStats {
            time_to_assign_seconds: percentiles(wait.wait),
            assignments_per_droplet: per_droplet
                .into_iter()
                .filter_map(|r| Some((r.key.parse::<DropletId>().ok()?, count(r.n))))
                .collect(),
            pending_without_capable_droplet: stranded.into_iter().map(|r| (r.key, count(r.n))).collect(),
            rescues,
        })
    }

    async fn rescues(&self, window: TimeWindow) -> StoreResult<Vec<RescueCounts>> {
        let (since, until) = bounds(window);
        let mut conn = self.conn().await?;
        let rows: Vec<RescueRow> = sql::history::Rescues { since, until }
            .planned_per_call()
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(RescueCounts::from)
            .filter(|c| !c.is_empty())
            .collect())
    }

    async fn pending_by_priority(&self) -> StoreResult<BTreeMap<u8, u64>> {
        let mut conn = self.conn().await?;
        let rows: Vec<CountRow> = diesel::sql_query(sql::tasks::PENDING_BY_PRIORITY)
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.key.parse::<u8>().ok()?, count(r.n))))
            .collect())
    }
}
