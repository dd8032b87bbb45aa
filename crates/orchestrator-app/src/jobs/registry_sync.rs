//! `registry_sync`: copies the Registry's droplet directory into the store
//! (leader only).

use std::sync::Arc;

use async_trait::async_trait;

use super::{IdleJob, Job, JobContext, JobSpec};
use crate::{AppResult, RegistrySync};

pub const SPEC: JobSpec = JobSpec {
    id: "registry_sync",
    leader_only: true,
    interval_setting: "REGISTRY_SYNC_INTERVAL",
    default_interval_seconds: 300,
    reloadable: false,
};

/// Copies the Registry's droplet directory into the store (leader only).
#[derive(Debug)]
pub struct RegistrySyncJob(pub Arc<RegistrySync>);

#[async_trait]
impl Job for RegistrySyncJob {
    fn spec(&self) -> &'static JobSpec {
        &SPEC
    }
    async fn run(&self) -> AppResult<()> {
        self.0.sync_directory().await.map(|_| ())
    }
}

/// The job, idle without `REGISTRY_URL`.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    match ctx.registry {
        Some(registry) => Arc::new(RegistrySyncJob(registry.clone())),
        None => Arc::new(IdleJob {
            spec: &SPEC,
            reason: "REGISTRY_URL is not set, so there is no Registry directory to copy".into(),
        }),
    }
}
