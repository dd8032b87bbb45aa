//! `/management`: the version, the scheduler's jobs, emergency stop,
//! shutdown, cache and configuration. Every call needs an `admin` token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Client, ClientError};

/// `GET /management/version`: the build and how it runs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Version {
    /// `orchestrator`.
    pub name: String,
    pub version: String,
    pub udc_version: String,
    pub store: StoreKind,
    pub environment: Environment,
}

/// Where the orchestrator keeps its tasks and droplets (`DATABASE_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In the process: nothing survives a restart.
    Memory,
    Postgres,
}

/// The `ENVIRONMENT` the orchestrator runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

/// A scheduler job: `health_monitor`, `task_router`, `registry_sync`,
/// `heartbeat_cleanup` or `websocket_ping`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct JobStatus {
    pub id: String,
    pub interval_seconds: u64,
    pub paused: bool,
    /// False on a replica that waits for the leader to go (leader-only jobs).
    pub leader: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// The error of the last run, if it failed.
    pub last_error: Option<String>,
    pub runs: u64,
    /// Runs that ended in an error.
    pub failures: u64,
    /// Set when the job never runs on that server, and says why.
    #[serde(default)]
    pub idle_reason: Option<String>,
}

/// The answer to `POST /management/emergency-stop`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EmergencyStop {
    pub stopped: bool,
    /// Every job, now paused.
    pub jobs: Vec<JobStatus>,
    /// How to undo it: resume each job, `task_router` first.
    pub resume: String,
}

/// The answer to `POST /management/shutdown`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ShuttingDown {
    pub shutting_down: bool,
    /// Every other request in flight was answered before this answer.
    pub graceful: bool,
    /// How long the stop waited for the requests in flight.
    #[serde(default)]
    pub waited_ms: u64,
    /// Requests still in flight when the grace period ran out.
    #[serde(default)]
    pub abandoned_requests: usize,
}

/// The answer to `POST /management/cache/clear`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CacheCleared {
    /// What was cleared: empty, or `registry_signing_key` when a Registry is configured.
    pub cleared: Vec<String>,
    pub message: String,
}

/// The answer to `POST /management/reload-config`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Reloaded {
    /// Run-time settings that took a new value, such as `ROUTER_INTERVAL`.
    pub changed: Vec<String>,
    /// Settings that differ but take effect only after a restart.
    pub requires_restart: Vec<String>,
}

#[derive(Deserialize)]
struct Jobs {
    jobs: Vec<JobStatus>,
}

#[derive(Deserialize)]
struct Job {
    job: JobStatus,
}

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

    async fn job_action(&self, job_id: &str, action: &str) -> Result<JobStatus, ClientError> {
        let path = format!(
            "/management/scheduler/jobs/{}/{action}",
            crate::feed::percent_encode(job_id)
        );
        let reply: Job = self.send(reqwest::Method::POST, &path, None::<&()>).await?;
        Ok(reply.job)
    }
}
