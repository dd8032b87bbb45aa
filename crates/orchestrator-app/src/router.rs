//! The router: places pending tasks on droplets as soon as it can.
//!
//! It runs when an event may make a task routable (the event bus wakes it)
//! and on a periodic sweep that catches anything an event did not. One pass
//! repeats until no pending task can be placed: it asks the store only for
//! tasks that a droplet with a free slot could take, places each with the
//! domain's `RoutingPolicy`, and assigns it with a compare-and-set, so a task
//! taken meanwhile (by a cancel or another replica) is skipped, never assigned
//! twice.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_domain::{
    Actor, Candidate, Capability, Considered, DomainEvent, DropletId, DropletStatus, Placement,
    PlacementRule, RoutingPolicy, Task, TaskId, TaskUpdate,
};
use orchestrator_ports::{ChangeRecord, DropletFilter, RoutableQuery, StoreError, Transition};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::{AppError, AppResult, Ports};

/// Pending tasks claimed per round of a pass.
const BATCH: u32 = 100;
/// Assignments of a round in flight at once: all of them, so that a store
/// that groups concurrent changes commits a round in one transaction.
const IN_FLIGHT: usize = BATCH as usize;
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

    /// Waits for a routing pass in progress to end; with the router paused,
    /// nothing is assigned after this returns.
    pub async fn quiesce(&self) {
        drop(self.pass.lock().await);
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
        // Droplets the store refused during this pass (full or gone).
        let mut set_aside = HashSet::new();
        let mut assigned = 0;
        // Checked every round: a pause takes effect within the running pass.
        while !self.is_paused() {
            let mut candidates = self.candidates().await?;
            for droplet in &set_aside {
                take_all_slots(&mut candidates, *droplet);
            }
            let Some(query) = routable_query(&candidates) else {
                break;
            };
            let pending = self.ports.tasks.claim_pending(&query).await?;
            let round = self.assign_batch(&pending, &mut candidates).await;
            self.release(&round.unplaced).await;
            let refused = round.refused.len();
            set_aside.extend(round.refused);
            if let Some(err) = round.error {
                return Err(err);
            }
            assigned += round.assigned;
            // A short batch was the last, unless a refusal left tasks to
            // place elsewhere; a round with no progress ends the pass, and
            // the next event or sweep retries.
            let more = pending.len() == query.limit as usize || refused > 0;
            if !more || (round.assigned == 0 && refused == 0) {
                break;
            }
        }
        Ok(assigned)
    }

    /// Plans every task of the batch against the droplets' free slots, then
    /// runs the assignments concurrently: each is its own compare-and-set,
    /// and tasks planned on different droplets lock different rows.
    async fn assign_batch(&self, pending: &[Task], candidates: &mut [Candidate]) -> Round {
        let mut round = Round::default();
        let mut plans = Vec::new();
        for task in pending {
            let explanation = RoutingPolicy::explain(task.required_capability.as_ref(), candidates);
            match explanation.placement {
                Placement::Assign { droplet_id, rule } => {
                    take_slot(candidates, droplet_id, self.ports.clock.now());
                    plans.push(Plan {
                        task: task.clone(),
                        droplet_id,
                        rule,
                        considered: explanation.considered,
                    });
                }
                _ => round.unplaced.push(task.id),
            }
        }
        let outcomes: Vec<_> = futures_util::stream::iter(plans)
            .map(|plan: Plan| async move {
                let (task_id, droplet_id) = (plan.task.id, plan.droplet_id);
                (task_id, droplet_id, self.assign(plan).await)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (task_id, droplet_id, outcome) in outcomes {
            match outcome {
                Ok(saved) => {
                    round.assigned += 1;
                    self.ports.events.publish(DomainEvent::TaskAssigned(saved)).await;
                }
                Err(StoreError::DropletUnavailable { .. }) => {
                    round.refused.push(droplet_id);
                    round.unplaced.push(task_id);
                }
                Err(StoreError::Conflict(_)) => round.unplaced.push(task_id),
                Err(err) => {
                    round.unplaced.push(task_id);
                    round.error.get_or_insert(err.into());
                }
            }
        }
        round
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

    async fn assign(&self, plan: Plan) -> Result<Task, StoreError> {
        let Plan {
            task,
            droplet_id,
            rule,
            considered,
        } = plan;
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
                metadata: serde_json::to_value(PlacementRecord {
                    droplet_id,
                    rule,
                    router: self.instance,
                    candidates_total: considered.len(),
                    candidates: considered.into_iter().take(EXPLAINED_CANDIDATES).collect(),
                })
                .ok(),
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

/// Candidates recorded with an assignment, the best ranked first: enough to
/// see why, without making a history row grow with the fleet.
const EXPLAINED_CANDIDATES: usize = 20;

/// Why an assignment went where it did: the `metadata` of its
/// `pending → assigned` history row.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlacementRecord {
    /// The droplet chosen.
    pub droplet_id: orchestrator_domain::DropletId,
    /// The rule that settled it.
    pub rule: orchestrator_domain::PlacementRule,
    /// The router (process) that made it.
    pub router: uuid::Uuid,
    /// Every active droplet with the capability.
    pub candidates_total: usize,
    /// The first of them, ranked as the policy ranked them (eligible first).
    pub candidates: Vec<orchestrator_domain::Considered>,
}

/// An assignment decided in memory, with what it was chosen among.
struct Plan {
    task: Task,
    droplet_id: DropletId,
    rule: PlacementRule,
    considered: Vec<Considered>,
}

/// What one round of a pass did.
#[derive(Default)]
struct Round {
    assigned: usize,
    /// Claimed tasks not assigned, to release.
    unplaced: Vec<TaskId>,
    /// Droplets the store refused (full or no longer active).
    refused: Vec<DropletId>,
    error: Option<AppError>,
}

/// Takes a droplet out of this pass: the store says it cannot take work.
fn take_all_slots(candidates: &mut [Candidate], droplet_id: DropletId) {
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
