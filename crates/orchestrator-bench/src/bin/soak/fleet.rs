//! The droplets: each a worker of the SDK's runtime taking its work by pull,
//! plus a heartbeat every second (the runtime beats on the interval the
//! server gives, `HEARTBEAT_CHECK_INTERVAL`). A droplet can be killed as a
//! process is: its worker and its heartbeats stop at once, its tasks are
//! abandoned without a report; a few seconds later it starts afresh with a
//! plain registration. `SOAK_RESTARTS` droplets a minute are killed, one
//! at a time at even intervals, so that every window of the report sees
//! its share of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orchestrator_bench::server::Server;
use orchestrator_client::{Client, Worker};
use orchestrator_domain::{HeartbeatReport, Permission, RegistrationDraft};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::{CAPABILITY, Config};

/// Ids of the droplets start after this, clear of the mesh's well-known ones.
const FIRST_ID: i64 = 1000;

/// How long a killed droplet stays down, in seconds (drawn uniformly).
const DOWN_SECONDS: std::ops::RangeInclusive<u64> = 2..=8;

/// What the droplets did, over the whole run.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub restarts: AtomicU64,
    pub beats: AtomicU64,
    pub beat_errors: AtomicU64,
    /// Runs of the worker that ended in an error (a refused registration).
    pub worker_errors: AtomicU64,
}

/// The running droplets and their killer; all stop when it is dropped.
#[derive(Debug)]
pub struct Fleet {
    _tasks: JoinSet<()>,
    pub stats: Arc<FleetStats>,
}

/// One droplet, as each of its lives starts it.
#[derive(Debug)]
struct Droplet {
    id: i64,
    client: Client,
    config: Config,
    stats: Arc<FleetStats>,
}

impl Fleet {
    pub fn start(server: &Server, config: &Config) -> anyhow::Result<Fleet> {
        let stats = Arc::new(FleetStats::default());
        let mut tasks = JoinSet::new();
        let mut kills = Vec::new();
        for n in 1..=config.droplets {
            let id = FIRST_ID + i64::try_from(n)?;
            let token = server.token(&format!("soak-droplet-{id}"), Permission::Write, Some(id));
            let droplet = Arc::new(Droplet {
                id,
                client: Client::new(&server.url)?.with_token(token),
                config: config.clone(),
                stats: stats.clone(),
            });
            let (kill, killed) = mpsc::channel(1);
            tasks.spawn(supervise(droplet, killed));
            kills.push(kill);
        }
        if config.restarts > 0 {
            let every = Duration::from_secs(60).div_f64(config.restarts as f64);
            tasks.spawn(kill_at_random(kills, every));
        }
        Ok(Fleet { _tasks: tasks, stats })
    }
}

/// Kills a droplet drawn at random `every` so long; each comes back on its own.
async fn kill_at_random(kills: Vec<mpsc::Sender<Duration>>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticks.tick().await;
        let index = rand::random_range(0..kills.len());
        let down = Duration::from_secs(rand::random_range(DOWN_SECONDS));
        // A droplet that is down already ignores it (see `supervise`).
        let _ = kills[index].try_send(down);
    }
}

/// Lives of one droplet, one after the other, until the fleet is dropped.
async fn supervise(droplet: Arc<Droplet>, mut kills: mpsc::Receiver<Duration>) {
    loop {
        let mut life = JoinSet::new();
        life.spawn(work(droplet.clone()));
        life.spawn(beat(droplet.clone()));
        let Some(down) = kills.recv().await else {
            return;
        };
        // Killed: the worker's handlers and reports and the beats stop here.
        life.abort_all();
        drop(life);
        droplet.stats.restarts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(down).await;
        while kills.try_recv().is_ok() {}
    }
}

/// The worker: registers, then pulls and runs tasks; registers again
/// after a second should its registration be refused.
async fn work(droplet: Arc<Droplet>) {
    let (shortest, longest) = droplet.config.task_ms;
    loop {
        let me = RegistrationDraft {
            droplet_id: droplet.id,
            name: format!("soak {}", droplet.id),
            endpoint: format!("http://127.0.0.1:9/{}", droplet.id),
            ..RegistrationDraft::default()
        };
        let worker = Worker::builder(droplet.client.clone(), me)
            .capability(CAPABILITY, move |_task| async move {
                let ms = rand::random_range(shortest..=longest);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Value::Null)
            })
            .concurrency(droplet.config.slots)
            .poll_interval(droplet.config.poll);
        if let Err(err) = worker.run(std::future::pending::<()>()).await {
            droplet.stats.worker_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: the worker of droplet {} stopped: {err}", droplet.id);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A heartbeat every second, from a second on (after the registration).
async fn beat(droplet: Arc<Droplet>) {
    let every = Duration::from_secs(1);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stats = &droplet.stats;
    loop {
        ticks.tick().await;
        match droplet
            .client
            .heartbeat(droplet.id, &HeartbeatReport::default())
            .await
        {
            Ok(_) => stats.beats.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.beat_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}
