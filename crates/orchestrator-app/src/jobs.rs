//! The periodic jobs the scheduler runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_ports::DropletStore;

use crate::scheduler::{
    HEALTH_MONITOR, HEARTBEAT_CLEANUP, IDEMPOTENCY_CLEANUP, Job, REGISTRY_SYNC, TASK_ROUTER, WEBSOCKET_PING,
};
use crate::{AppResult, FeedHub, Recovery, RegistrySync, Router, TaskService};

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

/// Heartbeat rows are kept this long.
pub const HEARTBEAT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rows deleted per statement, and statements per run: bounded work per run.
const CLEANUP_BATCH: u32 = 1_000;
const CLEANUP_BATCHES_PER_RUN: u32 = 100;

/// Deletes heartbeat rows older than seven days (leader only).
pub struct HeartbeatCleanupJob(pub Arc<dyn DropletStore>);

impl std::fmt::Debug for HeartbeatCleanupJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeartbeatCleanupJob")
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
        for _ in 0..CLEANUP_BATCHES_PER_RUN {
            let deleted = self
                .0
                .delete_old_heartbeats(HEARTBEAT_RETENTION, CLEANUP_BATCH)
                .await?;
            if deleted < u64::from(CLEANUP_BATCH) {
                break;
            }
        }
        Ok(())
    }
}

/// Deletes the `Idempotency-Key`s older than a day (leader only).
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

/// A job of the spec whose service this process lacks (`registry_sync`
/// without `REGISTRY_URL`): listed, idle with its reason, never run.
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
