//! The droplet endpoints beyond registration and heartbeats: a droplet's
//! capabilities, and an admin's activate and deactivate.

use chrono::{DateTime, Utc};
use orchestrator_domain::{Capability, DropletId, DropletStatus};
use serde::{Deserialize, Serialize};

use crate::{Client, ClientError};

/// The answer to `GET /droplets/{id}/capabilities`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DropletCapabilities {
    pub droplet_id: DropletId,
    pub capabilities: Vec<Capability>,
}

/// The answer to `POST /droplets/{id}/activate` and `/deactivate`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DropletStatusChange {
    pub droplet_id: DropletId,
    /// The status now.
    pub status: DropletStatus,
    /// The status before the change.
    pub previous_status: Option<DropletStatus>,
    pub updated_at: DateTime<Utc>,
}

impl Client {
    /// What a droplet can do (`read`).
    pub async fn droplet_capabilities(&self, id: DropletId) -> Result<DropletCapabilities, ClientError> {
        let path = format!("/droplets/{id}/capabilities");
        self.send(reqwest::Method::GET, &path, None::<&()>).await
    }

    /// Puts a droplet back into service (`admin`).
    pub async fn activate_droplet(&self, id: DropletId) -> Result<DropletStatusChange, ClientError> {
        let path = format!("/droplets/{id}/activate");
        self.send(reqwest::Method::POST, &path, None::<&()>).await
    }

    /// Takes a droplet out of service (`admin`); its heartbeats do not bring
    /// it back, only [`Client::activate_droplet`] does.
    pub async fn deactivate_droplet(&self, id: DropletId) -> Result<DropletStatusChange, ClientError> {
        let path = format!("/droplets/{id}/deactivate");
        self.send(reqwest::Method::POST, &path, None::<&()>).await
    }
}
