//! `idempotency_cleanup`: deletes expired `Idempotency-Key`s (leader
//! only). Not one of the spec's five jobs.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Job, JobContext, JobSpec};
use crate::{AppResult, TaskService};

pub const SPEC: JobSpec = JobSpec {
    id: "idempotency_cleanup",
    leader_only: true,
    interval_setting: "IDEMPOTENCY_CLEANUP_INTERVAL",
    default_interval_seconds: 3600,
    reloadable: true,
};

/// Deletes the `Idempotency-Key`s older than their window
/// (`IDEMPOTENCY_WINDOW_SECONDS`, a day by default; leader only).
#[derive(Debug)]
pub struct IdempotencyCleanupJob(pub TaskService);

#[async_trait]
impl Job for IdempotencyCleanupJob {
    fn spec(&self) -> &'static JobSpec {
        &SPEC
    }
    async fn run(&self) -> AppResult<()> {
        let deleted = self.0.forget_expired_keys().await?;
        tracing::debug!(deleted, "expired idempotency keys deleted");
        Ok(())
    }
}

/// The job, deleting the keys older than `IDEMPOTENCY_WINDOW_SECONDS`.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    Arc::new(IdempotencyCleanupJob(
        TaskService::new(ctx.ports.clone()).with_idempotency_window(ctx.idempotency_window),
    ))
}
