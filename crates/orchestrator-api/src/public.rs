//! The public endpoints of the UDC (no token): `/health` and
//! `/dependencies`.

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
}
