//! `task_retention`: deletes tasks finished for good long ago, with their
//! history (leader only). Not one of the spec's five jobs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_ports::{Clock, TaskStore};

use super::{Batches, DELETE_BATCH, IdleJob, Job, JobContext, JobSpec, cut_off};
use crate::{AppResult, Ports};

pub const SPEC: JobSpec = JobSpec {
    id: "task_retention",
    leader_only: true,
    interval_setting: "TASK_RETENTION_INTERVAL",
    default_interval_seconds: 300,
    reloadable: true,
};

/// Deletes the tasks finished for good longer ago than the retention
/// (`SPEC.id_DAYS`), with their history (leader only).
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
    fn spec(&self) -> &'static JobSpec {
        &SPEC
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

/// The job, idle when `TASK_RETENTION_DAYS` is 0.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    match ctx.task_retention {
        Some(retention) => Arc::new(TaskRetentionJob::new(ctx.ports, retention)),
        None => Arc::new(IdleJob {
            spec: &SPEC,
            reason: "TASK_RETENTION_DAYS is 0, so finished tasks are kept for ever".into(),
        }),
    }
}
