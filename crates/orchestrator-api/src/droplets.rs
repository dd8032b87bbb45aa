//! `/droplets`: the bodies of registration, heartbeats, the directory and
//! an admin's activate and deactivate.

use chrono::{DateTime, Utc};
use orchestrator_domain::{Capability, Droplet, DropletId, DropletStatus};
use serde::{Deserialize, Serialize};

/// The answer to `POST /droplets/register`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Registered {
    pub droplet_id: DropletId,
    pub name: String,
    pub status: DropletStatus,
    pub capabilities: Vec<Capability>,
    pub max_concurrent_tasks: u32,
    pub registered_at: DateTime<Utc>,
    /// How often to send heartbeats (`HEARTBEAT_CHECK_INTERVAL`).
    pub heartbeat_interval_seconds: u64,
    /// Unix seconds by which the next heartbeat must arrive.
    pub next_heartbeat_deadline: Option<f64>,
}

/// The answer to a heartbeat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HeartbeatAck {
    pub droplet_id: DropletId,
    pub status: DropletStatus,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Unix seconds by which the next heartbeat must arrive.
    pub next_heartbeat_deadline: Option<f64>,
}

/// The query of `GET /droplets`; both parameters are optional. The server
/// reads the values as they came and checks them itself (a bad one is a
/// validation error naming it): [`DropletQuery::with_status`] sets a typed
/// one.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropletQuery {
    #[cfg_attr(feature = "openapi", param(value_type = Option<DropletStatus>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only droplets offering this capability.
    #[cfg_attr(feature = "openapi", param(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
}

impl DropletQuery {
    pub fn with_status(mut self, status: DropletStatus) -> Self {
        self.status = Some(status.as_str().to_owned());
        self
    }

    pub fn with_capability(mut self, capability: impl Into<String>) -> Self {
        self.capability = Some(capability.into());
        self
    }
}

/// The answer to `GET /droplets` (and the `droplet_list` query): the
/// droplet directory, by id.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DropletList {
    pub droplets: Vec<Droplet>,
    pub total: usize,
}

impl DropletList {
    pub fn new(droplets: Vec<Droplet>) -> Self {
        DropletList {
            total: droplets.len(),
            droplets,
        }
    }
}

/// The answer to `GET /droplets/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DropletReply {
    pub droplet: Droplet,
}

/// The answer to `GET /droplets/{id}/capabilities`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DropletCapabilities {
    pub droplet_id: DropletId,
    pub capabilities: Vec<Capability>,
}

/// The answer to `POST /droplets/{id}/activate` and `/deactivate`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct StatusChanged {
    pub droplet_id: DropletId,
    /// The status now.
    pub status: DropletStatus,
    /// The status before the change.
    pub previous_status: Option<DropletStatus>,
    pub updated_at: DateTime<Utc>,
    /// Tasks taken back from the droplet (`deactivate?requeue=true` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_taken_back: Option<u64>,
}

/// The query of `POST /droplets/{id}/deactivate`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeactivateQuery {
    /// `true` takes back what the droplet holds: its assigned tasks are
    /// requeued, its running ones failed and retried at once. Without it
    /// the droplet drains: no new work, and what it holds runs on.
    #[serde(default)]
    pub requeue: bool,
}
