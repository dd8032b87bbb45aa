//! `make bench`: the task lifecycle on PostgreSQL through the use-case layer.
//!
//! - W1: preload `BENCH_TASKS` tasks (default 100,000), then 50 simulated
//!   droplets run them all `pending → assigned → in_progress → completed`;
//!   prints tasks per second end to end.
//! - W2: tasks submitted at a fixed rate (500/s and 2,000/s) to idle
//!   droplets; prints p50, p99 and max of submit→assigned and
//!   submit→completed, measured from each task's intended send time so that
//!   a slow system cannot hide its delay (no coordinated omission).
//! - W3: fan-out to 1,000 WebSocket clients of the real server at 500
//!   events/s; prints p50, p99 and max from an event's commit to its
//!   arrival at the last client.
//! - W5: 1,000 droplets heartbeating once a second for 60 s; prints the
//!   heartbeat latency, database commits per second and CPU.
//! - W6: retention. 1,000,000 tasks finished 40 days ago, each with four
//!   history rows, beside live and recent ones, deleted as the
//!   `task_retention` job deletes them; prints rows per second and each
//!   statement's duration.
//! - pgbench `-N`, 16 clients, 10 s on the same server: the machine's
//!   ceiling, with W1 as a ratio of it.

mod fanout;
mod heartbeats;
mod retention;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestrator_app::tasks::StatusChange;
use orchestrator_app::{DropletService, Ports, Router, TaskService, WorkflowService};
use orchestrator_domain::{
    Caller, DomainEvent, Permission, Permissions, RegistrationDraft, TaskDraft, TaskId, TaskStatus,
};
use orchestrator_memory::InProcessEventBus;
use orchestrator_ports::{SystemClock, TaskFilter};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::pg::TestDatabase;
use tokio::sync::mpsc;

const DROPLETS: i64 = 50;
/// Tasks each droplet may hold; the router keeps them all busy.
const CAPACITY: i64 = 20;
const CAPABILITY: &str = "bench";

struct Bench {
    ports: Ports,
    tasks: TaskService,
    router: Arc<Router>,
    workflows: WorkflowService,
    database: TestDatabase,
}

/// Updates of each table the lifecycle writes, and how many were heap-only
/// (HOT: no index entry written), as `pg_stat_user_tables` counts them
/// (its counters trail the last second of writes).
async fn heap_only_updates(database: &TestDatabase) -> String {
    let mut parts = Vec::new();
    for table in ["tasks", "task_runs", "task_queue", "droplets"] {
        let count = |column: &str| {
            format!(
                "SELECT coalesce(sum({column}), 0)::bigint FROM pg_stat_user_tables WHERE relname = '{table}'"
            )
        };
        let updates = database.count(&count("n_tup_upd")).await;
        if updates == 0 {
            continue;
        }
        let hot = database.count(&count("n_tup_hot_upd")).await;
        #[allow(clippy::cast_precision_loss, reason = "a share of counts")]
        let share = 100.0 * hot as f64 / updates as f64;
        parts.push(format!("{table} {hot} of {updates} ({share:.0}%)"));
    }
    format!("heap-only updates: {}", parts.join(", "))
}

fn caller(subject: String, permission: Permission, droplet_id: Option<i64>) -> Caller {
    Caller {
        subject,
        permissions: Permissions::new([permission]),
        droplet_id,
    }
}

/// A fresh, migrated database and the ports over it, as a server has them.
pub(crate) async fn pg_ports() -> anyhow::Result<(TestDatabase, Ports)> {
    let (database, store) = pg_store().await?;
    Ok((database, ports_over(store)))
}

/// A fresh, migrated database and the store over it.
async fn pg_store() -> anyhow::Result<(TestDatabase, Arc<PgStore>)> {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await?;
    let settings = PoolSettings {
        max_size: 32,
        timeout: Duration::from_secs(30),
    };
    let store = Arc::new(PgStore::new(&database.url, settings)?);
    Ok((database, store))
}

fn ports_over(store: Arc<PgStore>) -> Ports {
    Ports {
        tasks: store.clone(),
        droplets: store,
        events: Arc::new(InProcessEventBus::default()),
        clock: Arc::new(SystemClock),
    }
}

async fn setup() -> anyhow::Result<Bench> {
    let (database, store) = pg_store().await?;
    let ports = ports_over(store.clone());
    let droplets = DropletService::new(ports.clone());
    for id in 1..=DROPLETS {
        let draft = RegistrationDraft {
            droplet_id: id,
            name: format!("bench {id}"),
            // Never called: the benchmark's droplets pull.
            endpoint: format!("http://droplet-{id}.bench:9"),
            capabilities: vec![CAPABILITY.into()],
            max_concurrent_tasks: Some(CAPACITY),
            ..RegistrationDraft::default()
        };
        droplets
            .register(
                &caller(format!("droplet-{id}"), Permission::Write, Some(id)),
                draft,
            )
            .await?;
    }
    set_key_limits(&store).await?;
    let tasks = TaskService::new(ports.clone());
    Ok(Bench {
        // As the server runs it: every end is offered to the workflows' settling.
        workflows: WorkflowService::new(ports.clone(), store, tasks.clone()),
        tasks,
        router: Router::new(ports.clone()),
        ports,
        database,
    })
}

fn draft(n: usize) -> TaskDraft {
    let keys = concurrency_keys();
    TaskDraft {
        task_type: "bench".into(),
        title: Some(format!("task {n}")),
        required_capability: Some(CAPABILITY.into()),
        concurrency_key: (keys > 0).then(|| format!("tenant-{}", n % keys)),
        ..TaskDraft::default()
    }
}

/// `BENCH_KEYS`: how many concurrency keys the tasks are spread over, each
/// with a limit that never binds (every slot of every droplet), so that W1
/// measures what checking them costs; 0 (the default) for none.
fn concurrency_keys() -> usize {
    static KEYS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *KEYS.get_or_init(|| {
        std::env::var("BENCH_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// A limit for each key of [`concurrency_keys`].
async fn set_key_limits(store: &PgStore) -> anyhow::Result<()> {
    use orchestrator_ports::ConcurrencyStore;
    let room = u32::try_from(DROPLETS * CAPACITY)?;
    for key in 0..concurrency_keys() {
        store
            .set_concurrency_limit(&format!("tenant-{key}"), room, None, chrono::Utc::now())
            .await?;
    }
    Ok(())
}

/// Simulated droplets: each runs its assignments in order, learning of them
/// from `task_assigned` events and, as a safety net, by polling.
fn start_droplets(bench: &Bench) -> Vec<tokio::task::JoinHandle<()>> {
    let mut senders = HashMap::new();
    let mut handles = Vec::new();
    for id in 1..=DROPLETS {
        let (tx, rx) = mpsc::unbounded_channel::<TaskId>();
        senders.insert(id, tx);
        handles.push(tokio::spawn(run_droplet(bench.tasks.clone(), id, rx)));
    }
    let mut events = bench.ports.events.subscribe();
    handles.push(tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let DomainEvent::TaskAssigned(task) = event
                && let Some(tx) = task.assigned_droplet_id.and_then(|d| senders.get(&d))
            {
                let _ = tx.send(task.id);
            }
        }
    }));
    handles
}

/// One simulated droplet: it works on each assignment as it arrives, up to
/// its capacity at once, as a droplet with that many slots would.
async fn run_droplet(tasks: TaskService, id: i64, mut assigned: mpsc::UnboundedReceiver<TaskId>) {
    let me = caller(format!("droplet-{id}"), Permission::Write, Some(id));
    let slots = Arc::new(tokio::sync::Semaphore::new(CAPACITY as usize));
    // Events rarely lag; the poll is only a safety net, kept rare so that
    // it does not load the database it measures.
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    loop {
        let batch: Vec<TaskId> = tokio::select! {
            Some(task) = assigned.recv() => vec![task],
            _ = poll.tick() => held(&tasks, &me, id).await,
        };
        for task in batch {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (tasks, me) = (tasks.clone(), me.clone());
            tokio::spawn(async move {
                work_on(&tasks, &me, task).await;
                drop(slot);
            });
        }
    }
}

/// Starts then completes `task`, as a droplet with nothing to do would.
async fn work_on(tasks: &TaskService, me: &Caller, task: TaskId) {
    for status in [TaskStatus::InProgress, TaskStatus::Completed] {
        let change = StatusChange {
            status,
            result: None,
            error_message: None,
            attempt: None,
        };
        // Already moved (a poll and an event for the same task): stop.
        if tasks.update_status(me, task, change).await.is_err() {
            return;
        }
    }
}

async fn held(tasks: &TaskService, me: &Caller, id: i64) -> Vec<TaskId> {
    let filter = TaskFilter {
        status: Some(TaskStatus::Assigned),
        assigned_droplet_id: Some(id),
        limit: 100,
        ..TaskFilter::default()
    };
    match tasks.list(me, filter).await {
        Ok(page) => page.tasks.into_iter().map(|v| v.task.id).collect(),
        Err(_) => Vec::new(),
    }
}

async fn completed(bench: &Bench) -> u64 {
    let counts = bench
        .ports
        .tasks
        .count_tasks_by_status()
        .await
        .unwrap_or_default();
    counts.get(&TaskStatus::Completed).copied().unwrap_or(0)
}

/// Counts `task_completed` events from now on.
struct Completions {
    seen: Arc<AtomicU64>,
    counter: tokio::task::JoinHandle<()>,
}

impl Completions {
    fn start(bench: &Bench) -> Self {
        let seen = Arc::new(AtomicU64::new(0));
        let mut events = bench.ports.events.subscribe();
        let counter = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    if matches!(event, DomainEvent::TaskCompleted(_)) {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Completions { seen, counter }
    }

    /// Waits until `total` tasks are completed, checking the store every two
    /// seconds in case events were skipped under load; gives up after `limit`.
    async fn wait(self, bench: &Bench, total: u64, limit: Duration) {
        let (started, mut checked) = (Instant::now(), Instant::now());
        while started.elapsed() < limit && self.seen.load(Ordering::Relaxed) < total {
            if checked.elapsed() > Duration::from_secs(2) {
                if completed(bench).await >= total {
                    break;
                }
                checked = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.counter.abort();
    }
}

async fn w1(total: usize) -> anyhow::Result<f64> {
    let bench = setup().await?;
    bench.router.set_paused(true);
    let loader = caller("loader".into(), Permission::Write, None);
    let started = Instant::now();
    futures_util::stream::iter(0..total)
        .for_each_concurrent(32, |n| {
            let (tasks, loader) = (bench.tasks.clone(), loader.clone());
            async move {
                let _ = tasks.create(&loader, draft(n)).await;
            }
        })
        .await;
    println!(
        "  preloaded {total} tasks in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let droplets = start_droplets(&bench);
    let services = orchestrator_app::Services::default();
    bench.router.start(&services);
    bench.workflows.start(&services);
    let completions = Completions::start(&bench);
    let usage = Usage::start();
    let started = Instant::now();
    bench.router.set_paused(false);
    completions
        .wait(&bench, total as u64, Duration::from_secs(3600))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    droplets.iter().for_each(|h| h.abort());
    let rate = total as f64 / elapsed;
    println!(
        "  {total} tasks pending → assigned → in_progress → completed in {elapsed:.1} s: {rate:.0} tasks/s end to end\n    {}\n    {}",
        usage.report(total),
        heap_only_updates(&bench.database).await
    );
    Ok(rate)
}

#[derive(Default)]
struct Timings {
    intended: HashMap<TaskId, Instant>,
    created: HashMap<TaskId, Instant>,
    assigned: HashMap<TaskId, Instant>,
    completed: HashMap<TaskId, Instant>,
}

async fn w2(rate: u32, seconds: u32) -> anyhow::Result<()> {
    let bench = setup().await?;
    println!("  {rate}/s: droplets registered");
    let timings = Arc::new(Mutex::new(Timings::default()));
    let mut events = bench.ports.events.subscribe();
    let recorder = {
        let timings = timings.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let mut t = timings.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    DomainEvent::TaskCreated(task) => {
                        t.created.insert(task.id, now);
                    }
                    DomainEvent::TaskAssigned(task) => {
                        t.assigned.entry(task.id).or_insert(now);
                    }
                    DomainEvent::TaskCompleted(task) => {
                        t.completed.insert(task.id, now);
                    }
                    _ => {}
                }
            }
        })
    };
    let droplets = start_droplets(&bench);
    let services = orchestrator_app::Services::default();
    bench.router.start(&services);
    bench.workflows.start(&services);
    let completions = Completions::start(&bench);
    let usage = Usage::start();
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let loader = caller("loader".into(), Permission::Write, None);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    for n in 0..total {
        let intended = start + interval * n as u32;
        tokio::time::sleep_until(intended).await;
        let (tasks, loader, timings) = (bench.tasks.clone(), loader.clone(), timings.clone());
        tokio::spawn(async move {
            if let Ok(task) = tasks.create(&loader, draft(n)).await {
                let mut t = timings.lock().unwrap_or_else(|p| p.into_inner());
                t.intended.insert(task.id, intended.into_std());
            }
        });
    }
    completions
        .wait(&bench, total as u64, Duration::from_secs(60))
        .await;
    recorder.abort();
    droplets.iter().for_each(|h| h.abort());
    let t = timings.lock().unwrap_or_else(|p| p.into_inner());
    let latencies = |at: &HashMap<TaskId, Instant>| {
        let mut ms: Vec<f64> = t
            .intended
            .iter()
            .filter_map(|(id, sent)| {
                at.get(id)
                    .map(|done| done.saturating_duration_since(*sent).as_secs_f64() * 1e3)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let (created, assigned, done) = (
        latencies(&t.created),
        latencies(&t.assigned),
        latencies(&t.completed),
    );
    println!(
        "  {rate}/s for {seconds} s ({total} tasks, {} completed):\n    submit→created   {}\n    submit→assigned  {}\n    submit→completed {}\n    {}",
        done.len(),
        summary(&created),
        summary(&assigned),
        summary(&done),
        usage.report(total)
    );
    Ok(())
}

/// The CPU this process (the use cases, the router and the simulated
/// droplets) used from `start` on, and its memory.
struct Usage {
    cpu_before: Option<f64>,
}

impl Usage {
    fn start() -> Self {
        Usage {
            cpu_before: heartbeats::cpu_seconds(),
        }
    }

    fn report(&self, tasks: usize) -> String {
        let cpu = heartbeats::cpu_seconds()
            .zip(self.cpu_before)
            .map_or(f64::NAN, |(after, before)| after - before);
        let (rss, peak) = memory_mib();
        format!(
            "orchestrator process (use cases, router and the simulated droplets): CPU {cpu:.1} s, {:.0} µs per task; RSS {rss:.0} MiB (peak {peak:.0} MiB)",
            cpu * 1e6 / tasks as f64
        )
    }
}

/// This process's resident memory now and at its peak, in MiB, from `/proc`.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn summary(sorted_ms: &[f64]) -> String {
    if sorted_ms.is_empty() {
        return "no samples".into();
    }
    let at = |q: f64| sorted_ms[((sorted_ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
        at(0.50),
        at(0.99),
        sorted_ms[sorted_ms.len() - 1]
    )
}

/// pgbench `-N` (no updates of the branch and teller rows), 16 clients, 10 s.
async fn pgbench() -> anyhow::Result<f64> {
    let database = TestDatabase::create().await;
    let run = |args: &[&str]| {
        std::process::Command::new("pgbench")
            .args(args)
            .arg(&database.url)
            .output()
            .map_err(|e| {
                anyhow::anyhow!("pgbench is needed for the ceiling (apt-get install postgresql-client): {e}")
            })
    };
    run(&["-i", "-s", "10", "-q"])?;
    let out = run(&["-N", "-c", "16", "-j", "2", "-T", "10"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    println!("  pgbench -N, 16 clients, 10 s: {tps:.0} transactions/s");
    Ok(tps)
}

/// The arrival rates W2 runs at: `BENCH_W2_RATES` (comma-separated tasks
/// per second), 500 and 2,000 by default.
fn w2_rates() -> anyhow::Result<Vec<u32>> {
    let Ok(rates) = std::env::var("BENCH_W2_RATES") else {
        return Ok(vec![500, 2_000]);
    };
    rates
        .split(',')
        .map(|r| {
            r.trim()
                .parse::<u32>()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| anyhow::anyhow!("BENCH_W2_RATES: {r:?} is not a rate of tasks per second"))
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seconds: u32 = std::env::var("BENCH_W2_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // `BENCH_ONLY=w1|w2|w3|w5|w6|ceiling` runs one workload (W1 then has no ratio).
    let only = std::env::var("BENCH_ONLY").ok();
    let runs = |name: &str| only.as_deref().is_none_or(|o| o == name);
    println!("orchestrator lifecycle benchmark on PostgreSQL ({DROPLETS} droplets × {CAPACITY} slots)");
    let mut w1_rate = None;
    if runs("w1") {
        println!("W1: burn-down");
        w1_rate = Some(w1(total).await?);
    }
    if runs("w2") {
        println!("W2: fixed arrival rate, idle droplets");
        for rate in w2_rates()? {
            w2(rate, seconds).await?;
        }
    }
    if runs("w3") {
        println!("W3: live feed fan-out over HTTP and WebSockets");
        let clients: usize = std::env::var("BENCH_FANOUT_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000);
        fanout::w3(clients, 500, seconds).await?;
    }
    if runs("w5") {
        println!("W5: heartbeats");
        heartbeats::w5(1_000, 60).await?;
    }
    if runs("w6") {
        println!("W6: retention");
        let old: i64 = std::env::var("BENCH_RETENTION_TASKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        retention::w6(old).await?;
    }
    if runs("ceiling") {
        println!("Ceiling of this machine and server:");
        let tps = pgbench().await?;
        if let Some(w1) = w1_rate {
            println!(
                "W1 / pgbench: {:.2} (each task is 4 state changes, grouped into shared transactions)",
                w1 / tps
            );
        }
    }
    Ok(())
}
