//! `/management`: the version, the scheduler's jobs, emergency stop,
//! shutdown, cache, configuration and background services. Every call
//! needs an `admin` token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /management/version`: the build and how it runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Version {
    /// `orchestrator`.
    pub name: String,
    pub version: String,
    pub udc_version: String,
    pub store: StoreKind,
    pub environment: Environment,
}

/// Where the orchestrator keeps its tasks and droplets (`DATABASE_URL`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In the process: nothing survives a restart.
    Memory,
    Postgres,
}

/// The `ENVIRONMENT` the orchestrator runs in.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

/// A scheduler job and how its runs went; `id` names it in the
/// `/management/scheduler/jobs/{job_id}` paths.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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

/// `GET /management/scheduler/jobs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Jobs {
    pub jobs: Vec<JobStatus>,
}

/// The answer to pausing or resuming a job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Job {
    pub job: JobStatus,
}

/// The answer to `POST /management/emergency-stop`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct EmergencyStop {
    pub stopped: bool,
    /// Every job, now paused.
    pub jobs: Vec<JobStatus>,
    /// How to undo it: resume each job, `task_router` first.
    pub resume: String,
}

/// The answer to `POST /management/shutdown`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShuttingDown {
    pub shutting_down: bool,
    /// True when every other request in flight was answered before this
    /// answer; false when the grace period ran out first.
    pub graceful: bool,
    /// How long the stop waited for the requests in flight.
    #[serde(default)]
    pub waited_ms: u64,
    /// Requests still in flight when `SHUTDOWN_GRACE_SECONDS` ran out; the
    /// server stops without them.
    #[serde(default)]
    pub abandoned_requests: usize,
}

/// The answer to `POST /management/cache/clear`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CacheCleared {
    /// What was cleared: `service_directory`, and `registry_signing_key`
    /// when a Registry is configured.
    pub cleared: Vec<String>,
    pub message: String,
}

/// The answer to `POST /management/reload-config`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Reloaded {
    /// Run-time settings that took a new value, such as `ROUTER_INTERVAL`.
    pub changed: Vec<String>,
    /// Settings that differ but take effect only after a restart.
    pub requires_restart: Vec<String>,
}

/// `GET /management/services`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BackgroundServices {
    /// Every background service the process started, in order.
    pub services: Vec<String>,
    /// How many are running now (a registration that succeeded has ended).
    pub running: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_servers_shutdown_answer_still_reads() {
        let answer: ShuttingDown =
            serde_json::from_str(r#"{"shutting_down": true, "graceful": true}"#).expect("reads");
        assert_eq!((answer.waited_ms, answer.abandoned_requests), (0, 0));
    }

    #[test]
    fn kinds_are_written_in_snake_case() {
        let text = serde_json::to_string(&(StoreKind::Postgres, Environment::Production)).expect("json");
        assert_eq!(text, r#"["postgres","production"]"#);
    }
}
