//! `health_monitor`: marks silent droplets inactive and recovers stuck
//! tasks (leader only).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Job, JobContext, JobSpec};
use crate::{AppResult, Recovery};

pub const SPEC: JobSpec = JobSpec {
    id: "health_monitor",
    leader_only: true,
    interval_setting: "HEARTBEAT_CHECK_INTERVAL",
    default_interval_seconds: 60,
    reloadable: true,
};

/// Marks silent droplets inactive and recovers stuck tasks (leader only).
#[derive(Debug)]
pub struct HealthMonitorJob(pub Arc<Recovery>);

#[async_trait]
impl Job for HealthMonitorJob {
    fn spec(&self) -> &'static JobSpec {
        &SPEC
    }
    async fn run(&self) -> AppResult<()> {
        self.0.run_pass().await.map(|_| ())
    }
}

/// The job, over the recovery service.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    Arc::new(HealthMonitorJob(ctx.recovery.clone()))
}
