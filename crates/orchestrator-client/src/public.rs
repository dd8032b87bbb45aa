//! The public endpoints besides `/health`: the UDC ones (`/capabilities`,
//! `/state`, `/dependencies`) and the mesh's service conventions
//! (`/readyz`, `/v1/metadata`). They need no token and answer without an
//! envelope.

pub use orchestrator_api::public::{Dependencies, Dependency, DependencyStatus};
use serde::{Deserialize, Serialize};

use crate::{Client, ClientError};

/// `GET /capabilities`: what this build of the orchestrator can do.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ServerCapabilities {
    /// The orchestrator's version, such as `0.1.0`.
    pub version: String,
    /// Such as `task_routing`, `real_time_updates`, `automatic_retry`.
    pub features: Vec<String>,
    /// The droplets it relies on, such as `registry`.
    pub dependencies: Vec<String>,
    pub udc_version: String,
}

/// `GET /state`: the process and the work it holds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ServerState {
    /// `None` where the platform does not tell.
    pub cpu_percent: Option<f64>,
    /// Resident memory; `None` where the platform does not tell.
    pub memory_mb: Option<f64>,
    pub uptime_seconds: u64,
    pub custom_metrics: StateCounts,
}

/// The task and droplet counts of [`ServerState`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StateCounts {
    /// Tasks `assigned` or `in_progress`.
    pub tasks_active: u64,
    pub tasks_pending: u64,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub droplets_active: u64,
    pub droplets_total: u64,
    /// `None` where the platform does not tell.
    pub num_threads: Option<u64>,
}

/// `GET /readyz`: whether the orchestrator can take work now.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Readiness {
    /// `ready` (HTTP 200) or `not_ready` (HTTP 503).
    pub status: String,
    pub checks: ReadinessChecks,
    /// Why it is not ready; empty when it is.
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// What readiness depends on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReadinessChecks {
    /// `ok` or `unavailable`.
    pub store: String,
    /// `current`, `pending` or `unknown`.
    pub migrations: String,
    pub shutting_down: bool,
}

/// `GET /v1/metadata`: what the service is and what it serves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ServiceMetadata {
    pub name: String,
    pub service: String,
    pub version: String,
    pub droplet_id: i64,
    pub steward: String,
    pub base_url: String,
    pub udc_version: String,
    pub capabilities: Vec<String>,
    pub health_endpoint: String,
    pub readiness_endpoint: String,
    pub openapi_endpoint: String,
    pub endpoints: Vec<ServiceEndpoint>,
}

/// One endpoint of [`ServiceMetadata`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ServiceEndpoint {
    pub method: String,
    pub path: String,
    pub summary: Option<String>,
    /// True when it needs a bearer token.
    pub authenticated: bool,
}

impl Client {
    /// Whether the orchestrator can take work (no token needed). A 503
    /// carries the same body, so a `not_ready` answer is `Ok` too.
    pub async fn readiness(&self) -> Result<Readiness, ClientError> {
        self.public_either("/readyz").await
    }

    /// Name, version, capabilities and endpoints (no token needed).
    pub async fn metadata(&self) -> Result<ServiceMetadata, ClientError> {
        self.public("/v1/metadata").await
    }

    /// The version and features of the orchestrator (no token needed).
    pub async fn capabilities(&self) -> Result<ServerCapabilities, ClientError> {
        self.public("/capabilities").await
    }

    /// The process's figures and the task and droplet counts (no token needed).
    pub async fn state(&self) -> Result<ServerState, ClientError> {
        self.public("/state").await
    }

    /// The droplets the orchestrator relies on, and their state (no token needed).
    pub async fn dependencies(&self) -> Result<Dependencies, ClientError> {
        self.public("/dependencies").await
    }
}
