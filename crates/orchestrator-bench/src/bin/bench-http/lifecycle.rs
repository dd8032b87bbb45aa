//! The full lifecycle over HTTP: droplets built on the worker runtime (a
//! third each by pull, by push and by `/ws/tasks`), a loader submitting
//! through `POST /tasks`, and the times read back from the tasks' rows.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use orchestrator_client::{Client, Delivery, Worker};
use orchestrator_domain::{Permission, RegistrationDraft, TaskDraft};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_postgres::NoTls;

use crate::latency::Latencies;
use crate::server::{Meter, Server};

const CAPABILITY: &str = "bench";

/// The running droplets; stopped when dropped.
pub struct Fleet {
    stops: Vec<oneshot::Sender<()>>,
}

impl Fleet {
    /// `droplets` workers of `slots` each, delivery by pull, push and feed in turn.
    pub async fn start(server: &Server, droplets: i64, slots: usize) -> anyhow::Result<Fleet> {
        let mut stops = Vec::new();
        for id in 1..=droplets {
            let (stop, stopped) = oneshot::channel::<()>();
            let (delivery, endpoint) = delivery_for(id)?;
            let client = Client::new(&server.url)?.with_token(server.token(
                &format!("droplet-{id}"),
                Permission::Write,
                Some(id),
            ));
            let me = RegistrationDraft {
                droplet_id: id,
                name: format!("bench {id}"),
                endpoint,
                ..RegistrationDraft::default()
            };
            let worker = Worker::builder(client, me)
                .capability(CAPABILITY, |_task| async { Ok(Value::Null) })
                .concurrency(slots)
                .delivery(delivery);
            // Pulling droplets poll often, as a latency-minded one would.
            let worker = match delivery {
                Delivery::Pull => worker.poll_interval(Duration::from_millis(20)),
                Delivery::Feed | Delivery::Push { .. } => worker,
            };
            tokio::spawn(worker.run(async {
                stopped.await.ok();
            }));
            stops.push(stop);
        }
        server.wait_for_droplets(usize::try_from(droplets)?).await?;
        // The feed droplets subscribe just after registering.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Fleet { stops })
    }

    pub fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
    }
}

/// Droplet `id`'s delivery: `BENCH_HTTP_DELIVERY` (`pull`, `push` or `feed`)
/// for all of them, else the three in turn.
fn delivery_for(id: i64) -> anyhow::Result<(Delivery, String)> {
    let turn = match std::env::var("BENCH_HTTP_DELIVERY").as_deref() {
        Ok("pull") => 0,
        Ok("push") => 1,
        Ok("feed") => 2,
        _ => id % 3,
    };
    Ok(match turn {
        0 => (Delivery::Pull, format!("http://127.0.0.1:9/{id}")),
        1 => {
            let listen: SocketAddr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            (Delivery::Push { listen }, format!("http://{listen}"))
        }
        _ => (Delivery::Feed, format!("http://127.0.0.1:9/{id}")),
    })
}

fn draft(n: usize) -> TaskDraft {
    TaskDraft {
        task_type: CAPABILITY.into(),
        title: Some(format!("task {n}")),
        required_capability: Some(CAPABILITY.into()),
        ..TaskDraft::default()
    }
}

fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// Task id → when it was (meant to be) sent, in Unix seconds.
type Sent = Arc<Mutex<HashMap<i64, f64>>>;

/// When a task was assigned, started and completed, in Unix seconds, from its row.
#[derive(Clone, Copy)]
struct Times {
    assigned: f64,
    started: f64,
    completed: f64,
}

fn loader(server: &Server) -> anyhow::Result<Client> {
    Ok(Client::new(&server.url)?.with_token(server.token("loader", Permission::Write, None)))
}

/// As many tasks as `concurrency` submitters can send, all at once.
pub async fn burn_down(server: &Server, total: usize, concurrency: usize) -> anyhow::Result<()> {
    let client = loader(server)?;
    let sent: Sent = Arc::default();
    let meter = Meter::start(server).await?;
    let started = SystemTime::now();
    futures_util::stream::iter(0..total)
        .for_each_concurrent(concurrency, |n| {
            let (client, sent) = (client.clone(), sent.clone());
            async move {
                let at = epoch_seconds(SystemTime::now());
                if let Ok(created) = client.create_task(&draft(n)).await {
                    sent.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(created.task_id, at);
                }
            }
        })
        .await;
    let submitted = started.elapsed().unwrap_or_default().as_secs_f64();
    let times = wait_for_completion(server, total, Duration::from_secs(600)).await?;
    let report = meter.report(server).await?;
    let last = times.values().map(|t| t.completed).fold(0.0, f64::max);
    let elapsed = last - epoch_seconds(started);
    println!(
        "  {total} tasks submitted by {concurrency} clients in {submitted:.1} s; all completed after {elapsed:.1} s: {:.0} tasks/s end to end",
        total as f64 / elapsed
    );
    print_latencies(&sent, &times);
    println!("    {report}");
    Ok(())
}

/// Submits `total` tasks, `rate` a second, each at its intended time and
/// without waiting for the one before (no coordinated omission); returns
/// each created task's intended send time.
async fn submit_at_rate(client: &Client, rate: u32, total: usize) -> Sent {
    let sent = Sent::default();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let (start, wall) = (tokio::time::Instant::now(), SystemTime::now());
    for n in 0..total {
        let offset = interval * n as u32;
        tokio::time::sleep_until(start + offset).await;
        let (client, sent) = (client.clone(), sent.clone());
        let intended = epoch_seconds(wall + offset);
        tokio::spawn(async move {
            if let Ok(created) = client.create_task(&draft(n)).await {
                sent.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(created.task_id, intended);
            }
        });
    }
    sent
}

/// `rate` tasks a second for `seconds`, timed from each one's intended send time.
pub async fn fixed_rate(server: &Server, rate: u32, seconds: u32) -> anyhow::Result<()> {
    let client = loader(server)?;
    let meter = Meter::start(server).await?;
    let total = (rate * seconds) as usize;
    let sent = submit_at_rate(&client, rate, total).await;
    let times = wait_for_completion(server, total, Duration::from_secs(120)).await?;
    let report = meter.report(server).await?;
    println!(
        "  {rate}/s for {seconds} s ({total} tasks, {} completed):",
        times.len()
    );
    print_latencies(&sent, &times);
    println!("    {report}");
    Ok(())
}

/// Submit→assigned and submit→completed, and where the time between went:
/// assigned→started is the delivery and the droplet's first report,
/// started→completed its second report (the handler does nothing).
/// The peers' workload (`make bench-peers`): `jobs` tasks preloaded, then
/// burned down by droplets with `concurrency` slots in all; then `rate`
/// tasks a second for `seconds`, timed from the intended send time to the
/// start of the handler (as the peers' handlers time themselves). Prints
/// one JSON line.
pub async fn peer_workload(
    server: &Server,
    jobs: usize,
    concurrency: usize,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<()> {
    let client = loader(server)?;
    futures_util::stream::iter(0..jobs)
        .for_each_concurrent(32, |n| {
            let client = client.clone();
            async move {
                let _ = client.create_task(&draft(n)).await;
            }
        })
        .await;
    let slots = concurrency.min(16);
    let droplets = i64::try_from(concurrency.div_ceil(slots)).unwrap_or(1);
    let started = SystemTime::now();
    let fleet = Fleet::start(server, droplets, slots).await?;
    let times = wait_for_completion(server, jobs, Duration::from_secs(600)).await?;
    let last = times.values().map(|t| t.completed).fold(0.0, f64::max);
    let burned = times.len();
    let burn_down_per_s = burned as f64 / (last - epoch_seconds(started));
    let total = (rate * seconds) as usize;
    let sent = submit_at_rate(&client, rate, total).await;
    let times = wait_for_completion(server, jobs + total, Duration::from_secs(120)).await?;
    fleet.stop();
    let mut latencies = Latencies::default();
    for (id, at) in sent.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if let Some(t) = times.get(id) {
            latencies.record_ms((t.started - at) * 1e3);
        }
    }
    let (p50, p99, max) = latencies.percentiles();
    let line = serde_json::json!({
        "system": format!("orchestrator {} (HTTP)", env!("CARGO_PKG_VERSION")),
        "burn_down_jobs": burned,
        "burn_down_per_s": burn_down_per_s,
        "rate": rate,
        "completed": latencies.len(),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
    });
    println!("{line}");
    Ok(())
}

fn print_latencies(sent: &Sent, times: &HashMap<i64, Times>) {
    let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
    let mut spans: [Latencies; 4] = Default::default();
    for (id, at) in sent.iter() {
        let Some(t) = times.get(id) else { continue };
        let [assigned, completed, delivered, reported] = &mut spans;
        assigned.record_ms((t.assigned - at) * 1e3);
        completed.record_ms((t.completed - at) * 1e3);
        delivered.record_ms((t.started - t.assigned) * 1e3);
        reported.record_ms((t.completed - t.started) * 1e3);
    }
    let [assigned, completed, delivered, reported] = &mut spans;
    println!("    submit→assigned    {}", assigned.summary());
    println!("    submit→completed   {}", completed.summary());
    println!("    assigned→started   {}", delivered.summary());
    println!("    started→completed  {}", reported.summary());
}

/// Waits until `total` tasks are completed (or `limit` passes), then reads
/// every completed task's assignment and completion times from its row.
async fn wait_for_completion(
    server: &Server,
    total: usize,
    limit: Duration,
) -> anyhow::Result<HashMap<i64, Times>> {
    let (db, connection) = tokio_postgres::connect(&server.database.url, NoTls).await?;
    tokio::spawn(connection);
    let started = std::time::Instant::now();
    loop {
        let row = db
            .query_one("SELECT count(*) FROM tasks WHERE status = 'completed'", &[])
            .await?;
        let done: i64 = row.get(0);
        if done as usize >= total || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = db
        .query(
            "SELECT id::int8, EXTRACT(EPOCH FROM assigned_at)::float8, EXTRACT(EPOCH FROM started_at)::float8, \
             EXTRACT(EPOCH FROM completed_at)::float8 FROM tasks WHERE status = 'completed'",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let times = Times {
                assigned: row.get(1),
                started: row.get(2),
                completed: row.get(3),
            };
            (row.get::<_, i64>(0), times)
        })
        .collect())
}
