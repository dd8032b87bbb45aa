//! The public endpoints (no token, no envelope): the UDC's `/health`,
//! `/capabilities`, `/state` and `/dependencies`, and the mesh's service
//! conventions `/readyz` and `/v1/metadata`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /health`. The orchestrator always fills every field; a client
/// reading another service of the mesh may find `steward`, `endpoint` or
/// `updated_at` missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Health {
    pub id: i64,
    pub name: String,
    /// Who answers for it.
    #[serde(default)]
    pub steward: Option<String>,
    /// `active` while the store answers, `error` (HTTP 503) while it does not.
    pub status: String,
    /// Where the mesh reaches it.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    pub message: String,
}

/// `GET /capabilities`: what this build of the orchestrator can do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Capabilities {
    /// The orchestrator's version, such as `0.1.0`.
    pub version: String,
    /// Such as `task_routing`, `real_time_updates`, `automatic_retry`.
    pub features: Vec<String>,
    /// The droplets it relies on, such as `registry`.
    pub dependencies: Vec<String>,
    pub udc_version: String,
}

/// `GET /state`: the process and the work it holds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct State {
    /// `None` where the platform does not tell.
    pub cpu_percent: Option<f64>,
    /// Resident memory; `None` where the platform does not tell.
    pub memory_mb: Option<f64>,
    pub uptime_seconds: u64,
    pub custom_metrics: CustomMetrics,
}

/// The task and droplet counts of [`State`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CustomMetrics {
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

/// `GET /dependencies`: the droplets the orchestrator relies on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Dependencies {
    pub required: Vec<Dependency>,
    pub optional: Vec<Dependency>,
    pub missing: Vec<Dependency>,
}

/// One dependency and how it was last seen.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Dependency {
    /// Its droplet id, such as 3 for the Registry.
    pub id: i64,
    pub name: String,
    pub status: DependencyStatus,
    /// The Registry: the last call to it. A droplet: its last heartbeat.
    pub last_check: Option<DateTime<Utc>>,
    /// Why the last check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How a dependency stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyStatus {
    /// The orchestrator runs without it (no `REGISTRY_URL`, for the Registry).
    NotConfigured,
    /// Not checked yet, or the store could not say (see `last_error`).
    Unknown,
    /// The last call to it succeeded; for a droplet, it is active.
    Connected,
    /// The last call to it failed, or the droplet is silent or in error
    /// (see `last_error`).
    Disconnected,
    /// A droplet that is not registered.
    NotRegistered,
}

/// `GET /readyz`: whether the orchestrator can take work now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Readiness {
    /// `ready` (HTTP 200) or `not_ready` (HTTP 503).
    pub status: String,
    pub checks: ReadinessChecks,
    /// Why it is not ready; empty when it is.
    // The orchestrator always sends it; another service of the mesh may not.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reasons: Vec<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// What readiness depends on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReadinessChecks {
    /// `ok`, or `unavailable` when the store does not answer.
    pub store: String,
    /// `current`, `pending` (the database lacks migrations of this build),
    /// or `unknown` (they could not be read).
    pub migrations: String,
    /// True once a graceful stop has begun.
    pub shutting_down: bool,
}

/// `GET /v1/metadata`: what the service is and what it serves, for the
/// gateway's discovery.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Metadata {
    /// `DROPLET_NAME`.
    pub name: String,
    /// What kind of service this is.
    pub service: String,
    pub version: String,
    /// `DROPLET_ID`.
    pub droplet_id: i64,
    pub steward: String,
    /// `DROPLET_ENDPOINT`: where the mesh reaches it.
    pub base_url: String,
    pub udc_version: String,
    /// What it does, as `GET /capabilities` lists it.
    pub capabilities: Vec<String>,
    pub health_endpoint: String,
    pub readiness_endpoint: String,
    pub openapi_endpoint: String,
    /// Every endpoint of the API, from its OpenAPI document.
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of [`Metadata`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Endpoint {
    pub method: String,
    pub path: String,
    pub summary: Option<String>,
    /// True when it needs a bearer token.
    pub authenticated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_services_health_without_the_optional_fields_reads() {
        let health: Health =
            serde_json::from_str(r#"{"id": 3, "name": "Registry", "status": "active", "message": "ok"}"#)
                .expect("reads");
        assert_eq!(
            (health.steward, health.endpoint, health.updated_at),
            (None, None, None)
        );
    }

    #[test]
    fn a_readiness_without_reasons_reads_as_none_given() {
        let readiness: Readiness = serde_json::from_str(
            r#"{"status": "ready", "checks": {"store": "ok", "migrations": "current", "shutting_down": false}}"#,
        )
        .expect("reads");
        assert!(readiness.is_ready() && readiness.reasons.is_empty());
    }
}
