//! Droplet use cases: register, heartbeat (also in the mesh's dialect),
//! list, get, activate, deactivate.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_domain::{
    Caller, Capability, DomainEvent, Droplet, DropletId, DropletRegistration, DropletStatus, EndpointPolicy,
    HeartbeatReport, Permission, RecoveryReason, RegistrationDraft, ServiceHeartbeat, ServiceRef,
    ValidationError,
};
use orchestrator_ports::{DropletChange, DropletFilter};

use crate::authz::{require, require_droplet_or_admin};
use crate::{AppError, AppResult, Ports, Recovery, ServiceDirectory};

/// How often a droplet's heartbeat is kept as a row by default: one a
/// minute says enough about a droplet's week, where every beat would be
/// tens of thousands of rows a day per droplet.
pub const HEARTBEAT_SAMPLE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct DropletService {
    ports: Ports,
    directory: Arc<ServiceDirectory>,
    /// Takes back the work of a droplet that restarted or is drained with
    /// requeue; without it, the next recovery pass does.
    recovery: Option<Arc<Recovery>>,
    /// `HEARTBEAT_SAMPLE_SECONDS`: a heartbeat that changes no status is
    /// kept as a row at most once per droplet this often.
    heartbeat_sample: Duration,
    /// Which endpoints a droplet may register (`ALLOW_PRIVATE_DROPLET_ENDPOINTS`).
    endpoints: EndpointPolicy,
}

impl DropletService {
    /// Finds services only among the droplets the store knows.
    pub fn new(ports: Ports) -> Self {
        let directory = ServiceDirectory::new(ports.clone(), None);
        Self::with_directory(ports, directory)
    }

    /// Finds services through `directory` (with the Registry behind it).
    pub fn with_directory(ports: Ports, directory: Arc<ServiceDirectory>) -> Self {
        Self {
            ports,
            directory,
            recovery: None,
            heartbeat_sample: HEARTBEAT_SAMPLE_EVERY,
            endpoints: EndpointPolicy::RefusePrivate,
        }
    }

    /// Refuses registrations whose endpoint `policy` refuses, instead of
    /// loopback, link-local and metadata addresses.
    #[must_use]
    pub fn with_endpoint_policy(mut self, policy: EndpointPolicy) -> Self {
        self.endpoints = policy;
        self
    }

    /// Takes back a restarted droplet's work at its registration, and a
    /// drained droplet's on request, through `recovery`.
    pub fn with_recovery(mut self, recovery: Arc<Recovery>) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// Keeps a heartbeat sample per droplet at most once per `every` (and on
    /// every change of status) instead of once per [`HEARTBEAT_SAMPLE_EVERY`];
    /// zero keeps every heartbeat.
    #[must_use]
    pub fn with_heartbeat_sample_every(mut self, every: Duration) -> Self {
        self.heartbeat_sample = every;
        self
    }

    /// Writes the heartbeats the store holds back to batch them; a process
    /// that stops calls it so that none it acknowledged is lost.
    pub async fn write_held_heartbeats(&self) -> AppResult<()> {
        Ok(self.ports.droplets.flush_heartbeats().await?)
    }

    /// Registers a droplet, or updates it when `droplet_id` is known
    /// already. A known droplet registering without `resume` is a new
    /// process: the tasks it held are taken back before this answers (its
    /// assigned ones requeued, its running ones failed and retried).
    pub async fn register(&self, caller: &Caller, draft: RegistrationDraft) -> AppResult<DropletChange> {
        let registration = DropletRegistration::parse(draft)?;
        require_droplet_or_admin(caller, registration.droplet_id)?;
        if let Some(why) = self.endpoints.refusal(&registration.endpoint) {
            return Err(ValidationError::new("endpoint", why).into());
        }
        let (id, resume) = (registration.droplet_id, registration.resume);
        let now = self.ports.clock.now();
        let change = self.ports.droplets.register_droplet(registration, now).await?;
        self.ports
            .events
            .publish(DomainEvent::DropletRegistered(change.droplet.clone()))
            .await;
        if let (Some(recovery), Some(_), false) = (&self.recovery, change.previous_status, resume) {
            let session = change.droplet.session_started_at;
            let moved = recovery
                .take_back(id, RecoveryReason::DropletRestarted, session)
                .await?;
            if moved > 0 {
                tracing::warn!(
                    droplet_id = id,
                    moved,
                    "droplet restarted: the work it held was taken back"
                );
            }
        }
        Ok(change)
    }

    /// Records a heartbeat; an inactive droplet that beats is active again.
    /// `last_heartbeat` moves with every one; the store keeps it as a row
    /// when it is a sample (see `DropletStore::record_heartbeat`).
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
        let change = self
            .ports
            .droplets
            .record_heartbeat(id, report, now, self.heartbeat_sample)
            .await?;
        self.publish_if_changed(&change).await;
        Ok(change)
    }

    /// A heartbeat in the mesh's dialect (`POST /heartbeat`): the same as
    /// [`Self::heartbeat`] once its droplet is known.
    pub async fn service_heartbeat(
        &self,
        caller: &Caller,
        beat: ServiceHeartbeat,
    ) -> AppResult<DropletChange> {
        // Only a caller that may beat at all makes the directory be searched.
        require(caller, Permission::Write)?;
        let id = self.droplet_beating(caller, &beat).await?;
        self.heartbeat(caller, id, beat.report()).await
    }

    /// The droplet a heartbeat names: by service id through the directory,
    /// by droplet id, or the caller's own when it names none.
    async fn droplet_beating(&self, caller: &Caller, beat: &ServiceHeartbeat) -> AppResult<DropletId> {
        let Some(service_id) = beat.service_id else {
            return beat.droplet_id.or(caller.droplet_id).ok_or_else(|| {
                ValidationError::new(
                    "service_id",
                    "name the droplet that beats: service_id (the Registry's id) or droplet_id",
                )
                .into()
            });
        };
        let found = self.directory.droplet_of(&[ServiceRef::Id(service_id)]).await?;
        match (found, beat.droplet_id) {
            (None, _) => Err(AppError::NotFound {
                entity: "droplet of service_id",
                id: service_id,
            }),
            (Some(found), Some(named)) if found != named => Err(ValidationError::new(
                "droplet_id",
                format!("service_id {service_id} is droplet {found}, not droplet {named}"),
            )
            .into()),
            (Some(found), _) => Ok(found),
        }
    }

    pub async fn list(&self, caller: &Caller, filter: DropletFilter) -> AppResult<Vec<Droplet>> {
        require(caller, Permission::Read)?;
        Ok(self.ports.droplets.list_droplets(&filter).await?)
    }

    /// Every droplet with the tasks it holds now (`assigned` plus `in_progress`).
    pub async fn list_with_load(&self, caller: &Caller) -> AppResult<Vec<(Droplet, u32)>> {
        let droplets = self.list(caller, DropletFilter::default()).await?;
        let counts = self.ports.tasks.active_task_counts().await?;
        Ok(droplets
            .into_iter()
            .map(|d| {
                let load = counts.get(&d.droplet_id).copied().unwrap_or(0);
                (d, load)
            })
            .collect())
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
    /// It drains: it gets no new work, and what it holds runs on and may be
    /// reported, unless `requeue` asks for it back (assigned tasks
    /// requeued, running ones failed and retried at once). Returns the
    /// droplet and how many tasks were taken back.
    pub async fn deactivate(
        &self,
        caller: &Caller,
        id: DropletId,
        requeue: bool,
    ) -> AppResult<(DropletChange, usize)> {
        let change = self.set_status(caller, id, DropletStatus::Inactive, true).await?;
        let moved = match (&self.recovery, requeue) {
            (Some(recovery), true) => {
                recovery
                    .take_back(id, RecoveryReason::DropletDeactivated, None)
                    .await?
            }
            (None, true) => {
                return Err(AppError::Unavailable(
                    "this process cannot take work back from droplets".into(),
                ));
            }
            (_, false) => 0,
        };
        Ok((change, moved))
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
