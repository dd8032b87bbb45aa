//! `task_router`: the router's safety-net sweep.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Job, JobContext, JobSpec};
use crate::{AppResult, Router};

pub const SPEC: JobSpec = JobSpec {
    id: "task_router",
    leader_only: false,
    interval_setting: "ROUTER_INTERVAL",
    default_interval_seconds: 10,
    reloadable: true,
};

/// The router's safety-net sweep; routing itself is safe on every replica.
/// Each sweep also sets the router's alarm for the next waiting task.
#[derive(Debug)]
pub struct RouterJob(pub Arc<Router>);

#[async_trait]
impl Job for RouterJob {
    fn spec(&self) -> &'static JobSpec {
        &SPEC
    }
    async fn run(&self) -> AppResult<()> {
        self.0.route_pending().await?;
        self.0.rearm().await;
        Ok(())
    }
    fn set_paused(&self, paused: bool) {
        self.0.set_paused(paused);
    }
    async fn quiesce(&self) {
        self.0.quiesce().await;
    }
}

/// The job, over the router.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    Arc::new(RouterJob(ctx.router.clone()))
}
