//! What the public endpoints (`/state`, `/health`, `/readyz`, `/dependencies`)
//! report about the work, the store and the droplets this one works with.

use chrono::{DateTime, Utc};
use orchestrator_domain::{DropletId, DropletStatus, TaskStatus};
use orchestrator_ports::StoreError;

use crate::{AppResult, Ports};

/// How a droplet this one can work with is doing, as its own heartbeats
/// tell (`GET /dependencies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// Registered and active: it beats.
    Connected { last_heartbeat: Option<DateTime<Utc>> },
    /// Registered but silent or in error.
    Disconnected {
        status: DropletStatus,
        last_heartbeat: Option<DateTime<Utc>>,
    },
    /// Not registered here (nor copied from the Registry's directory).
    NotRegistered,
    /// The store could not say.
    Unknown { error: String },
}

/// Counts of tasks and droplets right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSnapshot {
    pub tasks_pending: u64,
    /// Tasks held by droplets: `assigned` plus `in_progress`.
    pub tasks_active: u64,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub droplets_active: u64,
    pub droplets_total: u64,
}

/// What readiness depends on in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub store_up: bool,
    /// Migrations the database lacks; `None` when they could not be read.
    pub pending_migrations: Option<Vec<String>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.store_up && self.pending_migrations.as_ref().is_some_and(Vec::is_empty)
    }
}

/// How long the public counts of finished tasks are reused: counting them
/// reads every task kept, which no anonymous caller may make the store do
/// at will.
pub const FINISHED_COUNTS_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Completed and failed tasks, and when they were counted.
type FinishedCounts = Option<(chrono::DateTime<chrono::Utc>, u64, u64)>;

/// The use cases behind the public endpoints.
#[derive(Debug, Clone)]
pub struct PublicService {
    ports: Ports,
    finished: std::sync::Arc<tokio::sync::Mutex<FinishedCounts>>,
}

impl PublicService {
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            finished: std::sync::Arc::default(),
        }
    }

    /// The counts of the public `GET /state`: live tasks and droplets read
    /// now (a read bounded by the live work), finished tasks as counted at
    /// most [`FINISHED_COUNTS_TTL`] ago.
    pub async fn public_snapshot(&self) -> AppResult<StatusSnapshot> {
        let tasks = self.ports.tasks.count_live_tasks().await?;
        let droplets = self.ports.droplets.count_droplets_by_status().await?;
        let (completed, failed) = self.finished_counts().await?;
        Ok(StatusSnapshot {
            tasks_pending: tasks.pending,
            tasks_active: tasks.held,
            tasks_completed: completed,
            tasks_failed: failed,
            droplets_active: droplets.get(&DropletStatus::Active).copied().unwrap_or(0),
            droplets_total: droplets.values().sum(),
        })
    }

    /// Completed and failed tasks, counted again once the last count is
    /// older than [`FINISHED_COUNTS_TTL`]; callers meanwhile wait for the
    /// one count under way rather than start their own.
    async fn finished_counts(&self) -> AppResult<(u64, u64)> {
        let mut cached = self.finished.lock().await;
        let now = self.ports.clock.now();
        if let Some((at, completed, failed)) = *cached
            && now - at < FINISHED_COUNTS_TTL
        {
            return Ok((completed, failed));
        }
        let tasks = self.ports.tasks.count_tasks_by_status().await?;
        let task = |s: TaskStatus| tasks.get(&s).copied().unwrap_or(0);
        let counts = (task(TaskStatus::Completed), task(TaskStatus::Failed));
        *cached = Some((now, counts.0, counts.1));
        Ok(counts)
    }

    pub async fn snapshot(&self) -> AppResult<StatusSnapshot> {
        let tasks = self.ports.tasks.count_tasks_by_status().await?;
        let droplets = self.ports.droplets.count_droplets_by_status().await?;
        let task = |s: TaskStatus| tasks.get(&s).copied().unwrap_or(0);
        Ok(StatusSnapshot {
            tasks_pending: task(TaskStatus::Pending),
            tasks_active: task(TaskStatus::Assigned) + task(TaskStatus::InProgress),
            tasks_completed: task(TaskStatus::Completed),
            tasks_failed: task(TaskStatus::Failed),
            droplets_active: droplets.get(&DropletStatus::Active).copied().unwrap_or(0),
            droplets_total: droplets.values().sum(),
        })
    }

    /// Whether this process can take work (`GET /readyz`): the store
    /// answers and has every migration of this build.
    pub async fn readiness(&self) -> Readiness {
        let store_up = self.store_is_up().await;
        let pending_migrations = if store_up {
            self.ports.tasks.pending_migrations().await.ok()
        } else {
            None
        };
        Readiness {
            store_up,
            pending_migrations,
        }
    }

    /// How the droplet `id` is doing, from the store's record of it.
    pub async fn peer(&self, id: DropletId) -> PeerState {
        match self.ports.droplets.get_droplet(id).await {
            Ok(droplet) if droplet.status == DropletStatus::Active => PeerState::Connected {
                last_heartbeat: droplet.last_heartbeat,
            },
            Ok(droplet) => PeerState::Disconnected {
                status: droplet.status,
                last_heartbeat: droplet.last_heartbeat,
            },
            Err(StoreError::NotFound { .. }) => PeerState::NotRegistered,
            Err(err) => PeerState::Unknown {
                error: err.to_string(),
            },
        }
    }

    /// True while the store answers.
    pub async fn store_is_up(&self) -> bool {
        self.ports.droplets.count_droplets_by_status().await.is_ok()
    }
}
