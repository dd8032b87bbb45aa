//! The router: places pending tasks on droplets as soon as it can.
//!
//! It runs when an event may make a task routable (the event bus wakes it)
//! and on a periodic sweep that catches anything an event did not. One pass
//! repeats until no pending task can be placed: it asks the store only for
//! tasks that a droplet with a free slot could take, places each with the
//! domain's `RoutingPolicy`, and assigns it with a compare-and-set, so a task
//! taken meanwhile (by a cancel or another replica) is skipped, never assigned
//! twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_domain::{
    Actor, Candidate, Capability, DomainEvent, DropletId, DropletStatus, Placement, PlacementRule,
    RoutingPolicy, Task, TaskId, TaskUpdate,
};
use orchestrator_ports::{ChangeRecord, DropletFilter, RoutableQuery, StoreError, Transition};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::{AppResult, Ports};

/// Pending tasks claimed per round of a pass.
const BATCH: u32 = 100;
/// How long claimed tasks stay hidden from other replicas' routers; a pass
/// releases what it did not place long before this.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Router {
    ports: Ports,
    /// Names this router in the history, telling replicas' assignments apart.
    instance: uuid::Uuid,
    wake: Notify,
    /// One pass at a time within a process: passes would race for the same slots.
    pass: Mutex<()>,
    /// Set while the `task_router` job is paused: no pass assigns anything.
    paused: std::sync::atomic::AtomicBool,
}

impl Router {
    pub fn new(ports: Ports) -> Arc<Self> {
        Arc::new(Self {
            ports,
            instance: uuid::Uuid::new_v4(),
            wake: Notify::new(),
            pass: Mutex::new(()),
            paused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Pauses or resumes routing; a resumed router makes a pass at once.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, std::sync::atomic::Ordering::SeqCst);
        if !paused {
            self.wake();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks for a pass as soon as possible; wake-ups during a pass cause one more.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Wakes the router when a retried task's backoff ends, so that it is
    /// routed then rather than on the next sweep.
    fn wake_at(self: &Arc<Self>, at: Option<chrono::DateTime<chrono::Utc>>) {
        let Some(wait) = at.and_then(|at| (at - self.ports.clock.now()).to_std().ok()) else {
            return;
        };
        let router = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            router.wake();
        });
    }

    /// Places every pending task that can be placed now; returns how many were assigned.
    pub async fn route_pending(&self) -> AppResult<usize> {
        let _one_pass = self.pass.lock().await;
        if self.is_paused() {
            return Ok(0);
        }
        let mut assigned = 0;
        loop {
            let mut candidates = self.candidates().await?;
            let Some(query) = routable_query(&candidates) else {
                break;
            };
            let pending = self.ports.tasks.claim_pending(&query).await?;
            let mut this_round = 0;
            let mut unplaced = Vec::new();
            for task in &pending {
                match self.place(task, &mut candidates).await {
                    Ok(true) => this_round += 1,
                    Ok(false) => unplaced.push(task.id),
                    Err(err) => {
                        self.release(&pending.iter().map(|t| t.id).collect::<Vec<_>>())
                            .await;
                        return Err(err);
                    }
                }
            }
            self.release(&unplaced).await;
            assigned += this_round;
            // A short batch was the last; a round with no assignment means
            // others took the tasks, and the next event or sweep retries.
            if this_round == 0 || pending.len() < query.limit as usize {
                break;
            }
        }
        Ok(assigned)
    }

    /// Gives back claims on tasks this pass did not place, so that the next
    /// event (here or on another replica) can route them at once. A failed
    /// release only delays them until the lease ends.
    async fn release(&self, ids: &[TaskId]) {
        if ids.is_empty() {
            return;
        }
        if let Err(err) = self.ports.tasks.release_claims(ids).await {
            tracing::warn!(error = %err, "could not release routing claims; they lapse with their lease");
        }
    }

    async fn candidates(&self) -> AppResult<Vec<Candidate>> {
        let active = DropletFilter {
            status: Some(DropletStatus::Active),
            ..DropletFilter::default()
        };
        let droplets = self.ports.droplets.list_droplets(&active).await?;
        let counts = self.ports.tasks.active_task_counts().await?;
        Ok(droplets
            .iter()
            .map(|d| Candidate::new(d, counts.get(&d.droplet_id).copied().unwrap_or(0)))
            .collect())
    }

    /// Assigns `task` if the policy finds a droplet; true when it did. A
    /// droplet found full or inactive at commit (another replica filled it,
    /// an admin took it out) is set aside and the task placed again.
    async fn place(&self, task: &Task, candidates: &mut [Candidate]) -> AppResult<bool> {
        loop {
            let Placement::Assign { droplet_id, rule } =
                RoutingPolicy::place(task.required_capability.as_ref(), candidates)
            else {
                return Ok(false);
            };
            match self.assign(task, droplet_id, rule).await {
                Ok(saved) => {
                    take_slot(candidates, droplet_id, saved.updated_at);
                    self.ports.events.publish(DomainEvent::TaskAssigned(saved)).await;
                    return Ok(true);
                }
                Err(StoreError::DropletUnavailable { .. }) => set_aside(candidates, droplet_id),
                Err(StoreError::Conflict(_)) => return Ok(false),
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn assign(
        &self,
        task: &Task,
        droplet_id: DropletId,
        rule: PlacementRule,
    ) -> Result<Task, StoreError> {
        let now = self.ports.clock.now();
        let next = task
            .apply(TaskUpdate::Assign { droplet_id }, Actor::SYSTEM, now)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let transition = Transition {
            expected_status: task.status,
            expected_droplet: None,
            task: next,
            record: ChangeRecord {
                changed_by: Some("system:router".into()),
                reason: Some(format!("routed to droplet {droplet_id}")),
                metadata: Some(serde_json::json!({
                    "droplet_id": droplet_id,
                    "rule": rule,
                    "router": self.instance,
                })),
            },
        };
        self.ports.tasks.apply_transition(transition).await
    }

    /// Routes on every event that may unblock routing until the returned
    /// handle is dropped. The periodic sweep is the scheduler's
    /// `task_router` job.
    pub fn start(self: &Arc<Self>) -> RouterHandle {
        let mut events = self.ports.events.subscribe();
        let listener = {
            let router = Arc::clone(self);
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    if event.may_unblock_routing() {
                        router.wake();
                    }
                    if let DomainEvent::TaskRetried(task) = &event {
                        router.wake_at(task.retry_after);
                    }
                }
            })
        };
        let worker = {
            let router = Arc::clone(self);
            tokio::spawn(async move { router.run().await })
        };
        RouterHandle {
            tasks: vec![listener, worker],
        }
    }

    async fn run(&self) {
        loop {
            self.wake.notified().await;
            match self.route_pending().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(assigned = n, "routing pass"),
                Err(err) => {
                    tracing::warn!(error = %err, "routing pass failed; the next event or sweep retries")
                }
            }
        }
    }
}

/// Stops the router's background tasks when dropped.
#[derive(Debug)]
pub struct RouterHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The tasks worth fetching: those some droplet with a free slot can take.
fn routable_query(candidates: &[Candidate]) -> Option<RoutableQuery> {
    let free: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.active_tasks < c.capacity)
        .collect();
    if free.is_empty() {
        return None;
    }
    let capabilities: BTreeSet<&Capability> = free.iter().flat_map(|c| c.capabilities.iter()).collect();
    Some(RoutableQuery {
        capabilities: capabilities.into_iter().cloned().collect(),
        include_unconstrained: true,
        limit: BATCH,
        lease: CLAIM_LEASE,
    })
}

/// Takes a droplet out of this pass: the store says it cannot take work.
fn set_aside(candidates: &mut [Candidate], droplet_id: DropletId) {
    if let Some(c) = candidates.iter_mut().find(|c| c.droplet_id == droplet_id) {
        c.active_tasks = c.capacity;
    }
}

fn take_slot(candidates: &mut [Candidate], droplet_id: DropletId, now: chrono::DateTime<chrono::Utc>) {
    if let Some(c) = candidates.iter_mut().find(|c| c.droplet_id == droplet_id) {
        c.active_tasks += 1;
        c.idle_since = now;
    }
}
