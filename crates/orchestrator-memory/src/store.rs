//! The in-memory store: all state behind one mutex, so that every change is
//! atomic and a compare-and-set that lost a race is a conflict.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrator_domain::{
    Droplet, DropletId, DropletRegistration, DropletStatus, HeartbeatReport, HistoryEntry, NewSchedule,
    NewTask, RecoveryReason, Schedule, ServiceRef, Task, TaskId, TaskStatus,
};
use orchestrator_ports::{
    AnalyticsStore, ChangeRecord, DropletChange, DropletFilter, DropletStore, Fire, IdempotencyKey,
    LiveCounts, OnceCreated, PageCursor, Percentiles, ProgressReport, RecoveryCandidate, RecoveryQuery,
    Report, ReportOutcome, RescueCounts, RoutableQuery, RoutingStats, ScheduleDefinition, ScheduleStore,
    StoreError, StoreResult, TaskFilter, TaskKey, TaskPage, TaskPerformance, TaskStore, Throughput,
    TimeWindow, Transition, TypeBreakdown,
};
use uuid::Uuid;

mod concurrency;
mod workflows;

/// Heartbeat rows kept per droplet; older ones are dropped so that memory
/// stays bounded.
const HEARTBEATS_KEPT: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    last_task_id: TaskId,
    last_history_id: i64,
    tasks: BTreeMap<TaskId, Task>,
    trace_ids: HashSet<Uuid>,
    /// Routing claims: task id to the end of its lease.
    leases: HashMap<TaskId, DateTime<Utc>>,
    history: HashMap<TaskId, Vec<HistoryEntry>>,
    droplets: BTreeMap<DropletId, Droplet>,
    heartbeats: HashMap<DropletId, VecDeque<HeartbeatRow>>,
    /// When each droplet's latest heartbeat sample was kept.
    heartbeat_sampled_at: HashMap<DropletId, DateTime<Utc>>,
    /// The name the Registry's directory lists each droplet under.
    listed_names: HashMap<DropletId, String>,
    /// Tasks whose deadline was reported at risk (once each), and when.
    deadline_risks: HashMap<TaskId, DateTime<Utc>>,
    /// Idempotency keys by caller and key.
    idempotency: HashMap<(String, String), RecordedKey>,
    schedules: BTreeMap<String, Schedule>,
    /// The fire times of each schedule that made a task: the unique key
    /// of a fire.
    fires: HashSet<(String, DateTime<Utc>)>,
    last_workflow_id: orchestrator_domain::WorkflowId,
    workflows: BTreeMap<orchestrator_domain::WorkflowId, workflows::WorkflowRecord>,
    /// What each task of a workflow is to it.
    memberships: HashMap<TaskId, workflows::Membership>,
    /// The tasks of workflows that depend on each task.
    dependants: HashMap<TaskId, Vec<TaskId>>,
    /// Concurrency limits by key.
    limits: BTreeMap<String, orchestrator_domain::ConcurrencyLimit>,
}

#[derive(Debug)]
struct RecordedKey {
    fingerprint: String,
    tasks: Vec<TaskId>,
    at: DateTime<Utc>,
}

#[derive(Debug)]
#[allow(dead_code)] // status and metrics are kept as the PostgreSQL heartbeats table keeps them
struct HeartbeatRow {
    status: DropletStatus,
    metrics: Option<serde_json::Value>,
    received_at: DateTime<Utc>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change:
        // every change below is computed first and written in one step.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many heartbeat samples are kept for a droplet (for tests of the cap).
    pub fn heartbeat_count(&self, id: DropletId) -> usize {
        self.lock().heartbeats.get(&id).map_or(0, VecDeque::len)
    }
}

/// Whether a heartbeat at `at` is due as a sample, the last one having been
/// kept at `last`: every beat when `every` is zero, else one `every` after
/// the last (a beat older than the last never is).
fn sample_due(last: Option<DateTime<Utc>>, at: DateTime<Utc>, every: std::time::Duration) -> bool {
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    every.is_zero() || last.is_none_or(|last| last.checked_add_signed(every).is_some_and(|due| at >= due))
}

/// Why `droplet`, holding `held` tasks, cannot take one more (None: it can).
fn cannot_take(droplet: &Droplet, held: usize) -> Option<String> {
    if droplet.status != DropletStatus::Active {
        Some(format!("it is {}", droplet.status))
    } else if !orchestrator_domain::has_room(
        u32::try_from(held).unwrap_or(u32::MAX),
        droplet.max_concurrent_tasks,
    ) {
        Some(format!(
            "it already holds {held} of {} tasks",
            droplet.max_concurrent_tasks
        ))
    } else {
        None
    }
}

fn trace_id_taken(trace_id: Uuid) -> StoreError {
    StoreError::Conflict(format!("a task with trace_id {trace_id} already exists"))
}

impl State {
    /// Stores all of `tasks`, or none when a trace id is taken.
    fn create_all(
        &mut self,
        tasks: Vec<(NewTask, Uuid)>,
        record: &ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<Task>> {
        let mut seen = HashSet::new();
        if let Some((_, taken)) = tasks
            .iter()
            .find(|(_, trace)| self.trace_ids.contains(trace) || !seen.insert(*trace))
        {
            return Err(trace_id_taken(*taken));
        }
        self.trace_ids.extend(seen);
        Ok(tasks
            .into_iter()
            .map(|(task, trace_id)| self.insert_task(task, trace_id, record.clone(), at))
            .collect())
    }

    /// Stores a new task whose trace id the caller has already taken.
    fn insert_task(
        &mut self,
        task: NewTask,
        trace_id: Uuid,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> Task {
        self.last_task_id += 1;
        let task = task.into_task(self.last_task_id, trace_id, record.changed_by.clone(), at);
        self.tasks.insert(task.id, task.clone());
        self.push_history(|id| HistoryEntry {
            id,
            task_id: task.id,
            from_status: None,
            to_status: TaskStatus::Pending,
            changed_by: record.changed_by,
            reason: record.reason,
            metadata: record.metadata,
            changed_at: at,
        });
        task
    }

    fn task(&self, id: TaskId) -> StoreResult<&Task> {
        self.tasks
            .get(&id)
            .ok_or(StoreError::NotFound { entity: "task", id })
    }

    /// The stored task `task` names, while it still runs on the same
    /// droplet and `holds` of it; else a `Conflict`.
    fn still_running(&mut self, task: &Task, holds: impl FnOnce(&Task) -> bool) -> StoreResult<&mut Task> {
        let current = self.tasks.get_mut(&task.id).ok_or(StoreError::NotFound {
            entity: "task",
            id: task.id,
        })?;
        if current.status != TaskStatus::InProgress
            || current.assigned_droplet_id != task.assigned_droplet_id
            || !holds(current)
        {
            return Err(StoreError::Conflict(format!(
                "task {} is {} on attempt {} now, no longer the run this change is about",
                current.id, current.status, current.attempt
            )));
        }
        Ok(current)
    }

    fn droplet_mut(&mut self, id: DropletId) -> StoreResult<&mut Droplet> {
        self.droplets.get_mut(&id).ok_or(StoreError::NotFound {
            entity: "droplet",
            id,
        })
    }

    /// Tasks droplet `id` holds (`assigned` or `in_progress`).
    fn held_by(&self, id: DropletId) -> usize {
        self.tasks
            .values()
            .filter(|t| t.status.occupies_droplet() && t.assigned_droplet_id == Some(id))
            .count()
    }

    /// Creates or re-describes a droplet. Its own registration (`alive`)
    /// also sets its capacity and liveness; the Registry listing it does
    /// not (a new listed droplet is `inactive` until it beats).
    fn upsert_droplet(
        &mut self,
        registration: DropletRegistration,
        at: DateTime<Utc>,
        alive: bool,
    ) -> DropletChange {
        let existing = self.droplets.get(&registration.droplet_id).cloned();
        let described = |old: Droplet| Droplet {
            name: registration.name.clone(),
            steward: registration.steward.clone(),
            endpoint: registration.endpoint.clone(),
            capabilities: registration.capabilities.clone(),
            updated_at: at,
            ..old
        };
        let droplet = match existing.clone() {
            Some(old) if alive => Droplet {
                max_concurrent_tasks: registration.max_concurrent_tasks,
                status: old.status_after_heartbeat(None),
                last_heartbeat: Some(at),
                session_started_at: if registration.resume {
                    old.session_started_at.or(Some(at))
                } else {
                    Some(at)
                },
                ..described(old)
            },
            Some(old) => described(old),
            None => described(Droplet {
                droplet_id: registration.droplet_id,
                name: String::new(),
                steward: None,
                endpoint: String::new(),
                capabilities: Vec::new(),
                status: if alive {
                    DropletStatus::Active
                } else {
                    DropletStatus::Inactive
                },
                max_concurrent_tasks: registration.max_concurrent_tasks,
                manually_deactivated: false,
                last_heartbeat: alive.then_some(at),
                last_assigned_at: None,
                service_id: None,
                registered_at: at,
                updated_at: at,
                session_started_at: alive.then_some(at),
            }),
        };
        self.droplets.insert(droplet.droplet_id, droplet.clone());
        DropletChange {
            droplet,
            previous_status: existing.map(|d| d.status),
        }
    }

    /// Drops task `id` and everything kept of it: its history, its trace id
    /// (free again, as a deleted row frees it in PostgreSQL), its routing
    /// claim and its deadline warning.
    fn delete_task(&mut self, id: TaskId) {
        if let Some(task) = self.tasks.remove(&id) {
            self.trace_ids.remove(&task.trace_id);
        }
        self.history.remove(&id);
        self.leases.remove(&id);
        self.deadline_risks.remove(&id);
        self.forget_member(id);
    }

    fn push_history(&mut self, entry: impl FnOnce(i64) -> HistoryEntry) {
        self.last_history_id += 1;
        let entry = entry(self.last_history_id);
        self.history.entry(entry.task_id).or_default().push(entry);
    }
}

fn recovery_reason(
    state: &State,
    t: &Task,
    query: &RecoveryQuery,
    now: DateTime<Utc>,
) -> Option<RecoveryReason> {
    let droplet = t.assigned_droplet_id.and_then(|id| state.droplets.get(&id));
    RecoveryReason::judge(t, droplet, &query.timeouts(), now)
}

/// A history row that records something without changing the status.
fn note(
    id: i64,
    task_id: TaskId,
    status: TaskStatus,
    record: ChangeRecord,
    at: DateTime<Utc>,
) -> HistoryEntry {
    HistoryEntry {
        id,
        task_id,
        from_status: Some(status),
        to_status: status,
        changed_by: record.changed_by,
        reason: record.reason,
        metadata: record.metadata,
        changed_at: at,
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_task(
        &self,
        task: NewTask,
        trace_id: Uuid,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let mut state = self.lock();
        if !state.trace_ids.insert(trace_id) {
            return Err(trace_id_taken(trace_id));
        }
        Ok(state.insert_task(task, trace_id, record, at))
    }

    async fn create_tasks(
        &self,
        tasks: Vec<(NewTask, Uuid)>,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<Task>> {
        self.lock().create_all(tasks, &record, at)
    }

    async fn create_tasks_once(
        &self,
        key: &IdempotencyKey,
        tasks: Vec<(NewTask, Uuid)>,
        record: ChangeRecord,
        at: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<OnceCreated> {
        let slot = (key.caller.clone(), key.key.clone());
        // One lock for the check and the write: a concurrent request with
        // the same key sees the first one's tasks, never makes its own.
        let mut state = self.lock();
        if let Some(seen) = state.idempotency.get(&slot).filter(|k| k.at >= expired_before) {
            if seen.fingerprint != key.fingerprint {
                return Ok(OnceCreated::KeyReused);
            }
            let tasks = seen.tasks.iter().map(|id| state.task(*id).cloned());
            return tasks.collect::<StoreResult<_>>().map(OnceCreated::Replayed);
        }
        let created = state.create_all(tasks, &record, at)?;
        let recorded = RecordedKey {
            fingerprint: key.fingerprint.clone(),
            tasks: created.iter().map(|t| t.id).collect(),
            at,
        };
        state.idempotency.insert(slot, recorded);
        Ok(OnceCreated::Created(created))
    }

    async fn delete_expired_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut state = self.lock();
        let was = state.idempotency.len();
        state.idempotency.retain(|_, k| k.at >= before);
        Ok((was - state.idempotency.len()) as u64)
    }

    async fn delete_finished_tasks(&self, before: DateTime<Utc>, batch: u32) -> StoreResult<u64> {
        let now = Utc::now();
        let mut state = self.lock();
        let old: Vec<TaskId> = state
            .tasks
            .values()
            .filter(|t| t.completed_at.is_some_and(|done| done < before) && t.is_finished(now))
            .map(|t| t.id)
            .take(batch as usize)
            .collect();
        for id in &old {
            state.delete_task(*id);
        }
        Ok(old.len() as u64)
    }

    async fn get_task(&self, id: TaskId) -> StoreResult<Task> {
        self.lock().task(id).cloned()
    }

    async fn task_history(&self, id: TaskId) -> StoreResult<Vec<HistoryEntry>> {
        let state = self.lock();
        state.task(id)?;
        Ok(state.history.get(&id).cloned().unwrap_or_default())
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<TaskPage> {
        let state = self.lock();
        let mut matching: Vec<&Task> = state.tasks.values().filter(|t| filter.matches(t)).collect();
        matching.sort_by_key(|t| std::cmp::Reverse(TaskKey::of(t)));
        let total = matching.len();
        let limit = filter.limit as usize;
        let (tasks, more_after, more_before): (Vec<&Task>, bool, bool) = match filter.cursor {
            None => {
                let offset = usize::try_from(filter.offset).unwrap_or(usize::MAX);
                let page: Vec<&Task> = matching.into_iter().skip(offset).take(limit).collect();
                let more_after = offset.saturating_add(page.len()) < total;
                (page, more_after, offset > 0 && total > 0)
            }
            Some(PageCursor::After(key)) => {
                let older: Vec<&Task> = matching.into_iter().filter(|t| TaskKey::of(t) < key).collect();
                let more_before = older.len() < total;
                let more_after = older.len() > limit;
                (older.into_iter().take(limit).collect(), more_after, more_before)
            }
            Some(PageCursor::Before(key)) => {
                let newer: Vec<&Task> = matching.into_iter().filter(|t| TaskKey::of(t) > key).collect();
                let more_after = newer.len() < total;
                let skip = newer.len().saturating_sub(limit);
                (newer.into_iter().skip(skip).collect(), more_after, skip > 0)
            }
        };
        Ok(TaskPage {
            total: total as u64,
            tasks: tasks.into_iter().cloned().collect(),
            more_after,
            more_before,
        })
    }

    async fn apply_transition(&self, transition: Transition) -> StoreResult<Task> {
        let mut state = self.lock();
        let current = state.task(transition.task.id)?;
        if current.status != transition.expected_status
            || current.assigned_droplet_id != transition.expected_droplet
            || current.attempt != transition.expected_attempt
        {
            return Err(StoreError::Conflict(format!(
                "task {} is {} now, not {}",
                current.id, current.status, transition.expected_status
            )));
        }
        let task = transition.task.clone();
        if task.status == TaskStatus::Assigned
            && let Some(refused) = state.key_refusal(&task)
        {
            return Err(refused);
        }
        if let (TaskStatus::Assigned, Some(droplet_id)) = (task.status, task.assigned_droplet_id) {
            let held = state.held_by(droplet_id);
            let droplet = state.droplet_mut(droplet_id)?;
            if let Some(reason) = cannot_take(droplet, held) {
                return Err(StoreError::DropletUnavailable { droplet_id, reason });
            }
            droplet.last_assigned_at = Some(task.updated_at);
        }
        state.leases.remove(&task.id);
        state.tasks.insert(task.id, task.clone());
        state.push_history(|id| transition.history_entry(id));
        Ok(task)
    }

    async fn apply_report(&self, report: Report) -> StoreResult<ReportOutcome> {
        let current = self.lock().task(report.task_id)?.clone();
        let Some(next) = current.apply_report(report.droplet, report.attempt, report.update, report.at)
        else {
            return Ok(ReportOutcome::NotApplied {
                current: Some(current),
            });
        };
        let transition = Transition {
            expected_status: current.status,
            expected_droplet: current.assigned_droplet_id,
            expected_attempt: current.attempt,
            task: next,
            record: report.record,
        };
        let task = match self.apply_transition(transition).await {
            Err(StoreError::Conflict(_)) => return Ok(ReportOutcome::NotApplied { current: None }),
            other => other?,
        };
        let droplet_name = self.lock().droplets.get(&report.droplet).map(|d| d.name.clone());
        Ok(ReportOutcome::Applied {
            from: current.status,
            task,
            droplet_name,
        })
    }

    async fn record_cancel_request(&self, task: &Task, record: ChangeRecord) -> StoreResult<Task> {
        let mut state = self.lock();
        let current = state.still_running(task, |current| current.cancel_requested_at.is_none())?;
        let at = task.cancel_requested_at.unwrap_or(task.updated_at);
        current.cancel_requested_at = Some(at);
        current.updated_at = at;
        let saved = current.clone();
        state.push_history(|id| note(id, task.id, TaskStatus::InProgress, record, at));
        Ok(saved)
    }

    async fn record_refused_report(
        &self,
        id: TaskId,
        status: TaskStatus,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        if !state.tasks.contains_key(&id) {
            return Err(StoreError::NotFound { entity: "task", id });
        }
        state.push_history(|history_id| note(history_id, id, status, record, at));
        Ok(())
    }

    async fn claim_pending(&self, query: &RoutableQuery) -> StoreResult<Vec<Task>> {
        let now = Utc::now();
        let mut state = self.lock();
        let leased = |state: &State, id: TaskId| state.leases.get(&id).is_some_and(|until| *until > now);
        let mut pending: Vec<&Task> = state
            .tasks
            .values()
            .filter(|t| query.matches(t) && !leased(&state, t.id) && t.is_due(now) && !state.is_waiting(t.id))
            .filter(|t| state.key_refusal(t).is_none())
            .collect();
        pending.sort_by_key(|t| t.routing_order());
        let claimed: Vec<Task> = pending.into_iter().take(query.limit as usize).cloned().collect();
        let until = now + chrono::Duration::from_std(query.lease).unwrap_or(chrono::Duration::zero());
        for task in &claimed {
            state.leases.insert(task.id, until);
        }
        Ok(claimed)
    }

    async fn release_claims(&self, ids: &[TaskId]) -> StoreResult<()> {
        let mut state = self.lock();
        for id in ids {
            state.leases.remove(id);
        }
        Ok(())
    }

    async fn active_task_counts(&self) -> StoreResult<HashMap<DropletId, u32>> {
        let state = self.lock();
        let mut counts = HashMap::new();
        for task in state.tasks.values().filter(|t| t.status.occupies_droplet()) {
            if let Some(droplet) = task.assigned_droplet_id {
                *counts.entry(droplet).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let now = Utc::now();
        let state = self.lock();
        Ok(state
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Pending && !state.is_waiting(t.id))
            .filter_map(Task::not_before)
            .filter(|at| *at > now)
            .min())
    }

    async fn tasks_to_recover(&self, query: &RecoveryQuery) -> StoreResult<Vec<RecoveryCandidate>> {
        let now = Utc::now();
        let state = self.lock();
        Ok(state
            .tasks
            .range(query.after.saturating_add(1)..)
            .filter_map(|(_, t)| {
                recovery_reason(&state, t, query, now).map(|reason| RecoveryCandidate {
                    task: t.clone(),
                    reason,
                })
            })
            .take(query.limit as usize)
            .collect())
    }

    async fn record_progress(&self, report: ProgressReport) -> StoreResult<ReportOutcome> {
        let mut state = self.lock();
        let Some(current) = state.tasks.get_mut(&report.task_id) else {
            return Ok(ReportOutcome::NotApplied { current: None });
        };
        let holds_it = current.status == TaskStatus::InProgress
            && current.assigned_droplet_id == Some(report.droplet)
            && current.attempt == report.attempt;
        let next = match current.report_progress(report.progress) {
            Ok(next) if holds_it => next,
            _ => {
                return Ok(ReportOutcome::NotApplied {
                    current: Some(current.clone()),
                });
            }
        };
        *current = next.clone();
        let droplet_name = state.droplets.get(&report.droplet).map(|d| d.name.clone());
        Ok(ReportOutcome::Applied {
            from: TaskStatus::InProgress,
            task: next,
            droplet_name,
        })
    }

    async fn flag_deadline_risks(&self, floor: std::time::Duration, limit: u32) -> StoreResult<Vec<Task>> {
        let now = Utc::now();
        let mut state = self.lock();
        let p95 = run_time_p95_by_type(&state, now - chrono::Duration::hours(24));
        let mut due: Vec<&Task> = state
            .tasks
            .values()
            .filter(|t| {
                matches!(
                    t.status,
                    TaskStatus::Pending | TaskStatus::Assigned | TaskStatus::InProgress
                )
            })
            .filter(|t| !state.deadline_risks.contains_key(&t.id))
            .filter(|t| {
                let threshold = floor
                    .as_secs_f64()
                    .max(p95.get(&t.task_type).copied().unwrap_or(0.0));
                t.deadline.is_some_and(|d| seconds(now, d) < threshold)
            })
            .collect();
        due.sort_by_key(|t| (t.deadline, t.id));
        let flagged: Vec<Task> = due.into_iter().take(limit as usize).cloned().collect();
        for task in &flagged {
            state.deadline_risks.insert(task.id, now);
        }
        Ok(flagged)
    }

    async fn count_live_tasks(&self) -> StoreResult<LiveCounts> {
        let state = self.lock();
        let mut counts = LiveCounts::default();
        for task in state.tasks.values() {
            match task.status {
                TaskStatus::Pending => counts.pending += 1,
                status if status.occupies_droplet() => counts.held += 1,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn count_tasks_by_status(&self) -> StoreResult<HashMap<TaskStatus, u64>> {
        let state = self.lock();
        let mut counts = HashMap::new();
        for task in state.tasks.values() {
            *counts.entry(task.status).or_insert(0) += 1;
        }
        Ok(counts)
    }
}

#[async_trait]
impl DropletStore for MemoryStore {
    async fn register_droplet(
        &self,
        registration: DropletRegistration,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange> {
        Ok(self.lock().upsert_droplet(registration, at, true))
    }

    async fn sync_droplet(
        &self,
        entry: DropletRegistration,
        service_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange> {
        let mut state = self.lock();
        let id = entry.droplet_id;
        state.listed_names.insert(id, entry.name.clone());
        let mut change = state.upsert_droplet(entry, at, false);
        if let Some(service_id) = service_id {
            for droplet in state.droplets.values_mut() {
                let owner = droplet.droplet_id == id;
                if owner || droplet.service_id == Some(service_id) {
                    droplet.service_id = owner.then_some(service_id);
                }
            }
            change.droplet.service_id = Some(service_id);
        }
        Ok(change)
    }

    async fn find_droplet_by_service(&self, service: &ServiceRef) -> StoreResult<Option<DropletId>> {
        let state = self.lock();
        let mut found = state.droplets.values().filter(|d| match service {
            ServiceRef::Id(id) => d.service_id == Some(*id),
            ServiceRef::Name(name) => state.listed_names.get(&d.droplet_id) == Some(name),
        });
        // A name two droplets share names neither.
        Ok(match (found.next(), found.next()) {
            (Some(one), None) => Some(one.droplet_id),
            _ => None,
        })
    }

    async fn get_droplet(&self, id: DropletId) -> StoreResult<Droplet> {
        self.lock().droplet_mut(id).map(|d| d.clone())
    }

    async fn list_droplets(&self, filter: &DropletFilter) -> StoreResult<Vec<Droplet>> {
        let state = self.lock();
        Ok(state
            .droplets
            .values()
            .filter(|d| filter.matches(d))
            .cloned()
            .collect())
    }

    async fn record_heartbeat(
        &self,
        id: DropletId,
        report: HeartbeatReport,
        at: DateTime<Utc>,
        sample_every: std::time::Duration,
    ) -> StoreResult<DropletChange> {
        let mut state = self.lock();
        let droplet = state.droplet_mut(id)?;
        let previous_status = droplet.status;
        droplet.status = droplet.status_after_heartbeat(report.status);
        droplet.last_heartbeat = Some(at);
        droplet.updated_at = at;
        let change = DropletChange {
            droplet: droplet.clone(),
            previous_status: Some(previous_status),
        };
        let sampled = state.heartbeat_sampled_at.get(&id).copied();
        if change.droplet.status == previous_status && !sample_due(sampled, at, sample_every) {
            return Ok(change);
        }
        state
            .heartbeat_sampled_at
            .insert(id, sampled.map_or(at, |last| last.max(at)));
        let rows = state.heartbeats.entry(id).or_default();
        if rows.len() == HEARTBEATS_KEPT {
            rows.pop_front();
        }
        rows.push_back(HeartbeatRow {
            status: report.status.unwrap_or(DropletStatus::Active),
            metrics: report.metrics,
            received_at: at,
        });
        Ok(change)
    }

    async fn set_droplet_status(
        &self,
        id: DropletId,
        status: DropletStatus,
        manual: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange> {
        let mut state = self.lock();
        let droplet = state.droplet_mut(id)?;
        let previous_status = droplet.status;
        droplet.status = status;
        droplet.manually_deactivated = manual;
        droplet.updated_at = at;
        Ok(DropletChange {
            droplet: droplet.clone(),
            previous_status: Some(previous_status),
        })
    }

    async fn mark_silent_droplets(&self, timeout: std::time::Duration) -> StoreResult<Vec<DropletChange>> {
        let now = Utc::now();
        let oldest = now - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        let mut state = self.lock();
        let mut changes = Vec::new();
        for droplet in state.droplets.values_mut() {
            let silent = droplet.last_heartbeat.is_none_or(|beat| beat < oldest);
            if droplet.status == DropletStatus::Active && silent {
                droplet.status = DropletStatus::Inactive;
                droplet.updated_at = now;
                changes.push(DropletChange {
                    droplet: droplet.clone(),
                    previous_status: Some(DropletStatus::Active),
                });
            }
        }
        Ok(changes)
    }

    async fn delete_old_heartbeats(&self, age: std::time::Duration, batch: u32) -> StoreResult<u64> {
        let oldest = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        let mut state = self.lock();
        let mut deleted = 0u64;
        for rows in state.heartbeats.values_mut() {
            while deleted < u64::from(batch) && rows.front().is_some_and(|r| r.received_at < oldest) {
                rows.pop_front();
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn count_droplets_by_status(&self) -> StoreResult<HashMap<DropletStatus, u64>> {
        let state = self.lock();
        let mut counts = HashMap::new();
        for droplet in state.droplets.values() {
            *counts.entry(droplet.status).or_insert(0) += 1;
        }
        Ok(counts)
    }
}

/// Percentiles as PostgreSQL's `percentile_cont` computes them: linear
/// interpolation between the closest ranks.
fn percentiles(mut values: Vec<f64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let position = p * (values.len() - 1) as f64;
        let (lower, upper) = (position.floor() as usize, position.ceil() as usize);
        let fraction = position - position.floor();
        Some(values[lower] + (values[upper] - values[lower]) * fraction)
    };
    Percentiles {
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
    }
}

/// The p95 run time (`in_progress` to `completed`) of each task type, over
/// tasks completed since `since`.
fn run_time_p95_by_type(state: &State, since: DateTime<Utc>) -> HashMap<String, f64> {
    let mut runs: HashMap<&str, Vec<f64>> = HashMap::new();
    for task in state.tasks.values().filter(|t| t.status == TaskStatus::Completed) {
        if let (Some(started), Some(done)) = (task.started_at, task.completed_at)
            && done >= since
        {
            runs.entry(&task.task_type)
                .or_default()
                .push(seconds(started, done));
        }
    }
    runs.into_iter()
        .filter_map(|(kind, values)| Some((kind.to_owned(), percentiles(values).p95?)))
        .collect()
}

fn within(time: Option<DateTime<Utc>>, window: TimeWindow) -> bool {
    time.is_some_and(|t| t >= window.since && t < window.until)
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6)
}

fn finished_in(task: &Task, window: TimeWindow) -> bool {
    matches!(task.status, TaskStatus::Completed | TaskStatus::Failed) && within(task.completed_at, window)
}

/// From creation to assignment, for tasks assigned in the window.
/// What recovery and fencing did in `window`, by the task's capability.
fn rescues(state: &State, window: TimeWindow) -> Vec<RescueCounts> {
    let mut by_capability = BTreeMap::new();
    for history in state.history.values().flatten() {
        if let Some(metadata) = history
            .metadata
            .as_ref()
            .filter(|_| within(Some(history.changed_at), window))
        {
            rescue_counts(&mut by_capability, state, history.task_id).count_history(metadata);
        }
    }
    for (id, at) in &state.deadline_risks {
        if within(Some(*at), window) {
            rescue_counts(&mut by_capability, state, *id).deadline_at_risk += 1;
        }
    }
    by_capability.into_values().filter(|c| !c.is_empty()).collect()
}

/// The counts of the capability task `id` requires.
fn rescue_counts<'m>(
    by_capability: &'m mut BTreeMap<Option<String>, RescueCounts>,
    state: &State,
    id: TaskId,
) -> &'m mut RescueCounts {
    let capability = state
        .tasks
        .get(&id)
        .and_then(|t| t.required_capability.as_ref())
        .map(|c| c.as_str().to_owned());
    by_capability
        .entry(capability.clone())
        .or_insert_with(|| RescueCounts {
            capability,
            ..RescueCounts::default()
        })
}

fn waits<'a>(tasks: impl Iterator<Item = &'a Task>, window: TimeWindow) -> Vec<f64> {
    tasks
        .filter(|t| within(t.assigned_at, window))
        .filter_map(|t| Some(seconds(t.created_at, t.assigned_at?)))
        .collect()
}

#[async_trait]
impl AnalyticsStore for MemoryStore {
    async fn throughput(&self, window: TimeWindow) -> StoreResult<Throughput> {
        let state = self.lock();
        Ok(Throughput {
            created: state
                .tasks
                .values()
                .filter(|t| within(Some(t.created_at), window))
                .count() as u64,
            finished: state.tasks.values().filter(|t| finished_in(t, window)).count() as u64,
        })
    }

    async fn task_performance(
        &self,
        window: TimeWindow,
        task_type: Option<String>,
        droplet: Option<DropletId>,
    ) -> StoreResult<TaskPerformance> {
        let state = self.lock();
        let tasks: Vec<&Task> = state
            .tasks
            .values()
            .filter(|t| task_type.as_ref().is_none_or(|tt| &t.task_type == tt))
            .filter(|t| droplet.is_none_or(|d| t.assigned_droplet_id == Some(d)))
            .collect();
        let finished: Vec<&&Task> = tasks.iter().filter(|t| finished_in(t, window)).collect();
        let completed: Vec<&&Task> = finished
            .iter()
            .copied()
            .filter(|t| t.status == TaskStatus::Completed)
            .collect();
        let runs = completed
            .iter()
            .filter_map(|t| Some(seconds(t.started_at?, t.completed_at?)))
            .collect();
        Ok(TaskPerformance {
            finished: finished.len() as u64,
            completed: completed.len() as u64,
            failed: (finished.len() - completed.len()) as u64,
            queue_wait_seconds: percentiles(waits(tasks.iter().copied(), window)),
            run_seconds: percentiles(runs),
        })
    }

    async fn tasks_by_type(&self, window: TimeWindow) -> StoreResult<Vec<TypeBreakdown>> {
        let state = self.lock();
        let mut types: BTreeMap<&str, TypeBreakdown> = BTreeMap::new();
        for task in state
            .tasks
            .values()
            .filter(|t| within(Some(t.created_at), window))
        {
            let entry = types.entry(&task.task_type).or_insert_with(|| TypeBreakdown {
                task_type: task.task_type.clone(),
                total: 0,
                by_status: BTreeMap::new(),
            });
            entry.total += 1;
            *entry.by_status.entry(task.status).or_default() += 1;
        }
        let mut breakdown: Vec<TypeBreakdown> = types.into_values().collect();
        breakdown.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.task_type.cmp(&b.task_type)));
        Ok(breakdown)
    }

    async fn routing_stats(&self, window: TimeWindow) -> StoreResult<RoutingStats> {
        let state = self.lock();
        let mut per_droplet = BTreeMap::new();
        for task in state.tasks.values().filter(|t| within(t.assigned_at, window)) {
            if let Some(droplet) = task.assigned_droplet_id {
                *per_droplet.entry(droplet).or_default() += 1;
            }
        }
        let offered: HashSet<&orchestrator_domain::Capability> = state
            .droplets
            .values()
            .filter(|d| d.status == DropletStatus::Active)
            .flat_map(|d| d.capabilities.iter())
            .collect();
        let mut stranded = BTreeMap::new();
        for task in state.tasks.values().filter(|t| t.status == TaskStatus::Pending) {
            if let Some(capability) = task.required_capability.as_ref().filter(|c| !offered.contains(c)) {
                *stranded.entry(capability.as_str().to_owned()).or_default() += 1;
            }
        }
        Ok(RoutingStats {
            time_to_assign_seconds: percentiles(waits(state.tasks.values(), window)),
            assignments_per_droplet: per_droplet,
            pending_without_capable_droplet: stranded,
            rescues: rescues(&state, window),
        })
    }

    async fn rescues(&self, window: TimeWindow) -> StoreResult<Vec<RescueCounts>> {
        Ok(rescues(&self.lock(), window))
    }

    async fn pending_by_priority(&self) -> StoreResult<BTreeMap<u8, u64>> {
        let state = self.lock();
        let mut depth = BTreeMap::new();
        for task in state.tasks.values().filter(|t| t.status == TaskStatus::Pending) {
            *depth.entry(task.priority.value()).or_default() += 1;
        }
        Ok(depth)
    }
}

fn unknown_schedule(name: &str) -> StoreError {
    StoreError::UnknownName {
        entity: "schedule",
        name: name.to_owned(),
    }
}

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn create_schedule(
        &self,
        schedule: NewSchedule,
        created_by: Option<String>,
        at: DateTime<Utc>,
    ) -> StoreResult<Schedule> {
        let mut state = self.lock();
        if state.schedules.contains_key(&schedule.name) {
            return Err(StoreError::Conflict(format!(
                "a schedule named '{}' exists already",
                schedule.name
            )));
        }
        let stored = Schedule {
            name: schedule.name.clone(),
            cron: schedule.spec.expression().to_owned(),
            timezone: schedule.spec.timezone().to_owned(),
            template: schedule.template,
            overlap: schedule.overlap,
            catch_up: schedule.catch_up,
            paused: false,
            created_by,
            created_at: at,
            updated_at: at,
            last_fire_at: None,
            last_task_id: None,
            fires: 0,
            skips: 0,
        };
        state.schedules.insert(schedule.name, stored.clone());
        Ok(stored)
    }

    async fn get_schedule(&self, name: &str) -> StoreResult<Schedule> {
        let state = self.lock();
        state
            .schedules
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_schedule(name))
    }

    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn update_schedule(
        &self,
        name: &str,
        definition: ScheduleDefinition,
        at: DateTime<Utc>,
    ) -> StoreResult<Schedule> {
        let mut state = self.lock();
        let schedule = state
            .schedules
            .get_mut(name)
            .ok_or_else(|| unknown_schedule(name))?;
        schedule.cron = definition.cron;
        schedule.timezone = definition.timezone;
        schedule.template = definition.template;
        schedule.overlap = definition.overlap;
        schedule.catch_up = definition.catch_up;
        schedule.paused = definition.paused;
        schedule.updated_at = at;
        Ok(schedule.clone())
    }

    async fn delete_schedule(&self, name: &str) -> StoreResult<()> {
        let mut state = self.lock();
        state
            .schedules
            .remove(name)
            .ok_or_else(|| unknown_schedule(name))?;
        state.fires.retain(|(schedule, _)| schedule != name);
        Ok(())
    }

    async fn fire_schedule(&self, fire: Fire) -> StoreResult<Option<Task>> {
        let mut state = self.lock();
        let schedule = state
            .schedules
            .get(&fire.schedule)
            .ok_or_else(|| unknown_schedule(&fire.schedule))?;
        let key = (fire.schedule.clone(), fire.at);
        if schedule.last_fire_at != fire.expected_last_fire || state.fires.contains(&key) {
            return Err(StoreError::Conflict(format!(
                "schedule '{}' has dealt with its fire at {} already",
                fire.schedule, fire.at
            )));
        }
        // As on PostgreSQL: the keys of earlier fire times go, since the
        // last fire time guards them, so the set stays one key a schedule.
        state
            .fires
            .retain(|(schedule, at)| *schedule != fire.schedule || *at >= fire.at);
        let task = match fire.task {
            Some(fired) => {
                if !state.trace_ids.insert(fired.trace_id) {
                    return Err(trace_id_taken(fired.trace_id));
                }
                state.fires.insert(key);
                Some(state.insert_task(fired.task, fired.trace_id, fired.record, fired.created_at))
            }
            None => None,
        };
        let schedule = state
            .schedules
            .get_mut(&fire.schedule)
            .ok_or_else(|| unknown_schedule(&fire.schedule))?;
        schedule.last_fire_at = Some(fire.at);
        match &task {
            Some(task) => {
                schedule.fires += 1;
                schedule.last_task_id = Some(task.id);
            }
            None => schedule.skips += 1,
        }
        Ok(task)
    }
}

#[cfg(test)]
mod analytics_tests {
    use super::percentiles;

    #[test]
    fn percentiles_interpolate_like_percentile_cont() {
        let p = percentiles(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(p.p50, Some(2.5));
        assert!((p.p95.unwrap_or(0.0) - 3.85).abs() < 1e-9);
        assert_eq!(percentiles(vec![7.0]).p99, Some(7.0));
        assert_eq!(percentiles(Vec::new()).p50, None);
    }
}

#[cfg(test)]
mod schedule_tests {
    use orchestrator_domain::{NewSchedule, ScheduleDraft, TaskDraft};
    use orchestrator_ports::{ChangeRecord, Fire, FiredTask, ScheduleStore};
    use uuid::Uuid;

    use super::MemoryStore;

    /// As on PostgreSQL, a fire drops the keys of earlier fire times.
    #[tokio::test]
    async fn a_schedule_keeps_the_key_of_its_last_fire_only() {
        let store = MemoryStore::new();
        let now = chrono::Utc::now();
        let draft = ScheduleDraft {
            name: "tick".into(),
            cron: "* * * * *".into(),
            timezone: None,
            task: TaskDraft {
                task_type: "tick".into(),
                ..TaskDraft::default()
            },
            overlap: None,
            catch_up: None,
        };
        let schedule = NewSchedule::parse(draft.clone(), now).expect("valid");
        store.create_schedule(schedule, None, now).await.expect("created");
        let mut last = None;
        for minute in 1..=5 {
            let at = now + chrono::TimeDelta::minutes(minute);
            let fire = Fire {
                schedule: "tick".into(),
                expected_last_fire: last,
                at,
                task: Some(FiredTask {
                    task: orchestrator_domain::NewTask::parse(draft.task.clone(), at).expect("valid"),
                    trace_id: Uuid::new_v4(),
                    record: ChangeRecord::default(),
                    created_at: at,
                }),
            };
            store.fire_schedule(fire).await.expect("fired");
            last = Some(at);
        }
        assert_eq!(store.lock().fires.len(), 1);
    }
}
