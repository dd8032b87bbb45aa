//! The periodic jobs the scheduler runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrator_ports::{Clock, DropletStore, StoreResult, TaskStore};

use crate::scheduler::{
    HEALTH_MONITOR, HEARTBEAT_CLEANUP, IDEMPOTENCY_CLEANUP, Job, REGISTRY_SYNC, TASK_RETENTION, TASK_ROUTER,
    WEBSOCKET_PING,
};
use crate::{AppResult, FeedHub, Ports, Recovery, RegistrySync, Router, TaskService};

/// Marks silent droplets inactive and recovers stuck tasks (leader only).
#[derive(Debug)]
pub struct HealthMonitorJob(pub Arc<Recovery>);

#[async_trait]
impl Job for HealthMonitorJob {
    fn id(&self) -> &'static str {
        HEALTH_MONITOR
    }
    fn leader_only(&self) -> bool {
        true
    }
    async fn run(&self) -> AppResult<()> {
        self.0.run_pass().await.map(|_| ())
    }
}

/// The router's safety-net sweep; routing itself is safe on every replica.
#[derive(Debug)]
pub struct RouterJob(pub Arc<Router>);

#[async_trait]
impl Job for RouterJob {
    fn id(&self) -> &'static str {
        TASK_ROUTER
    }
    fn leader_only(&self) -> bool {
        false
    }
    async fn run(&self) -> AppResult<()> {
        self.0.route_pending().await.map(|_| ())
    }
    fn set_paused(&self, paused: bool) {
        self.0.set_paused(paused);
    }
    async fn quiesce(&self) {
        self.0.quiesce().await;
    }
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

/// Deletes heartbeat rows older than the retention
/// (`HEARTBEAT_RETENTION_DAYS`), all of them however many batches that
/// takes (leader only).
pub struct HeartbeatCleanupJob {
    droplets: Arc<dyn DropletStore>,
    retention: Duration,
    batch: u32,
    batches: Batches,
}

impl std::fmt::Debug for HeartbeatCleanupJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatCleanupJob")
            .field("retention", &self.retention)
            .field("batch", &self.batch)
            .finish()
    }
}

impl HeartbeatCleanupJob {
    /// Keeps heartbeat rows for `retention` after they were received.
    pub fn new(droplets: Arc<dyn DropletStore>, retention: Duration) -> Self {
        HeartbeatCleanupJob {
            droplets,
            retention,
            batch: DELETE_BATCH,
            batches: Batches::default(),
        }
    }

    /// Deletes `batch` rows per statement instead of [`DELETE_BATCH`].
    #[must_use]
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }
}

#[async_trait]
impl Job for HeartbeatCleanupJob {
    fn id(&self) -> &'static str {
        HEARTBEAT_CLEANUP
    }
    fn leader_only(&self) -> bool {
        true
    }
    async fn run(&self) -> AppResult<()> {
        let deleted = self
            .batches
            .run(self.batch, || {
                self.droplets.delete_old_heartbeats(self.retention, self.batch)
            })
            .await?;
        tracing::info!(deleted, "heartbeat rows past their retention deleted");
        Ok(())
    }
    fn set_paused(&self, paused: bool) {
        self.batches.set_paused(paused);
    }
    async fn quiesce(&self) {
        self.batches.quiesce().await;
    }
}

/// Deletes the tasks finished for good longer ago than the retention
/// (`TASK_RETENTION_DAYS`), with their history (leader only).
pub struct TaskRetentionJob {
    tasks: Arc<dyn TaskStore>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    batch: u32,
    batches: Batches,
}

impl std::fmt::Debug for TaskRetentionJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRetentionJob")
            .field("retention", &self.retention)
            .field("batch", &self.batch)
            .finish()
    }
}

impl TaskRetentionJob {
    /// Keeps finished tasks for `retention` after they finished.
    pub fn new(ports: &Ports, retention: Duration) -> Self {
        TaskRetentionJob {
            tasks: ports.tasks.clone(),
            clock: ports.clock.clone(),
            retention,
            batch: DELETE_BATCH,
            batches: Batches::default(),
        }
    }

    /// Deletes `batch` tasks per statement instead of [`DELETE_BATCH`].
    #[must_use]
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }
}

#[async_trait]
impl Job for TaskRetentionJob {
    fn id(&self) -> &'static str {
        TASK_RETENTION
    }
    fn leader_only(&self) -> bool {
        true
    }
    async fn run(&self) -> AppResult<()> {
        let Some(before) = cut_off(self.clock.now(), self.retention) else {
            return Ok(());
        };
        let deleted = self
            .batches
            .run(self.batch, || {
                self.tasks.delete_finished_tasks(before, self.batch)
            })
            .await?;
        tracing::info!(deleted, %before, "finished tasks past their retention deleted");
        Ok(())
    }
    fn set_paused(&self, paused: bool) {
        self.batches.set_paused(paused);
    }
    async fn quiesce(&self) {
        self.batches.quiesce().await;
    }
}

/// Deletes the `Idempotency-Key`s older than their window
/// (`IDEMPOTENCY_WINDOW_SECONDS`, a day by default; leader only).
#[derive(Debug)]
pub struct IdempotencyCleanupJob(pub TaskService);

#[async_trait]
impl Job for IdempotencyCleanupJob {
    fn id(&self) -> &'static str {
        IDEMPOTENCY_CLEANUP
    }
    fn leader_only(&self) -> bool {
        true
    }
    async fn run(&self) -> AppResult<()> {
        let deleted = self.0.forget_expired_keys().await?;
        tracing::debug!(deleted, "expired idempotency keys deleted");
        Ok(())
    }
}

/// Pings every feed client of this replica; one that has not answered the
/// previous ping is disconnected. Each replica pings its own clients.
#[derive(Debug)]
pub struct WebSocketPingJob(pub Arc<FeedHub>);

#[async_trait]
impl Job for WebSocketPingJob {
    fn id(&self) -> &'static str {
        WEBSOCKET_PING
    }
    fn leader_only(&self) -> bool {
        false
    }
    async fn run(&self) -> AppResult<()> {
        self.0.ping_all();
        Ok(())
    }
}

/// Copies the Registry's droplet directory into the store (leader only).
#[derive(Debug)]
pub struct RegistrySyncJob(pub Arc<RegistrySync>);

#[async_trait]
impl Job for RegistrySyncJob {
    fn id(&self) -> &'static str {
        REGISTRY_SYNC
    }
    fn leader_only(&self) -> bool {
        true
    }
    async fn run(&self) -> AppResult<()> {
        self.0.sync_directory().await.map(|_| ())
    }
}

/// A job that has nothing to do in this process (`registry_sync` without
/// `REGISTRY_URL`, a deleting job told to keep for ever): listed, idle
/// with its reason, never run.
#[derive(Debug)]
pub struct IdleJob {
    pub id: &'static str,
    pub reason: String,
}

#[async_trait]
impl Job for IdleJob {
    fn id(&self) -> &'static str {
        self.id
    }
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
