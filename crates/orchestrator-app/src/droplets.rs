//! Droplet use cases: register, heartbeat, list, get, activate, deactivate.

use orchestrator_domain::{
    Caller, Capability, DomainEvent, Droplet, DropletId, DropletRegistration, DropletStatus, HeartbeatReport,
    Permission, RegistrationDraft,
};
use orchestrator_ports::{DropletChange, DropletFilter};

use crate::authz::{require, require_droplet_or_admin};
use crate::{AppResult, Ports};

#[derive(Debug, Clone)]
pub struct DropletService {
    ports: Ports,
}

impl DropletService {
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    /// Registers a droplet, or updates it when `droplet_id` is known already.
    pub async fn register(&self, caller: &Caller, draft: RegistrationDraft) -> AppResult<DropletChange> {
        let registration = DropletRegistration::parse(draft)?;
        require_droplet_or_admin(caller, registration.droplet_id)?;
        let now = self.ports.clock.now();
        let change = self.ports.droplets.register_droplet(registration, now).await?;
        self.ports
            .events
            .publish(DomainEvent::DropletRegistered(change.droplet.clone()))
            .await;
        Ok(change)
    }

    /// Records a heartbeat; an inactive droplet that beats is active again.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        id: DropletId,
        report: HeartbeatReport,
    ) -> AppResult<DropletChange> {
        require_droplet_or_admin(caller, id)?;
        if let Some(metrics) = &report.metrics {
            orchestrator_domain::storable_json("metrics", metrics)?;
        }
        let now = self.ports.clock.now();
        let change = self.ports.droplets.record_heartbeat(id, report, now).await?;
        self.publish_if_changed(&change).await;
        Ok(change)
    }

    pub async fn list(&self, caller: &Caller, filter: DropletFilter) -> AppResult<Vec<Droplet>> {
        require(caller, Permission::Read)?;
        Ok(self.ports.droplets.list_droplets(&filter).await?)
    }

    pub async fn get(&self, caller: &Caller, id: DropletId) -> AppResult<Droplet> {
        require(caller, Permission::Read)?;
        Ok(self.ports.droplets.get_droplet(id).await?)
    }

    pub async fn capabilities(&self, caller: &Caller, id: DropletId) -> AppResult<Vec<Capability>> {
        Ok(self.get(caller, id).await?.capabilities)
    }

    /// An admin puts a droplet back into service.
    pub async fn activate(&self, caller: &Caller, id: DropletId) -> AppResult<DropletChange> {
        self.set_status(caller, id, DropletStatus::Active, false).await
    }

    /// An admin takes a droplet out of service; heartbeats do not undo it.
    pub async fn deactivate(&self, caller: &Caller, id: DropletId) -> AppResult<DropletChange> {
        self.set_status(caller, id, DropletStatus::Inactive, true).await
    }

    async fn set_status(
        &self,
        caller: &Caller,
        id: DropletId,
        status: DropletStatus,
        manual: bool,
    ) -> AppResult<DropletChange> {
        require(caller, Permission::Admin)?;
        let now = self.ports.clock.now();
        let change = self
            .ports
            .droplets
            .set_droplet_status(id, status, manual, now)
            .await?;
        self.publish_if_changed(&change).await;
        Ok(change)
    }

    async fn publish_if_changed(&self, change: &DropletChange) {
        if let Some(previous) = change.previous_status.filter(|p| *p != change.droplet.status) {
            let event = DomainEvent::DropletHealthChanged {
                droplet: change.droplet.clone(),
                previous,
            };
            self.ports.events.publish(event).await;
        }
    }
}
