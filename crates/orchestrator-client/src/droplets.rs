//! The droplet endpoints beyond registration and heartbeats: a droplet's
//! capabilities, and an admin's activate and deactivate.

use orchestrator_domain::DropletId;

pub use orchestrator_api::droplets::{DropletCapabilities, StatusChanged as DropletStatusChange};

use crate::{Client, ClientError};

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
