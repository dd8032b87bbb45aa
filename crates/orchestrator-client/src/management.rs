//! `/management`: the version, the scheduler's jobs, emergency stop,
//! shutdown, cache and configuration. Every call needs an `admin` token.

pub use orchestrator_api::management::{
    BackgroundServices, CacheCleared, EmergencyStop, Environment, JobStatus, Reloaded, ShuttingDown,
    StoreKind, Version,
};
use orchestrator_api::management::{Job, Jobs};

use crate::{Client, ClientError};

impl Client {
    /// The orchestrator's name, version, store and environment.
    pub async fn version(&self) -> Result<Version, ClientError> {
        self.send(reqwest::Method::GET, "/management/version", None::<&()>)
            .await
    }

    /// The scheduler's jobs: interval, paused, last and next run, errors.
    pub async fn jobs(&self) -> Result<Vec<JobStatus>, ClientError> {
        let reply: Jobs = self
            .send(reqwest::Method::GET, "/management/scheduler/jobs", None::<&()>)
            .await?;
        Ok(reply.jobs)
    }

    /// Pauses a job (an unknown id is `not_found`); a paused `task_router`
    /// assigns nothing until resumed.
    pub async fn pause_job(&self, job_id: &str) -> Result<JobStatus, ClientError> {
        self.job_action(job_id, "pause").await
    }

    /// Resumes a paused job.
    pub async fn resume_job(&self, job_id: &str) -> Result<JobStatus, ClientError> {
        self.job_action(job_id, "resume").await
    }

    /// Stops routing and pauses every job at once; reads are still served.
    pub async fn emergency_stop(&self) -> Result<EmergencyStop, ClientError> {
        self.send(reqwest::Method::POST, "/management/emergency-stop", None::<&()>)
            .await
    }

    /// Stops the server once in-flight requests have finished.
    pub async fn shutdown(&self) -> Result<ShuttingDown, ClientError> {
        self.send(reqwest::Method::POST, "/management/shutdown", None::<&()>)
            .await
    }

    /// Drops the cached Registry signing key, if there is one.
    pub async fn clear_cache(&self) -> Result<CacheCleared, ClientError> {
        self.send(reqwest::Method::POST, "/management/cache/clear", None::<&()>)
            .await
    }

    /// Has the orchestrator read its environment again; an invalid
    /// environment changes nothing and is `validation_failed` (422).
    pub async fn reload_config(&self) -> Result<Reloaded, ClientError> {
        self.send(reqwest::Method::POST, "/management/reload-config", None::<&()>)
            .await
    }

    /// Every background service the server started, and how many still run.
    pub async fn services(&self) -> Result<BackgroundServices, ClientError> {
        self.send(reqwest::Method::GET, "/management/services", None::<&()>)
            .await
    }

    async fn job_action(&self, job_id: &str, action: &str) -> Result<JobStatus, ClientError> {
        let path = format!(
            "/management/scheduler/jobs/{}/{action}",
            crate::feed::percent_encode(job_id)
        );
        let reply: Job = self.send(reqwest::Method::POST, &path, None::<&()>).await?;
        Ok(reply.job)
    }
}
