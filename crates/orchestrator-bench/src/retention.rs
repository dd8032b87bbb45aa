//! W6: retention. Loads `BENCH_RETENTION_TASKS` tasks (default 1,000,000)
//! finished 40 days ago, each with the four history rows of its life, beside
//! 100,000 live tasks and 10,000 finished yesterday; then deletes what is
//! past a 30-day retention as the `task_retention` job does, 1,000 tasks
//! per statement until a statement comes back short. Prints the rate and
//! each statement's duration, which is how long it holds its row locks.

use std::time::{Duration, Instant};

use chrono::Utc;
use orchestrator_app::jobs::DELETE_BATCH;
use tokio_postgres::NoTls;

/// Tasks that are not finished (pending), and finished yesterday: both stay.
const LIVE: i64 = 100_000;
const RECENT: i64 = 10_000;
const RETENTION_DAYS: i64 = 30;

/// `$1` tasks of `$2` status that finished `$3` days ago (none when
/// pending), a millisecond apart.
const LOAD_TASKS: &str = "\
INSERT INTO tasks (task_type, title, payload, status, priority, created_at, assigned_at, started_at,
                   completed_at, updated_at, result, retry_count, max_retries, attempt)
SELECT 'bench', 'task ' || g, '{\"n\": 1}', $2::text, 5, t - interval '3 seconds', t - interval '2 seconds',
       t - interval '1 second', CASE WHEN $2::text = 'pending' THEN NULL ELSE t END, t, '{\"ok\": true}', 0, 3, 1
FROM generate_series(1, $1::int8) g,
     LATERAL (SELECT (now() AT TIME ZONE 'UTC') - make_interval(days => $3::int4)
                     - g * interval '1 millisecond' AS t) c";

/// The four history rows of each completed task's life.
const LOAD_HISTORY: &str = "\
INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, reason, changed_at)
SELECT t.id, s.from_status, s.to_status, 'bench', 'bench', t.completed_at - s.back
FROM tasks t
CROSS JOIN (VALUES (NULL, 'pending', interval '3 seconds'),
                   ('pending', 'assigned', interval '2 seconds'),
                   ('assigned', 'in_progress', interval '1 second'),
                   ('in_progress', 'completed', interval '0 seconds'))
     AS s(from_status, to_status, back)
WHERE t.status = 'completed'";

/// The pending tasks' queue rows, as creation writes them.
const QUEUE_PENDING: &str = "\
INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt)
SELECT id, priority, deadline, created_at, required_capability, attempt FROM tasks WHERE status = 'pending'";

async fn client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn count(client: &tokio_postgres::Client, table: &str) -> anyhow::Result<i64> {
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?;
    Ok(row.get(0))
}

/// Loads the old tasks with their history, the live and the recent ones,
/// and vacuums, as old rows would be.
async fn load(client: &tokio_postgres::Client, old: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let statuses: [(i64, &str, i32); 3] = [
        (old, "completed", 40),
        (RECENT, "completed", 1),
        (LIVE, "pending", 0),
    ];
    for (n, status, days_ago) in statuses {
        client.execute(LOAD_TASKS, &[&n, &status, &days_ago]).await?;
    }
    client.execute(LOAD_HISTORY, &[]).await?;
    client.execute(QUEUE_PENDING, &[]).await?;
    client
        .batch_execute("VACUUM ANALYZE tasks, task_state_history")
        .await?;
    println!(
        "  loaded {} tasks and {} history rows in {:.0} s",
        count(client, "tasks").await?,
        count(client, "task_state_history").await?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn w6(old: i64) -> anyhow::Result<()> {
    let (database, ports) = crate::pg_ports().await?;
    let sql = client(&database.url).await?;
    load(&sql, old).await?;
    let history_before = count(&sql, "task_state_history").await?;

    let before = Utc::now() - chrono::Duration::days(RETENTION_DAYS);
    let started = Instant::now();
    let (mut deleted, mut statements) = (0u64, Vec::new());
    loop {
        let one = Instant::now();
        let n = ports.tasks.delete_finished_tasks(before, DELETE_BATCH).await?;
        statements.push(one.elapsed());
        deleted += n;
        if n < u64::from(DELETE_BATCH) {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let history = history_before - count(&sql, "task_state_history").await?;
    statements.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(statements[((statements.len() - 1) as f64 * q).round() as usize]);
    println!(
        "  deleted {deleted} tasks and {history} history rows in {elapsed:.1} s: {:.0} tasks/s, {:.0} rows/s in all",
        deleted as f64 / elapsed,
        (deleted as f64 + history as f64) / elapsed,
    );
    println!(
        "  {} statements of {DELETE_BATCH} tasks: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        statements.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "  left: {} tasks (live and recent), {} history rows",
        count(&sql, "tasks").await?,
        count(&sql, "task_state_history").await?
    );
    Ok(())
}
