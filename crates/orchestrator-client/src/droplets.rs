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
    /// it back, only [`Client::activate_droplet`] does. It drains: the tasks
    /// it holds run on.
    pub async fn deactivate_droplet(&self, id: DropletId) -> Result<DropletStatusChange, ClientError> {
        let path = format!("/droplets/{id}/deactivate");
        self.send(reqwest::Method::POST, &path, None::<&()>).await
    }

    /// Takes a droplet out of service and takes back what it holds
    /// (`?requeue=true`): assigned tasks requeued, running ones failed and
    /// retried at once. `tasks_taken_back` says how many.
    pub async fn deactivate_droplet_and_requeue(
        &self,
        id: DropletId,
    ) -> Result<DropletStatusChange, ClientError> {
        let path = format!("/droplets/{id}/deactivate?requeue=true");
        self.send(reqwest::Method::POST, &path, None::<&()>).await
    }
}
