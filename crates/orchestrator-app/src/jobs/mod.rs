//! The periodic jobs the scheduler runs, one file each. A job's file
//! holds its [`JobSpec`] (its id, whether only the leader runs it, the
//! setting that times it and its default, whether `reload-config` re-times
//! it), the job itself, and how it is built; [`ALL`] lists them once, and
//! start-up, the reload, the settings and the tests all read that list.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrator_ports::StoreResult;

pub use crate::scheduler::Job;
use crate::{AppResult, FeedHub, Ports, Recovery, RegistrySync, Router};

pub mod health_monitor;
pub mod heartbeat_cleanup;
pub mod idempotency_cleanup;
pub mod registry_sync;
pub mod task_retention;
pub mod task_router;
pub mod websocket_ping;

pub use health_monitor::HealthMonitorJob;
pub use heartbeat_cleanup::HeartbeatCleanupJob;
pub use idempotency_cleanup::IdempotencyCleanupJob;
pub use registry_sync::RegistrySyncJob;
pub use task_retention::TaskRetentionJob;
pub use task_router::RouterJob;
pub use websocket_ping::WebSocketPingJob;

/// What the scheduler, the settings and the reload need to know of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    /// Its id in `/management/scheduler/jobs` and the API.
    pub id: &'static str,
    /// True when only the leader replica may run it.
    pub leader_only: bool,
    /// The setting (environment variable) of its interval, in seconds.
    pub interval_setting: &'static str,
    pub default_interval_seconds: u64,
    /// Whether `reload-config` re-times it; otherwise a change of its
    /// setting takes a restart.
    pub reloadable: bool,
}

impl JobSpec {
    pub fn default_interval(&self) -> Duration {
        Duration::from_secs(self.default_interval_seconds)
    }
}

/// What building the jobs takes: the services they drive and the settings
/// that decide whether they have anything to do here.
#[derive(Clone, Copy)]
pub struct JobContext<'a> {
    pub ports: &'a Ports,
    pub recovery: &'a Arc<Recovery>,
    pub router: &'a Arc<Router>,
    pub feeds: &'a Arc<FeedHub>,
    /// `None` without `REGISTRY_URL`.
    pub registry: Option<&'a Arc<RegistrySync>>,
    /// `TASK_RETENTION_DAYS`; `None` keeps finished tasks for ever.
    pub task_retention: Option<Duration>,
    /// `HEARTBEAT_RETENTION_DAYS`; `None` keeps heartbeat samples for ever.
    pub heartbeat_retention: Option<Duration>,
    /// `IDEMPOTENCY_WINDOW_SECONDS`.
    pub idempotency_window: Duration,
}

impl std::fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("registry", &self.registry.is_some())
            .field("task_retention", &self.task_retention)
            .field("heartbeat_retention", &self.heartbeat_retention)
            .field("idempotency_window", &self.idempotency_window)
            .finish_non_exhaustive()
    }
}

/// A job as [`ALL`] lists it: its spec and how to build it.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub spec: &'static JobSpec,
    pub build: fn(&JobContext<'_>) -> Arc<dyn Job>,
}

/// Every job, in the order the scheduler lists them.
pub const ALL: [Declared; 7] = [
    Declared {
        spec: &health_monitor::SPEC,
        build: health_monitor::build,
    },
    Declared {
        spec: &task_router::SPEC,
        build: task_router::build,
    },
    Declared {
        spec: &heartbeat_cleanup::SPEC,
        build: heartbeat_cleanup::build,
    },
    Declared {
        spec: &websocket_ping::SPEC,
        build: websocket_ping::build,
    },
    Declared {
        spec: &registry_sync::SPEC,
        build: registry_sync::build,
    },
    Declared {
        spec: &idempotency_cleanup::SPEC,
        build: idempotency_cleanup::build,
    },
    Declared {
        spec: &task_retention::SPEC,
        build: task_retention::build,
    },
];

/// The spec of the job `id`, if there is one.
pub fn spec(id: &str) -> Option<&'static JobSpec> {
    ALL.iter().map(|d| d.spec).find(|s| s.id == id)
}

/// Rows the deleting jobs remove per statement: each statement's locks and
/// work stay small, and a run goes on statement after statement.
pub const DELETE_BATCH: u32 = 1_000;

/// A deletion done a batch at a time until a batch comes back short, so
/// that a run removes everything due however much there is, yet no single
/// statement is large. Pausing the job stops it after the batch in flight,
/// and the pause returns once that batch is done.
#[derive(Debug, Default)]
struct Batches {
    paused: AtomicBool,
    running: tokio::sync::Mutex<()>,
}

impl Batches {
    /// Calls `delete` (which removes at most `batch` rows) until it removes
    /// fewer or the job is paused; returns how many rows went in all.
    async fn run<F, Fut>(&self, batch: u32, mut delete: F) -> AppResult<u64>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<u64>>,
    {
        let _running = self.running.lock().await;
        let mut total = 0;
        while !self.paused.load(Ordering::Acquire) {
            let deleted = delete().await?;
            total += deleted;
            if deleted < u64::from(batch) {
                break;
            }
        }
        Ok(total)
    }

    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    async fn quiesce(&self) {
        drop(self.running.lock().await);
    }
}

/// The instant `age` before `now`; `None` when it is before any time the
/// store can hold, so that nothing is that old.
fn cut_off(now: DateTime<Utc>, age: Duration) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(chrono::Duration::from_std(age).ok()?)
}

/// A job that has nothing to do in this process (`registry_sync` without
/// `REGISTRY_URL`, a deleting job told to keep for ever): listed, idle
/// with its reason, never run.
#[derive(Debug)]
pub struct IdleJob {
    pub spec: &'static JobSpec,
    pub reason: String,
}

#[async_trait]
impl Job for IdleJob {
    fn spec(&self) -> &'static JobSpec {
        self.spec
    }
    /// Never run, so it waits for no leader.
    fn leader_only(&self) -> bool {
        false
    }
    async fn run(&self) -> AppResult<()> {
        Ok(())
    }
    fn idle_reason(&self) -> Option<String> {
        Some(self.reason.clone())
    }
}
