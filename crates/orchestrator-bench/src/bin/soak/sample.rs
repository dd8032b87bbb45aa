//! The figures of one row, taken from the server (RSS and CPU from `/proc`, its
//! request counters from `/metrics`), from its database (each table's size
//! and rows, unfinished tasks) and from the loader's window.

use std::time::Duration;

use orchestrator_bench::server::{RequestCounts, Server};
use tokio::time::Instant;
use tokio_postgres::NoTls;

use crate::load::Tracker;

/// The tables whose size and rows are followed, in the order printed.
pub const TABLES: [&str; 5] = [
    "tasks",
    "task_state_history",
    "heartbeats",
    "droplets",
    "idempotency_keys",
];

/// Tasks not finished this long after their creation count as unfinished.
const UNFINISHED_AFTER: &str = "1 minute";

#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub rows: i64,
    /// `pg_total_relation_size`: the table, its indexes and TOAST.
    pub bytes: i64,
}

/// One row of the report: the state at `at` (since the warm-up ended), and
/// what happened since the row before.
#[derive(Debug, Clone)]
pub struct Row {
    pub at: Duration,
    pub rss_mib: f64,
    /// The server's CPU since the row before, in % of one core.
    pub cpu_percent: f64,
    /// In the order of [`TABLES`].
    pub tables: Vec<Table>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub submitted: u64,
    pub submit_errors: u64,
    pub completed: u64,
    pub failed: u64,
    /// Tasks pending, assigned or in progress a minute after their creation.
    pub unfinished: i64,
    pub requests_per_s: f64,
    pub client_errors: f64,
    pub server_errors: f64,
}

/// The database at the end: per status the tasks and the seconds since
/// the oldest of them last changed, and per table how often autovacuum ran
/// and the dead and live rows.
#[derive(Debug, Default)]
pub struct End {
    pub statuses: Vec<(String, i64, f64)>,
    pub vacuum: Vec<(String, i64, i64, i64)>,
}

/// Takes the rows, keeping them for the summary.
#[derive(Debug)]
pub struct Sampler {
    db: tokio_postgres::Client,
    rows: Vec<Row>,
    counts: RequestCounts,
    cpu_seconds: f64,
    since: Instant,
}

impl Sampler {
    pub async fn connect(server: &Server) -> anyhow::Result<Sampler> {
        let (db, connection) = tokio_postgres::connect(&server.database.url, NoTls).await?;
        tokio::spawn(connection);
        Ok(Sampler {
            db,
            rows: Vec::new(),
            counts: server.request_counts().await?,
            cpu_seconds: server.cpu_seconds(),
            since: Instant::now(),
        })
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Takes a row at `at`, keeps it and returns it.
    pub async fn take(&mut self, server: &Server, tracker: &Tracker, at: Duration) -> anyhow::Result<&Row> {
        let mut window = tracker.take_window();
        let (p50_ms, p99_ms, _) = window.latencies.percentiles();
        let (counts, cpu_seconds) = (server.request_counts().await?, server.cpu_seconds());
        let seconds = self.since.elapsed().as_secs_f64();
        let row = Row {
            at,
            rss_mib: server.memory_mib().0,
            cpu_percent: (cpu_seconds - self.cpu_seconds) / seconds * 100.0,
            tables: self.tables().await?,
            p50_ms,
            p99_ms,
            submitted: window.submitted,
            submit_errors: window.submit_errors,
            completed: window.completed,
            failed: window.failed,
            unfinished: self.unfinished().await?,
            requests_per_s: (counts.requests - self.counts.requests) / seconds,
            client_errors: counts.client_errors - self.counts.client_errors,
            server_errors: counts.server_errors - self.counts.server_errors,
        };
        (self.counts, self.cpu_seconds, self.since) = (counts, cpu_seconds, Instant::now());
        self.rows.push(row);
        Ok(self.rows.last().expect("a row was just pushed"))
    }

    async fn tables(&self) -> anyhow::Result<Vec<Table>> {
        let mut tables = Vec::new();
        for table in TABLES {
            let sql = format!("SELECT pg_total_relation_size('{table}'), (SELECT count(*) FROM {table})");
            let row = self.db.query_one(&sql, &[]).await?;
            tables.push(Table {
                bytes: row.get(0),
                rows: row.get(1),
            });
        }
        Ok(tables)
    }

    async fn unfinished(&self) -> anyhow::Result<i64> {
        let sql = format!(
            "SELECT count(*) FROM task_view WHERE status IN ('pending', 'assigned', 'in_progress') \
             AND created_at < (now() AT TIME ZONE 'UTC') - interval '{UNFINISHED_AFTER}'"
        );
        Ok(self.db.query_one(&sql, &[]).await?.get(0))
    }

    /// The database at the end.
    pub async fn finish(&self) -> anyhow::Result<End> {
        let statuses = self
            .db
            .query(
                "SELECT status::text, count(*), \
                 EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - min(updated_at))::float8 \
                 FROM task_view GROUP BY 1 ORDER BY 1",
                &[],
            )
            .await?;
        let names = TABLES.map(|t| format!("'{t}'")).join(", ");
        let sql = format!(
            "SELECT relname::text, autovacuum_count, n_dead_tup, n_live_tup FROM pg_stat_user_tables \
             WHERE relname IN ({names}) ORDER BY 1"
        );
        let vacuum = self.db.query(&sql, &[]).await?;
        Ok(End {
            statuses: statuses.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect(),
            vacuum: vacuum
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
        })
    }
}
