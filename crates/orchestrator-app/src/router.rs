//! The router: places pending tasks on droplets as soon as it can.
//!
//! It runs when an event may make a task routable (the event bus wakes it),
//! when a waiting task becomes due (its alarm: the earliest `run_at` or end
//! of a backoff, asked of the store after each sweep and each alarm, so
//! that it survives restarts and hears of other replicas' tasks), and on a
//! periodic sweep that catches anything else. One pass
//! repeats until no pending task can be placed. Each round asks the store
//! only for tasks that a droplet with a free slot could take, places each
//! with the domain's `RoutingPolicy`, and assigns it with a compare-and-set,
//! so a task taken meanwhile (by a cancel or another replica) is skipped,
//! never assigned twice. On PostgreSQL a round is one transaction: the
//! tasks are row-locked (`SKIP LOCKED`, so replicas route disjoint
//! batches), planned and assigned before the commit, with no lease written.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_domain::{
    Actor, Candidate, Capability, DomainEvent, DropletId, DropletStatus, Placement, PlacementRecord,
    RoutingPolicy, Task, TaskUpdate,
};
use orchestrator_ports::{ChangeRecord, DropletFilter, RoundPlanner, RoutableQuery, StoreError, Transition};
use tokio::sync::{Mutex, Notify};

use crate::{AppError, AppResult, Ports, Services};

/// Pending tasks claimed per round of a pass.
const BATCH: u32 = 100;
/// How long tasks claimed by a store without transactional rounds (see
/// `TaskStore::route_round`) stay hidden from other claims; a round
/// releases what it did not place long before this.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Router {
    ports: Ports,
    /// Names this router in the history, telling replicas' assignments apart.
    instance: uuid::Uuid,
    wake: Notify,
    /// When the next waiting task becomes due; see [`Alarm`].
    alarm: Alarm,
    /// One pass at a time within a process: passes would race for the same slots.
    pass: Mutex<()>,
    /// Set while the `task_router` job is paused: no pass assigns anything.
    paused: std::sync::atomic::AtomicBool,
    /// Recent time from creation to first assignment, by required capability.
    waits: std::sync::Mutex<std::collections::HashMap<Option<String>, f64>>,
}

/// How soon the alarm asks again for a task the store's clock holds back
/// while this one says it is due.
const STORE_CLOCK_SLACK: chrono::TimeDelta = chrono::TimeDelta::milliseconds(100);

/// The weight of the newest assignment in the running average of waits.
const WAIT_WEIGHT: f64 = 0.2;

impl Router {
    pub fn new(ports: Ports) -> Arc<Self> {
        Arc::new(Self {
            ports,
            instance: uuid::Uuid::new_v4(),
            wake: Notify::new(),
            alarm: Alarm::default(),
            pass: Mutex::new(()),
            paused: std::sync::atomic::AtomicBool::new(false),
            waits: std::sync::Mutex::default(),
        })
    }

    /// Seconds a new task needing `capability` can expect to wait for its
    /// first assignment: a running average of the recent waits of such tasks
    /// that this router assigned, rounded; 0 before it has seen one.
    pub fn expected_wait_seconds(&self, capability: Option<&str>) -> u32 {
        let waits = self
            .waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seconds = waits.get(&capability.map(str::to_owned)).copied().unwrap_or(0.0);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a small, non-negative wait"
        )]
        let rounded = seconds.round().clamp(0.0, f64::from(u32::MAX)) as u32;
        rounded
    }

    fn record_wait(&self, task: &Task) {
        let Some(assigned_at) = task.assigned_at.filter(|_| task.attempt == 1) else {
            return;
        };
        // A scheduled task's wait starts when it was due, not when it came.
        let since = task
            .run_at
            .map_or(task.created_at, |run_at| run_at.max(task.created_at));
        let seconds = (assigned_at - since).as_seconds_f64().max(0.0);
        let capability = task.required_capability.as_ref().map(|c| c.as_str().to_owned());
        let mut waits = self
            .waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let average = waits.entry(capability).or_insert(seconds);
        *average += WAIT_WEIGHT * (seconds - *average);
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

    /// Makes a pass at `at` (a task's `run_at`, or the end of a backoff),
    /// so that a waiting task is routed when it becomes due rather than on
    /// the next sweep. One alarm is kept, the earliest; a later time is
    /// found again by [`Router::rearm`] once the alarm has rung.
    pub fn wake_at(&self, at: Option<DateTime<Utc>>) {
        if let Some(at) = at.filter(|at| *at > self.ports.clock.now()) {
            self.alarm.set_if_earlier(at);
        }
    }

    /// Sets the alarm for the earliest waiting task the store has: after
    /// each sweep (the first runs at start) and after the alarm rang, so
    /// that a task created on another replica or before a restart is still
    /// routed when due.
    pub async fn rearm(&self) {
        match self.ports.tasks.next_due_at().await {
            // The store judges by its own clock: a task it still holds back
            // but this clock says is due is asked after again shortly.
            Ok(Some(at)) => self
                .alarm
                .set_if_earlier(at.max(self.ports.clock.now() + STORE_CLOCK_SLACK)),
            Ok(None) => {}
            Err(err) => tracing::debug!(error = %err, "next due task unknown; the next sweep asks again"),
        }
    }

    /// When the alarm is set, when it rings; it then makes a pass, and is
    /// set again from the store.
    async fn ring_when_due(&self) {
        loop {
            let Some(at) = self.alarm.next() else {
                self.alarm.changed.notified().await;
                continue;
            };
            let wait = (at - self.ports.clock.now()).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    self.alarm.clear_if(at);
                    self.wake();
                    self.rearm().await;
                }
                () = self.alarm.changed.notified() => {}
            }
        }
    }

    /// Places every pending task that can be placed now; returns how many were assigned.
    pub async fn route_pending(&self) -> AppResult<usize> {
        let _one_pass = self.pass.lock().await;
        // Counted under the lock, so in the order passes run: a pass that
        // starts after the started count was read saw everything before
        // that read, and is over once the finished count passes it. Paused
        // passes count too.
        ::metrics::counter!("orchestrator_routing_passes_started_total").increment(1);
        let assigned = self.place_pending().await;
        ::metrics::counter!("orchestrator_routing_passes_total").increment(1);
        assigned
    }

    async fn place_pending(&self) -> AppResult<usize> {
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
            let (claimed, round) = self.round(&query, candidates).await?;
            let refused = round.refused.len();
            set_aside.extend(round.refused);
            if let Some(err) = round.error {
                return Err(err);
            }
            assigned += round.assigned;
            // A short batch was the last, unless a refusal left tasks to
            // place elsewhere; a round with no progress ends the pass, and
            // the next event or sweep retries.
            let more = claimed == query.limit as usize || refused > 0;
            if !more || (round.assigned == 0 && refused == 0) {
                break;
            }
        }
        Ok(assigned)
    }

    /// One round: the store claims a batch, the planner places each task
    /// against the droplets' free slots, and the store assigns them, each
    /// its own compare-and-set (in one transaction on PostgreSQL).
    async fn round(&self, query: &RoutableQuery, candidates: Vec<Candidate>) -> AppResult<(usize, Round)> {
        let mut planner = Planner {
            candidates,
            router: self.instance,
            clock: self.ports.clock.clone(),
            planned: Vec::new(),
        };
        let routed = self.ports.tasks.route_round(query, &mut planner).await?;
        let mut round = Round::default();
        for (droplet_id, outcome) in planner.planned.into_iter().zip(routed.outcomes) {
            match outcome {
                Ok(saved) => {
                    round.assigned += 1;
                    self.record_wait(&saved);
                    self.ports.events.publish(DomainEvent::TaskAssigned(saved)).await;
                }
                Err(StoreError::DropletUnavailable { .. }) => round.refused.push(droplet_id),
                // Its key is at its limit: it waits, queued, and claims
                // leave it out until a task of the key ends.
                Err(StoreError::Conflict(_) | StoreError::ConcurrencyLimited { .. }) => {}
                Err(err) => {
                    round.error.get_or_insert(err.into());
                }
            }
        }
        Ok((routed.claimed, round))
    }

    async fn candidates(&self) -> AppResult<Vec<Candidate>> {
        let active = DropletFilter {
            status: Some(DropletStatus::Active),
            ..DropletFilter::default()
        };
        // Two independent reads at once: a pass waits for one round trip, not two.
        let (droplets, counts) = futures_util::future::try_join(
            self.ports.droplets.list_droplets(&active),
            self.ports.tasks.active_task_counts(),
        )
        .await?;
        Ok(droplets
            .iter()
            .map(|d| Candidate::new(d, counts.get(&d.droplet_id).copied().unwrap_or(0)))
            .collect())
    }

    /// Routes on every event that may unblock routing, as two services:
    /// one listens, one routes. The periodic sweep is the scheduler's
    /// `task_router` job.
    pub fn start(self: &Arc<Self>, services: &Services) {
        let mut events = self.ports.events.subscribe();
        let router = Arc::clone(self);
        services.spawn("router: events that may unblock routing", async move {
            while let Some(event) = events.next().await {
                if event.may_unblock_routing() {
                    router.wake();
                }
                if let DomainEvent::TaskCreated(task) | DomainEvent::TaskRetried(task) = &event {
                    router.wake_at(task.not_before());
                }
            }
        });
        let router = Arc::clone(self);
        services.spawn("router: alarm for waiting tasks", async move {
            router.ring_when_due().await
        });
        let router = Arc::clone(self);
        services.spawn("router: routing passes", async move { router.run().await });
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

/// The router's one timer: the earliest time a waiting task becomes due.
/// Setting it earlier wakes its loop, which then sleeps until the new time.
#[derive(Debug, Default)]
struct Alarm {
    at: std::sync::Mutex<Option<DateTime<Utc>>>,
    changed: Notify,
}

impl Alarm {
    fn next(&self) -> Option<DateTime<Utc>> {
        *self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_if_earlier(&self, at: DateTime<Utc>) {
        let mut armed = self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if armed.is_none_or(|armed| at < armed) {
            *armed = Some(at);
            self.changed.notify_one();
        }
    }

    /// Clears the alarm that rang at `at`, unless an earlier one replaced it.
    fn clear_if(&self, at: DateTime<Utc>) {
        let mut armed = self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *armed == Some(at) {
            *armed = None;
        }
    }
}

/// The tasks worth fetching: those some droplet with a free slot can take.
fn routable_query(candidates: &[Candidate]) -> Option<RoutableQuery> {
    let free: Vec<&Candidate> = candidates.iter().filter(|c| c.has_room()).collect();
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

/// Candidates recorded with an assignment, the best ranked first: the
/// chosen one and the runners-up say why. Twenty made the row about 2 KB,
/// past the size PostgreSQL compresses, on every assignment.
const EXPLAINED_CANDIDATES: usize = 5;

/// Plans a round inside the store's claim: places each task with the
/// domain's `RoutingPolicy` against the free slots it knows, and writes
/// the assignment with why it went there.
struct Planner {
    candidates: Vec<Candidate>,
    router: uuid::Uuid,
    clock: Arc<dyn orchestrator_ports::Clock>,
    /// The droplet of each planned assignment, in the plan's order.
    planned: Vec<DropletId>,
}

impl RoundPlanner for Planner {
    fn plan(&mut self, pending: &[Task]) -> Vec<Transition> {
        let mut plans = Vec::new();
        for task in pending {
            let explanation = RoutingPolicy::explain(task.required_capability.as_ref(), &self.candidates);
            let Placement::Assign { droplet_id, rule } = explanation.placement else {
                continue;
            };
            let now = self.clock.now();
            let Ok(next) = task.apply(TaskUpdate::Assign { droplet_id }, Actor::SYSTEM, now) else {
                continue;
            };
            take_slot(&mut self.candidates, droplet_id, now);
            self.planned.push(droplet_id);
            plans.push(Transition {
                expected_status: task.status,
                expected_attempt: task.attempt,
                expected_droplet: None,
                task: next,
                record: ChangeRecord {
                    changed_by: Some("system:router".into()),
                    reason: Some(format!("routed to droplet {droplet_id}")),
                    metadata: serde_json::to_value(PlacementRecord {
                        droplet_id,
                        rule,
                        router: self.router,
                        candidates_total: explanation.considered.len(),
                        candidates: explanation
                            .considered
                            .into_iter()
                            .take(EXPLAINED_CANDIDATES)
                            .collect(),
                    })
                    .ok(),
                },
            });
        }
        plans
    }
}

/// What one round of a pass did.
#[derive(Default)]
struct Round {
    assigned: usize,
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
