//! The answers about droplets.

use chrono::{DateTime, Utc};
use orchestrator_domain::{Capability, DropletId, DropletStatus};
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
