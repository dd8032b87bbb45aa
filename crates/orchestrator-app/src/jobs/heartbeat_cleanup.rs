//! `heartbeat_cleanup`: deletes heartbeat samples past their retention
//! (leader only).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_ports::DropletStore;

use super::{Batches, DELETE_BATCH, IdleJob, Job, JobContext, JobSpec};
use crate::AppResult;

pub const SPEC: JobSpec = JobSpec {
    id: "heartbeat_cleanup",
    leader_only: true,
    interval_setting: "HEARTBEAT_CLEANUP_INTERVAL",
    default_interval_seconds: 3600,
    reloadable: true,
};

/// Deletes heartbeat samples older than the retention
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
    /// Keeps heartbeat samples for `retention` after they were received.
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
    fn spec(&self) -> &'static JobSpec {
        &SPEC
    }
    async fn run(&self) -> AppResult<()> {
        let deleted = self
            .batches
            .run(self.batch, || {
                self.droplets.delete_old_heartbeats(self.retention, self.batch)
            })
            .await?;
        tracing::info!(deleted, "heartbeat samples past their retention deleted");
        Ok(())
    }
    fn set_paused(&self, paused: bool) {
        self.batches.set_paused(paused);
    }
    async fn quiesce(&self) {
        self.batches.quiesce().await;
    }
}

/// The job, idle when `HEARTBEAT_RETENTION_DAYS` is 0.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    match ctx.heartbeat_retention {
        Some(retention) => Arc::new(HeartbeatCleanupJob::new(ctx.ports.droplets.clone(), retention)),
        None => Arc::new(IdleJob {
            spec: &SPEC,
            reason: "HEARTBEAT_RETENTION_DAYS is 0, so heartbeat samples are kept for ever".into(),
        }),
    }
}
