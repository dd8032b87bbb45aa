//! `make bench-scale`: every page at a million tasks. Preloads
//! `SCALE_TASKS` finished tasks (default 1,000,000) with four history rows
//! each, spread over the last 25 days, beside 1,000 pending and 200
//! running tasks and 50 droplets; analyses the tables, as autovacuum
//! would have; starts the release server on it and prints the p50 and max
//! of every `GET` of the API (from its own `/openapi.json`, with the list
//! filters a dashboard uses) and of every dashboard page, slowest first.
//! Prints figures, asserts nothing.

use std::time::{Duration, Instant};

use orchestrator_bench::env_or;
use orchestrator_bench::server::{Options, Server};
use orchestrator_domain::Permission;
use serde_json::Value;
use tokio_postgres::NoTls;

/// Timed requests per URL, after one to warm it.
const RUNS: usize = 5;

/// The preload: droplets, finished tasks and their history, live work.
const PRELOAD: &[(&str, &str)] = &[
    (
        "50 droplets",
        "INSERT INTO droplets (droplet_id, name, endpoint, capabilities, status, max_concurrent_tasks,
                               last_heartbeat, registered_at, updated_at, session_started_at)
         SELECT g, 'droplet ' || g, 'http://droplet-' || g || '.scale:8000', '[\"scale\"]'::jsonb, 'active', 20,
                now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' - interval '30 days',
                now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' - interval '30 days'
         FROM generate_series(1, 50) g",
    ),
    (
        "finished tasks",
        "INSERT INTO tasks (task_type, title, payload, required_capability, assigned_droplet_id, status, priority,
                            created_at, assigned_at, started_at, completed_at, result, error_message,
                            retry_count, max_retries, created_by, updated_at, attempt)
         SELECT 'type-' || (g % 10), 'task ' || g, jsonb_build_object('n', g), 'scale',
                (SELECT min(id) FROM droplets) + g % 50,
                CASE WHEN g % 100 < 90 THEN 'completed' WHEN g % 100 < 97 THEN 'failed' ELSE 'cancelled' END,
                1 + g % 10, at, at + interval '40 ms', at + interval '60 ms', at + interval '900 ms',
                CASE WHEN g % 100 < 90 THEN '{\"ok\": true}'::jsonb END,
                CASE WHEN g % 100 BETWEEN 90 AND 96 THEN 'the droplet gave up' END,
                0, 3, 'loader', at + interval '900 ms', 1
         FROM (SELECT g, now() AT TIME ZONE 'UTC' - interval '25 days' * (1 - g::float8 / $1::bigint) AS at
               FROM generate_series(1, $1::bigint) g) s",
    ),
    (
        "their history, 4 rows each",
        "INSERT INTO task_state_history (task_id, from_status, to_status, changed_by, changed_at, metadata)
         SELECT t.id, h.from_status, coalesce(h.to_status, t.status), 'loader',
                t.created_at + h.after, jsonb_build_object('attempt', 1)
         FROM tasks t
         CROSS JOIN (VALUES (NULL, 'pending', interval '0'), ('pending', 'assigned', interval '40 ms'),
                            ('assigned', 'in_progress', interval '60 ms'), ('in_progress', NULL, interval '900 ms'))
              AS h(from_status, to_status, after)
         WHERE t.status IN ('completed', 'failed', 'cancelled')",
    ),
    (
        "1,000 pending tasks no droplet can take, 200 running",
        "INSERT INTO tasks (task_type, title, payload, required_capability, assigned_droplet_id, status, priority,
                            created_at, assigned_at, started_at, created_by, updated_at, attempt)
         SELECT 'type-' || (g % 10), 'live ' || g, '{}'::jsonb,
                CASE WHEN g <= 1000 THEN 'gpu' ELSE 'scale' END,
                CASE WHEN g > 1000 THEN (SELECT min(id) FROM droplets) + g % 50 END,
                CASE WHEN g <= 1000 THEN 'pending' ELSE 'in_progress' END, 5,
                now() AT TIME ZONE 'UTC' - interval '1 minute',
                CASE WHEN g > 1000 THEN now() AT TIME ZONE 'UTC' END,
                CASE WHEN g > 1000 THEN now() AT TIME ZONE 'UTC' END,
                'loader', now() AT TIME ZONE 'UTC', CASE WHEN g > 1000 THEN 1 ELSE 0 END
         FROM generate_series(1, 1200) g",
    ),
    (
        "their run and queue rows",
        "WITH runs AS (
             INSERT INTO task_runs (task_id, assigned_droplet_id, status, assigned_at, started_at, retry_count,
                                    updated_at, attempt, requeues)
             SELECT id, assigned_droplet_id, status, assigned_at, started_at, retry_count, updated_at, attempt,
                    requeues
             FROM tasks WHERE status = 'in_progress'
             RETURNING task_id
         ), stored AS (
             UPDATE tasks SET status = 'pending', assigned_droplet_id = NULL, assigned_at = NULL, started_at = NULL
             WHERE id IN (SELECT task_id FROM runs)
         )
         INSERT INTO task_queue (task_id, priority, deadline, created_at, required_capability, attempt)
         SELECT id, priority, deadline, created_at, required_capability, attempt FROM tasks
         WHERE status = 'pending' AND id NOT IN (SELECT task_id FROM runs)",
    ),
    ("VACUUM ANALYZE", "VACUUM ANALYZE"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks: i64 = env_or("SCALE_TASKS", 1_000_000);
    let options = Options {
        env: [
            // The preload is the state measured: nothing moves it meanwhile.
            ("ENABLE_AUTO_RECOVERY", "false"),
            ("TASK_RETENTION_DAYS", "3650"),
            ("ROUTER_INTERVAL", "3600"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect(),
        log: None,
    };
    let server = Server::start_with(2, 10, options).await?;
    preload(&server.database.url, tasks).await?;
    let admin = server.token("admin", Permission::Admin, None);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let ids = Ids::find(&server.database.url).await?;
    let mut urls = api_gets(&client, &server.url, &ids).await?;
    urls.extend(dashboard_pages(&ids));
    println!(
        "\n{tasks} finished tasks ({} history rows), 1,200 live, 50 droplets",
        tasks * 4
    );
    println!("{:>10} {:>10}  request", "p50 ms", "max ms");
    let mut timed = Vec::new();
    for path in urls {
        let (p50, max, status) = time(&client, &server.url, &path, &admin).await?;
        timed.push((p50, max, status, path));
    }
    timed.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (p50, max, status, path) in timed {
        let flag = if status == 200 {
            String::new()
        } else {
            format!("  (answered {status})")
        };
        println!("{p50:>10.1} {max:>10.1}  GET {path}{flag}");
    }
    Ok(())
}

async fn preload(url: &str, tasks: i64) -> anyhow::Result<()> {
    let (db, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    for (what, sql) in PRELOAD {
        let started = Instant::now();
        if sql.contains("$1") {
            db.execute(*sql, &[&tasks]).await?;
        } else {
            db.batch_execute(sql).await?;
        }
        eprintln!("preload: {what} in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Ids the parameterised paths name: a finished task, a droplet.
struct Ids {
    task: i64,
    droplet: i64,
    /// The cursor (`after`) of the task halfway down the list.
    halfway: String,
}

impl Ids {
    async fn find(url: &str) -> anyhow::Result<Ids> {
        let (db, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        let task: i64 = db
            .query_one(
                "SELECT id FROM tasks WHERE status = 'failed' ORDER BY id LIMIT 1",
                &[],
            )
            .await?
            .get(0);
        let halfway: String = db
            .query_one(
                "SELECT (extract(epoch FROM created_at) * 1000000000)::bigint || '_' || id
                 FROM tasks ORDER BY created_at DESC, id DESC OFFSET 500000 LIMIT 1",
                &[],
            )
            .await?
            .get(0);
        Ok(Ids {
            task,
            droplet: 7,
            halfway,
        })
    }
}

/// Every `GET` of the document without a body to send or a socket to open,
/// its parameters filled, and the task list as a dashboard asks for it.
async fn api_gets(client: &reqwest::Client, base: &str, ids: &Ids) -> anyhow::Result<Vec<String>> {
    let document: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let mut urls: Vec<String> = document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(path, item)| item.get("get").is_some() && !path.starts_with("/ws/") && *path != "/docs")
        .map(|(path, _)| {
            path.replace("{task_id}", &ids.task.to_string())
                .replace("{id}", &ids.task.to_string())
                .replace("{droplet_id}", &ids.droplet.to_string())
                .replace("{job_id}", "task_router")
        })
        .collect();
    let half = 500_000;
    urls.extend([
        "/tasks?status=completed".to_owned(),
        "/tasks?status=failed&task_type=type-3".to_owned(),
        "/tasks?status=pending".to_owned(),
        "/tasks?status=in_progress".to_owned(),
        format!("/tasks?assigned_droplet_id={}", ids.droplet),
        format!("/tasks?offset={half}&limit=50"),
        format!("/tasks?after={}&limit=50", ids.halfway),
        "/tasks?search=task%2077".to_owned(),
    ]);
    Ok(urls)
}

fn dashboard_pages(ids: &Ids) -> Vec<String> {
    vec![
        "/ui/".to_owned(),
        "/ui/tasks".to_owned(),
        "/ui/tasks?status=failed".to_owned(),
        "/ui/tasks?status=pending".to_owned(),
        format!("/ui/tasks/{}", ids.task),
        "/ui/droplets".to_owned(),
        "/ui/jobs".to_owned(),
    ]
}

/// p50 and max in milliseconds over [`RUNS`] requests after a warm-up,
/// and the status answered.
async fn time(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
) -> anyhow::Result<(f64, f64, u16)> {
    let send = || {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .header("Cookie", format!("orchestrator_session={token}"))
            .send()
    };
    let status = send().await?.status().as_u16();
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let reply = send().await?;
        let _ = reply.bytes().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[RUNS / 2], times[RUNS - 1], status))
}
