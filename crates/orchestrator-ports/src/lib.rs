#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_core::Stream;
use orchestrator_domain::{
    Capability, DependencyFailure, DomainEvent, Droplet, DropletId, DropletRegistration, DropletStatus,
    HeartbeatReport, HistoryEntry, NewSchedule, NewTask, NewWorkflow, Priority, Progress, RecoveryReason,
    RecoveryTimeouts, Schedule, ServiceRef, Task, TaskDraft, TaskId, TaskStatus, TaskUpdate, ValidationError,
    WorkflowId,
};
use serde_json::Value;
use uuid::Uuid;

/// What went wrong in a store, in domain words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: i64 },
    /// Something addressed by name, such as a schedule, does not exist.
    #[error("{entity} '{name}' not found")]
    UnknownName { entity: &'static str, name: String },
    /// A compare-and-set lost a race: the row is no longer as expected.
    #[error("{0}")]
    Conflict(String),
    /// An assignment was refused because the droplet is full or no longer
    /// active; another droplet may take the task.
    #[error("droplet {droplet_id} cannot take the task: {reason}")]
    DropletUnavailable { droplet_id: DropletId, reason: String },
    /// An assignment was refused because its task's concurrency key has
    /// reached its limit; the task waits, queued, for a slot of the key.
    #[error("concurrency key '{key}' has {running} of {max_running} tasks running")]
    ConcurrencyLimited {
        key: String,
        running: u32,
        max_running: u32,
    },
    /// The store refused a value it cannot hold.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store cannot be reached; the request may be retried later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A schedule's definition as a change writes it whole (`PATCH`, pause
/// and resume); its fires are the store's to count.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDefinition {
    pub cron: String,
    pub timezone: String,
    pub template: TaskDraft,
    pub overlap: orchestrator_domain::Overlap,
    pub catch_up: orchestrator_domain::CatchUp,
    pub paused: bool,
}

/// One fire time of a schedule, dealt with as one change: the schedule's
/// last fire time moves from `expected_last_fire` to `at` (a
/// compare-and-set, so that of replicas dealing with the same fire time
/// one wins) and, unless the fire skips (`task` is `None`), the task is
/// created with its history row and the fire's unique key (the schedule
/// and `at`), all in one commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub schedule: String,
    pub expected_last_fire: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    pub task: Option<FiredTask>,
}

/// The task a fire creates.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredTask {
    pub task: NewTask,
    pub trace_id: Uuid,
    pub record: ChangeRecord,
    /// When it is created (the fire time, or later when caught up).
    pub created_at: DateTime<Utc>,
}

/// Filters of `GET /tasks`. Results are newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub task_type: Option<String>,
    pub priority_min: Option<Priority>,
    pub priority_max: Option<Priority>,
    pub assigned_droplet_id: Option<DropletId>,
    pub required_capability: Option<Capability>,
    /// Part of the title (any case), or the whole trace id.
    pub search: Option<String>,
    pub limit: u32,
    pub offset: u64,
    /// A page that starts next to a task of another page, whatever the
    /// offset: as cheap at the millionth task as at the first.
    pub cursor: Option<PageCursor>,
}

/// Where a page of tasks (newest first) is in the list: its tasks, by
/// `(created_at, id)`, are all after (older than) or before (newer than)
/// the task named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCursor {
    After(TaskKey),
    Before(TaskKey),
}

/// A task's place in the list, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskKey {
    pub created_at: DateTime<Utc>,
    pub id: TaskId,
}

impl TaskKey {
    pub fn of(task: &Task) -> Self {
        TaskKey {
            created_at: task.created_at,
            id: task.id,
        }
    }
}

impl TaskFilter {
    pub fn matches(&self, task: &Task) -> bool {
        self.status.is_none_or(|s| task.status == s)
            && self
                .required_capability
                .as_ref()
                .is_none_or(|c| task.required_capability.as_ref() == Some(c))
            && self.search.as_deref().is_none_or(|text| mentions(task, text))
            && self.task_type.as_ref().is_none_or(|t| &task.task_type == t)
            && self.priority_min.is_none_or(|p| task.priority >= p)
            && self.priority_max.is_none_or(|p| task.priority <= p)
            && self
                .assigned_droplet_id
                .is_none_or(|d| task.assigned_droplet_id == Some(d))
    }
}

/// Whether `text` is part of the task's title (any case) or its trace id.
fn mentions(task: &Task, text: &str) -> bool {
    let text = text.trim();
    task.trace_id.to_string().eq_ignore_ascii_case(text)
        || task.title.to_lowercase().contains(&text.to_lowercase())
}

/// One page of tasks and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub total: u64,
    /// Tasks follow this page (older ones).
    pub more_after: bool,
    /// Tasks precede this page (newer ones).
    pub more_before: bool,
}

/// Decides, within one routing round, where the tasks claimed go.
pub trait RoundPlanner: Send {
    /// The assignments to make of `pending` (in routing order), as
    /// transitions; a task left out stays pending.
    fn plan(&mut self, pending: &[Task]) -> Vec<Transition>;
}

/// What one routing round did.
#[derive(Debug)]
pub struct RoutedRound {
    /// How many pending tasks it claimed.
    pub claimed: usize,
    /// The outcome of each planned assignment, in the plan's order.
    pub outcomes: Vec<StoreResult<Task>>,
}

/// Which pending tasks the router asks for: those needing one of
/// `capabilities` (what droplets with free slots can do), plus those needing
/// none when `include_unconstrained`. Tasks no free droplet could take are
/// left out, so they never hide routable tasks behind them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutableQuery {
    pub capabilities: Vec<orchestrator_domain::Capability>,
    pub include_unconstrained: bool,
    pub limit: u32,
    /// How long the claimed tasks stay hidden from other claims.
    pub lease: std::time::Duration,
}

impl RoutableQuery {
    pub fn matches(&self, task: &Task) -> bool {
        task.status == TaskStatus::Pending
            && match &task.required_capability {
                None => self.include_unconstrained,
                Some(c) => self.capabilities.contains(c),
            }
    }
}

/// Who made a change and why, written to `task_state_history` with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeRecord {
    pub changed_by: Option<String>,
    pub reason: Option<String>,
    pub metadata: Option<Value>,
}

/// A state change to persist: `task` is the task as it is after the change.
/// The store applies it only if the stored task still has
/// `expected_status` and `expected_droplet`, else it is a `Conflict`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub expected_status: TaskStatus,
    pub expected_droplet: Option<DropletId>,
    /// The task's `attempt` when it was read: the change applies only if it
    /// still has it, so that a report read before a requeue and a new
    /// assignment to the same droplet can never land on the new attempt.
    pub expected_attempt: u32,
    pub task: Task,
    pub record: ChangeRecord,
}

impl Transition {
    /// The history row this transition writes.
    pub fn history_entry(&self, id: i64) -> HistoryEntry {
        HistoryEntry {
            id,
            task_id: self.task.id,
            from_status: Some(self.expected_status),
            to_status: self.task.status,
            changed_by: self.record.changed_by.clone(),
            reason: self.record.reason.clone(),
            metadata: self.record.metadata.clone(),
            changed_at: self.task.updated_at,
        }
    }
}

/// A droplet's report on a task it holds, with the conditions it stands
/// on: applied only if `droplet` holds the task (on `attempt`, when
/// named) and the change is one its droplet may make
/// ([`Task::apply_report`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub task_id: TaskId,
    pub droplet: DropletId,
    pub attempt: Option<u32>,
    pub update: TaskUpdate,
    pub record: ChangeRecord,
    pub at: DateTime<Utc>,
}

/// A droplet's progress report on a task it runs, with the conditions it
/// stands on.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressReport {
    pub task_id: TaskId,
    pub droplet: DropletId,
    pub attempt: u32,
    pub progress: Progress,
}

/// What became of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReportOutcome {
    /// Applied with its history row: the task was `from` and is `task`
    /// now, held by the droplet named `droplet_name`.
    Applied {
        from: TaskStatus,
        task: Task,
        droplet_name: Option<String>,
    },
    /// Not applied: nothing changed. `current` is the task as the store
    /// read it, or `None` when it changed between that read and the write.
    NotApplied { current: Option<Task> },
}

/// A client's key for one creation request, with what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key it is: the same key from two callers is two keys.
    pub caller: String,
    pub key: String,
    /// A hash of the request's tasks.
    pub fingerprint: String,
}

/// The outcome of `TaskStore::create_tasks_once`.
#[derive(Debug, Clone, PartialEq)]
pub enum OnceCreated {
    /// The key was new: these tasks were created.
    Created(Vec<Task>),
    /// The key was used before for the same request: the tasks it made.
    Replayed(Vec<Task>),
    /// The key was used before for another request.
    KeyReused,
}

/// Cron schedules and their fires.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule, unpaused and never fired; `Conflict` when
    /// its name is taken.
    async fn create_schedule(
        &self,
        schedule: NewSchedule,
        created_by: Option<String>,
        at: DateTime<Utc>,
    ) -> StoreResult<Schedule>;

    /// `UnknownName` when there is none of that name.
    async fn get_schedule(&self, name: &str) -> StoreResult<Schedule>;

    /// Every schedule, by name.
    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>>;

    /// Writes a schedule's definition as `definition` has it, changed at
    /// `at` (its `updated_at`); its fires are left as they are.
    async fn update_schedule(
        &self,
        name: &str,
        definition: ScheduleDefinition,
        at: DateTime<Utc>,
    ) -> StoreResult<Schedule>;

    /// Deletes a schedule and its fires' keys; the tasks it made stay.
    async fn delete_schedule(&self, name: &str) -> StoreResult<()>;

    /// Deals with one fire time (see [`Fire`]): the task created, if any.
    /// `Conflict` when the schedule's last fire time is no longer
    /// `expected_last_fire` or the fire time has a task already (another
    /// replica dealt with it), `UnknownName` when the schedule is gone.
    async fn fire_schedule(&self, fire: Fire) -> StoreResult<Option<Task>>;
}

/// One task of a stored workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowMember {
    /// Its key within the workflow.
    pub key: String,
    pub task: Task,
    /// The tasks it waits for.
    pub depends_on: Vec<TaskId>,
    pub on_dependency_failure: DependencyFailure,
    /// True while it is held out of routing for its dependencies.
    pub waiting: bool,
}

/// A workflow as stored: its tasks, each after its dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWorkflow {
    pub id: WorkflowId,
    pub name: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub members: Vec<WorkflowMember>,
}

/// What settling a waiting task did.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Its dependencies finished: it was queued, its payload given their
    /// results.
    Released(Task),
    /// A dependency ended badly and its policy is `cancel`: it was
    /// cancelled, its history row naming the dependency.
    Cancelled(Task),
}

/// Workflows: tasks submitted together, some waiting for others.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Stores the workflow and its tasks, each with its history row, in
    /// one commit. A task with no dependency is queued; the others wait,
    /// out of routing, until settled. `trace_ids` has one id per task, in
    /// the workflow's order.
    async fn create_workflow(
        &self,
        workflow: NewWorkflow,
        trace_ids: Vec<Uuid>,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<StoredWorkflow>;

    /// `NotFound` when there is none (or retention deleted all its tasks).
    async fn get_workflow(&self, id: WorkflowId) -> StoreResult<StoredWorkflow>;

    /// The newest `limit` workflows, newest first.
    async fn list_workflows(&self, limit: u32) -> StoreResult<Vec<StoredWorkflow>>;

    /// The workflow a task belongs to, if any.
    async fn workflow_of(&self, task: TaskId) -> StoreResult<Option<WorkflowId>>;

    /// Settles, at `at`, the waiting dependants of the tasks in `ended`
    /// by the domain's [`orchestrator_domain::workflow::readiness`]: each
    /// ready one is released, each to cancel is cancelled (and its own
    /// dependants settled in turn), all in one commit. A waiting task in
    /// `ended` that is no longer pending stops waiting. Settling again
    /// changes nothing.
    async fn settle_dependants(&self, ended: &[TaskId], at: DateTime<Utc>) -> StoreResult<Vec<Settled>>;

    /// Up to `limit` tasks whose settling may be due: finished dependencies
    /// of waiting tasks, and waiting tasks no longer pending. The sweep
    /// settles them, for ends whose settling was cut short.
    async fn unsettled(&self, limit: u32) -> StoreResult<Vec<TaskId>>;
}

/// A key's limit and how many tasks with the key are assigned or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub limit: orchestrator_domain::ConcurrencyLimit,
    pub running: u32,
}

/// Concurrency limits per key. Their enforcement is in `TaskStore`: an
/// assignment beyond a key's limit is refused, and claims leave out the
/// tasks of a key at its limit.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ConcurrencyStore: Send + Sync {
    /// Sets the limit of `key` (made or replaced), changed at `at` by `by`.
    async fn set_concurrency_limit(
        &self,
        key: &str,
        max_running: u32,
        by: Option<String>,
        at: DateTime<Utc>,
    ) -> StoreResult<KeyUsage>;

    /// `UnknownName` when `key` has no limit.
    async fn concurrency_limit(&self, key: &str) -> StoreResult<KeyUsage>;

    /// Every limit, by key.
    async fn concurrency_limits(&self) -> StoreResult<Vec<KeyUsage>>;

    /// Removes the limit of `key`: its tasks run without one. `UnknownName`
    /// when it has none.
    async fn delete_concurrency_limit(&self, key: &str) -> StoreResult<()>;
}

/// Where tasks and their audit trail live.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new `pending` task with its first history row.
    async fn create_task(
        &self,
        task: NewTask,
        trace_id: Uuid,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Task>;

    /// Stores every task of `tasks` (each with its trace id) as `pending`,
    /// with its first history row, in one commit: all of them or, on any
    /// error, none. The tasks come back in the order given.
    async fn create_tasks(
        &self,
        tasks: Vec<(NewTask, Uuid)>,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<Task>>;

    /// As `create_tasks`, once per `key`: the first call with a key creates
    /// the tasks and records the key with them, in the same commit; a later
    /// one with the same key and fingerprint creates nothing and gets the
    /// same tasks (as they are now), one with another fingerprint is
    /// refused. A key recorded before `expired_before` counts as new.
    async fn create_tasks_once(
        &self,
        key: &IdempotencyKey,
        tasks: Vec<(NewTask, Uuid)>,
        record: ChangeRecord,
        at: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<OnceCreated>;

    /// Deletes the idempotency keys recorded before `before`; returns how many.
    async fn delete_expired_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes up to `batch` tasks finished for good ([`Task::is_finished`],
    /// a deadline judged by the store's clock) whose `completed_at` is
    /// before `before`, with their history and whatever else the store
    /// keeps of them; returns how many tasks it deleted. A task another
    /// change holds is left for a later call, never waited for.
    async fn delete_finished_tasks(&self, before: DateTime<Utc>, batch: u32) -> StoreResult<u64>;

    async fn get_task(&self, id: TaskId) -> StoreResult<Task>;

    /// The task's history, oldest first.
    async fn task_history(&self, id: TaskId) -> StoreResult<Vec<HistoryEntry>>;

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<TaskPage>;

    /// Applies a transition as one compare-and-set together with its history
    /// row. An assignment to a droplet that is not active, or that would put
    /// it above its `max_concurrent_tasks`, is `DropletUnavailable`; one of
    /// a task whose concurrency key has no room
    /// ([`orchestrator_domain::ConcurrencyLimit::has_room`], the key's
    /// limit locked and its runs counted in the same commit) is
    /// `ConcurrencyLimited`.
    async fn apply_transition(&self, transition: Transition) -> StoreResult<Task>;

    /// Applies `report` when it stands ([`Task::apply_report`]) as one
    /// compare-and-set with its history row, and answers the task with its
    /// droplet's name; otherwise changes nothing and answers the task as
    /// read, so that the caller needs no read of its own around the write.
    /// An unknown task is `NotFound`.
    async fn apply_report(&self, report: Report) -> StoreResult<ReportOutcome>;

    /// Appends a history row for a report that was refused: the task stays
    /// `status`; `record` says who reported what and why it was refused.
    async fn record_refused_report(
        &self,
        id: TaskId,
        status: TaskStatus,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Records a cancel request: `task` is the running task with its
    /// `cancel_requested_at` set. Applied only while the stored task is
    /// still `in_progress` on `task.assigned_droplet_id` with no request
    /// recorded (else `Conflict`), together with a history row that keeps
    /// the status (`in_progress` to `in_progress`).
    async fn record_cancel_request(&self, task: &Task, record: ChangeRecord) -> StoreResult<Task>;

    /// Claims up to `query.limit` pending tasks the router could place now
    /// (not waiting out a retry backoff, judged by the store's clock), in
    /// routing order ([`Task::routing_order`]: priority, then the earlier
    /// deadline, then age), for `query.lease`: until the
    /// lease ends or the claim is released, no other claim returns them.
    /// Any transition of a task ends its claim.
    async fn claim_pending(&self, query: &RoutableQuery) -> StoreResult<Vec<Task>>;

    /// Ends the claims on tasks the router could not place.
    async fn release_claims(&self, ids: &[TaskId]) -> StoreResult<()>;

    /// One routing round: claims what [`Self::claim_pending`] would, lets
    /// `planner` decide the assignments, and applies them, each a
    /// compare-and-set with its own outcome. A store that can does it all
    /// in one transaction that holds the claimed tasks' row locks instead
    /// of a lease: nothing is written for a task left pending, and a
    /// round cut short (the process dies) leaves nothing hidden. This
    /// default claims with the lease, applies the assignments one by one,
    /// and releases the tasks it did not place.
    // The planner is named `'static` for the mock's sake, which cannot
    // hold a borrowed trait object; the parentheses are the mock's too.
    #[allow(unused_parens)]
    async fn route_round(
        &self,
        query: &RoutableQuery,
        planner: &mut (dyn RoundPlanner + 'static),
    ) -> StoreResult<RoutedRound> {
        let pending = self.claim_pending(query).await?;
        let plans = planner.plan(&pending);
        let mut placed = std::collections::HashSet::new();
        let mut outcomes = Vec::with_capacity(plans.len());
        for transition in plans {
            let id = transition.task.id;
            let outcome = self.apply_transition(transition).await;
            if outcome.is_ok() {
                placed.insert(id);
            }
            outcomes.push(outcome);
        }
        let unplaced: Vec<TaskId> = pending
            .iter()
            .map(|t| t.id)
            .filter(|id| !placed.contains(id))
            .collect();
        if !unplaced.is_empty() {
            // A failed release only delays those tasks until their lease ends.
            let _ = self.release_claims(&unplaced).await;
        }
        Ok(RoutedRound {
            claimed: pending.len(),
            outcomes,
        })
    }

    /// How many tasks each droplet holds (`assigned` or `in_progress`).
    async fn active_task_counts(&self) -> StoreResult<HashMap<DropletId, u32>>;

    /// When the first pending task that is not due yet becomes due
    /// (`Task::not_before`, by the store's clock): the router's next
    /// alarm. `None` when no task waits.
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;

    async fn count_tasks_by_status(&self) -> StoreResult<HashMap<TaskStatus, u64>>;

    /// How many tasks are `pending`, and how many are held by droplets
    /// (`assigned` or `in_progress`): a read bounded by the live work, not
    /// by every task ever kept, for the public `GET /state`.
    async fn count_live_tasks(&self) -> StoreResult<LiveCounts>;

    /// The schema migrations this build has that the store's database does
    /// not have yet; none for a store without a schema.
    async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }

    /// Marks, and returns, up to `limit` unfinished tasks whose deadline is
    /// nearer (judged by the store's clock) than the larger of `floor` and
    /// the p95 run time of their type over the last 24 hours; each task is
    /// returned once in its life.
    async fn flag_deadline_risks(&self, floor: std::time::Duration, limit: u32) -> StoreResult<Vec<Task>>;

    /// Up to `query.limit` tasks recovery must move now, with ids above
    /// `query.after`, in id order, judged by the store's clock, each with
    /// the first reason that applies (see [`RecoveryReason`]): past its
    /// deadline and not finished; held by a droplet that is gone (missing,
    /// `error`, inactive after missing heartbeats, or deactivated by an
    /// admin and silent for `heartbeat_timeout`); assigned before its
    /// droplet's latest registration (a restart); running longer than its
    /// timeout (its own, else `run_timeout`; zero is none) since it started
    /// or last reported progress; assigned longer than `ack_timeout`
    /// without starting; failed with retries left, not asked to stop and
    /// its deadline not passed. Nothing else is returned, so that a pass
    /// never stalls on tasks it cannot move.
    async fn tasks_to_recover(&self, query: &RecoveryQuery) -> StoreResult<Vec<RecoveryCandidate>>;

    /// Records a droplet's progress report in one statement, while the
    /// task is `in_progress` on `report.attempt` of `report.droplet`, and
    /// answers the task with its droplet's name (`Applied`, from
    /// `in_progress`); writes no history row. Otherwise nothing changes
    /// (`NotApplied`), an unknown task included.
    async fn record_progress(&self, report: ProgressReport) -> StoreResult<ReportOutcome>;
}

/// What [`TaskStore::tasks_to_recover`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryQuery {
    pub ack_timeout: std::time::Duration,
    pub heartbeat_timeout: std::time::Duration,
    pub run_timeout: std::time::Duration,
    /// Only tasks with a greater id: a pass walks the candidates in id order.
    pub after: TaskId,
    pub limit: u32,
}

impl RecoveryQuery {
    /// The timeouts the tasks are judged by (`RecoveryReason::judge`).
    pub fn timeouts(&self) -> RecoveryTimeouts {
        RecoveryTimeouts {
            ack: self.ack_timeout,
            heartbeat: self.heartbeat_timeout,
            run: self.run_timeout,
        }
    }
}

/// See [`TaskStore::count_live_tasks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounts {
    pub pending: u64,
    pub held: u64,
}

/// The span of time a metric covers: `[since, until)`, on the store's
/// timestamps (those the orchestrator wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Percentiles of a duration in seconds, interpolated as PostgreSQL's
/// `percentile_cont` does; `None` when nothing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Tasks created, and tasks finished (`completed` or `failed`), in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throughput {
    pub created: u64,
    pub finished: u64,
}

/// How the tasks that finished in a window fared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskPerformance {
    /// Tasks that reached `completed` or `failed` in the window.
    pub finished: u64,
    pub completed: u64,
    pub failed: u64,
    /// From creation to (the last) assignment, for tasks assigned in the window.
    pub queue_wait_seconds: Percentiles,
    /// From `in_progress` to `completed`, for tasks completed in the window.
    pub run_seconds: Percentiles,
}

/// The tasks of one type created in a window, by status now.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeBreakdown {
    pub task_type: String,
    pub total: u64,
    pub by_status: std::collections::BTreeMap<TaskStatus, u64>,
}

/// Routing in a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutingStats {
    /// From creation to (the last) assignment, for tasks assigned in the window.
    pub time_to_assign_seconds: Percentiles,
    /// Tasks each droplet holds or finished that were assigned in the window, by droplet.
    pub assignments_per_droplet: std::collections::BTreeMap<DropletId, u64>,
    /// Pending tasks (now) whose required capability no active droplet offers.
    pub pending_without_capable_droplet: std::collections::BTreeMap<String, u64>,
    /// Work rescued or refused in the window, by required capability
    /// (`None`: tasks that require none), in capability order.
    pub rescues: Vec<RescueCounts>,
}

/// What recovery and fencing did in a window for tasks of one capability.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RescueCounts {
    pub capability: Option<String>,
    /// Tasks taken from a droplet that went silent, restarted, was drained
    /// with requeue or did not start them in time, to run elsewhere
    /// (requeued, or failed and retried).
    pub reassignments: u64,
    /// Of the reassignments, those whose droplet did not start the task
    /// within `ASSIGNMENT_ACK_TIMEOUT`.
    pub ack_timeouts: u64,
    /// Status reports refused as `stale_attempt`.
    pub stale_reports_refused: u64,
    /// Tasks failed because their deadline passed.
    pub deadline_failures: u64,
    /// `task_deadline_at_risk` warnings.
    pub deadline_at_risk: u64,
}

impl RescueCounts {
    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.reassignments
            + self.ack_timeouts
            + self.stale_reports_refused
            + self.deadline_failures
            + self.deadline_at_risk
            == 0
    }

    /// Adds one history row's worth: its `metadata` says what recovery
    /// did (`"recovery"`) or that a report was refused (`"refused"`).
    pub fn count_history(&mut self, metadata: &serde_json::Value) {
        match metadata.get("recovery").and_then(serde_json::Value::as_str) {
            Some("droplet_inactive" | "droplet_restarted" | "droplet_deactivated") => self.reassignments += 1,
            Some("not_started") => {
                self.reassignments += 1;
                self.ack_timeouts += 1;
            }
            Some("deadline_passed") => self.deadline_failures += 1,
            _ => {}
        }
        if metadata.get("refused") == Some(&serde_json::Value::Bool(true)) {
            self.stale_reports_refused += 1;
        }
    }
}

/// Analytics over the stored tasks (spec section 5, R8). Adapters compute
/// them where the data is (aggregates in SQL), not by loading rows.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    async fn throughput(&self, window: TimeWindow) -> StoreResult<Throughput>;

    /// Performance of tasks of `task_type` (all types when `None`), and of
    /// those assigned to `droplet` when given.
    async fn task_performance(
        &self,
        window: TimeWindow,
        task_type: Option<String>,
        droplet: Option<DropletId>,
    ) -> StoreResult<TaskPerformance>;

    /// Tasks created in the window, by type, most numerous first.
    async fn tasks_by_type(&self, window: TimeWindow) -> StoreResult<Vec<TypeBreakdown>>;

    async fn routing_stats(&self, window: TimeWindow) -> StoreResult<RoutingStats>;

    /// The rescues of [`RoutingStats`] alone: a window of them reads only
    /// the history rows of rescues, where the rest of the statistics read
    /// every task assigned in the window.
    async fn rescues(&self, window: TimeWindow) -> StoreResult<Vec<RescueCounts>>;

    /// Pending tasks now, by priority (1 is the most urgent).
    async fn pending_by_priority(&self) -> StoreResult<std::collections::BTreeMap<u8, u64>>;
}

/// A task recovery must move, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryCandidate {
    pub task: Task,
    pub reason: RecoveryReason,
}

/// Filters of `GET /droplets`. Results are ordered by droplet id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DropletFilter {
    pub status: Option<DropletStatus>,
    pub capability: Option<orchestrator_domain::Capability>,
}

impl DropletFilter {
    pub fn matches(&self, droplet: &Droplet) -> bool {
        self.status.is_none_or(|s| droplet.status == s)
            && self.capability.as_ref().is_none_or(|c| droplet.has_capability(c))
    }
}

/// A droplet after a change, with the status it had before.
#[derive(Debug, Clone, PartialEq)]
pub struct DropletChange {
    pub droplet: Droplet,
    /// `None` when the droplet did not exist before.
    pub previous_status: Option<DropletStatus>,
}

/// Where droplets and their heartbeats live.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DropletStore: Send + Sync {
    /// Creates the droplet, or updates name, steward, endpoint, capabilities
    /// and capacity of an existing one. Registering is a sign of life: it
    /// sets `last_heartbeat` and makes the droplet active unless an admin
    /// deactivated it.
    async fn register_droplet(
        &self,
        registration: DropletRegistration,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange>;

    async fn get_droplet(&self, id: DropletId) -> StoreResult<Droplet>;

    async fn list_droplets(&self, filter: &DropletFilter) -> StoreResult<Vec<Droplet>>;

    /// Moves `last_heartbeat` to `at` and sets the status (see
    /// `Droplet::status_after_heartbeat`). The beat is also kept as a
    /// heartbeat sample when it changes the droplet's status, or when the
    /// droplet's last row kept is `sample_every` old or older (every beat
    /// when zero): the rows are samples, `last_heartbeat` is exact. The
    /// decision holds across every process sharing the store.
    async fn record_heartbeat(
        &self,
        id: DropletId,
        report: HeartbeatReport,
        at: DateTime<Utc>,
        sample_every: std::time::Duration,
    ) -> StoreResult<DropletChange>;

    /// Sets the status; `manual` marks an admin's decision that heartbeats do not undo.
    async fn set_droplet_status(
        &self,
        id: DropletId,
        status: DropletStatus,
        manual: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange>;

    async fn count_droplets_by_status(&self) -> StoreResult<HashMap<DropletStatus, u64>>;

    /// Marks `inactive` every active droplet whose last heartbeat is older
    /// than `timeout` by the store's clock, and returns them.
    async fn mark_silent_droplets(&self, timeout: std::time::Duration) -> StoreResult<Vec<DropletChange>>;

    /// Deletes up to `batch` heartbeat samples received more than `age` ago (by
    /// the store's clock); returns how many it deleted.
    async fn delete_old_heartbeats(&self, age: std::time::Duration, batch: u32) -> StoreResult<u64>;

    /// Creates or updates a droplet from the Registry's directory: name,
    /// steward, endpoint and capabilities. Unlike registering, it is no sign
    /// of life: a new droplet starts `inactive` with no heartbeat, and a
    /// known one keeps its status, heartbeat and capacity. `service_id`, the
    /// Registry's id for the service, is kept when given (and taken from any
    /// other droplet that had it); when absent the droplet keeps its own.
    /// The entry's name is kept apart as the name the Registry lists the
    /// droplet under, which the droplet's own registrations never change.
    async fn sync_droplet(
        &self,
        entry: DropletRegistration,
        service_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange>;

    /// The droplet a service of the mesh is: the one with that Registry id,
    /// or the only one the Registry's directory lists under that name (none
    /// when two share it). A name a droplet gave itself when registering
    /// finds nothing: anyone may choose any name.
    async fn find_droplet_by_service(&self, service: &ServiceRef) -> StoreResult<Option<DropletId>>;

    /// Writes heartbeats the store holds back to batch them (PostgreSQL
    /// writes them once a second); called before the process exits.
    async fn flush_heartbeats(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Heartbeats held in memory to be written later, and how many were
    /// given up while the store could not be written.
    fn heartbeat_backlog(&self) -> HeartbeatBacklog {
        HeartbeatBacklog::default()
    }
}

/// See [`DropletStore::heartbeat_backlog`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatBacklog {
    /// Acknowledged heartbeats not yet written.
    pub held: usize,
    /// Heartbeats dropped since start: while the store was down, all but
    /// each droplet's latest. Only their history rows are lost.
    pub dropped: u64,
}

/// What a droplet is told about one of its tasks, by push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskNotice {
    /// The task was assigned to it: run it.
    Assignment,
    /// Its creator or an admin asked it to stop running it.
    CancelRequest,
}

impl TaskNotice {
    pub fn message_type(self) -> &'static str {
        match self {
            TaskNotice::Assignment => "task_assignment",
            TaskNotice::CancelRequest => "task_cancel_requested",
        }
    }
}

/// Why a delivery to a droplet failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// False when trying again cannot help (the droplet has no `/message`
    /// endpoint, or refused the message as invalid).
    pub retryable: bool,
    pub message: String,
}

/// A UDC message the orchestrator sends to a droplet on a caller's behalf
/// (`POST /send`, `POST /broadcast`); the adapter wraps it in an envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub trace_id: Uuid,
    pub message_type: String,
    pub payload: Value,
}

/// What a droplet answered to a message.
#[derive(Debug, Clone, PartialEq)]
pub struct DropletReply {
    /// The HTTP status of its answer.
    pub status: u16,
    /// Its body: JSON when it is JSON, else a string (`Null` when empty).
    pub body: Value,
}

/// Why a message did not get an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("droplet unreachable: {0}")]
    Unreachable(String),
    #[error("droplet did not answer in time: {0}")]
    TimedOut(String),
    /// Its endpoint is one the orchestrator may not call (see
    /// `orchestrator_domain::EndpointPolicy`).
    #[error("droplet endpoint refused: {0}")]
    Refused(String),
    /// It answered `status` with more than the orchestrator reads.
    #[error("droplet reply too large: {message}")]
    ReplyTooLarge { status: u16, message: String },
}

/// How the orchestrator introduces itself to the Registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRegistration {
    pub name: String,
    pub droplet_id: DropletId,
    /// Where the orchestrator is reached, such as `http://orchestrator:8000`.
    pub endpoint: String,
    pub port: u16,
    pub health_endpoint: String,
    pub capabilities: Vec<String>,
    pub version: String,
    pub udc_compliant: bool,
}

/// The Registry's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredService {
    pub service_id: i64,
}

/// A droplet as the Registry's directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub droplet_id: DropletId,
    /// The Registry's id for the service, when the directory gives it.
    pub service_id: Option<i64>,
    pub name: String,
    pub endpoint: String,
    pub capabilities: Vec<String>,
    pub steward: Option<String>,
}

/// The Registry's token-signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The RSA public key, PEM.
    pub public_key_pem: String,
    /// Its key id, when the Registry names one (tokens then carry it as `kid`).
    pub kid: Option<String>,
}

/// Why the Registry could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

/// The Registry (droplet #3): identity and the droplet directory.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RegistryClient: Send + Sync {
    async fn register(&self, me: &ServiceRegistration) -> Result<RegisteredService, RegistryError>;

    async fn signing_key(&self) -> Result<SigningKey, RegistryError>;

    async fn directory(&self) -> Result<Vec<DirectoryEntry>, RegistryError>;
}

/// Delivers work and messages to droplets (API.md, "Work delivery").
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// Sends `notice` about `task` to `droplet`: an envelope whose
    /// `message_type` is the notice's and whose payload is `{"task": …}`.
    async fn deliver(&self, droplet: &Droplet, task: &Task, notice: TaskNotice) -> Result<(), DeliveryError>;

    /// Sends `message` to `droplet`'s `/message` endpoint and returns its
    /// answer, whatever its status.
    async fn send_message(
        &self,
        droplet: &Droplet,
        message: &OutgoingMessage,
    ) -> Result<DropletReply, SendError>;
}

/// Decides which replica runs the periodic jobs: one at a time, with
/// another taking over when the holder dies.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LeaderElection: Send + Sync {
    /// True while this process holds the leadership; tries to take it when free.
    async fn is_leader(&self) -> bool;
}

/// A stream of events from the moment of subscription on.
pub type EventStream = Pin<Box<dyn Stream<Item = DomainEvent> + Send>>;

/// Carries domain events from the use cases to whoever listens (the router's
/// wake-up, WebSocket feeds, metrics). Events are published after commit.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    async fn publish(&self, event: DomainEvent);
    /// The events this process publishes, in the order it publishes them.
    fn subscribe(&self) -> EventStream;
    /// The events of every replica sharing the store, this one's included:
    /// what the live feeds show. A bus that spans one process gives the same
    /// as [`EventBus::subscribe`].
    fn subscribe_all_replicas(&self) -> EventStream {
        self.subscribe()
    }
}

/// Long-running work, as a port so that an adapter's loops (a store's
/// flusher, an event bus's connections) run as named services of the
/// process: listed with the others and stopped with them. The app's
/// `Services` implements it.
pub trait Spawner: Send + Sync {
    /// Runs `work` as the service `name` until it ends or the services stop.
    fn spawn_service(&self, name: String, work: Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
}

/// The time, as a port so that tests can control it.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
