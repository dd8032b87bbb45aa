//! Task use cases: create, list, get with history, update status, cancel.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use orchestrator_domain::{
    Actor, Caller, Candidate, DomainEvent, DropletId, HistoryEntry, NewTask, Permission, Placement, Progress,
    Role, RoutingPolicy, Task, TaskDraft, TaskId, TaskStatus, TaskUpdate, ValidationError, Wait,
};
use orchestrator_ports::{
    ChangeRecord, DropletFilter, IdempotencyKey, OnceCreated, ProgressReport, Report, ReportOutcome,
    StoreError, TaskFilter, TaskKey, Transition,
};
use serde_json::Value;
use uuid::Uuid;

use crate::authz::require;
use crate::{AppError, AppResult, Ports};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// A task with the name of the droplet holding it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub task: Task,
    pub assigned_droplet_name: Option<String>,
}

/// A task with its full audit trail and, while it is pending, why.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDetails {
    pub view: TaskView,
    pub history: Vec<HistoryEntry>,
    pub routing: Option<PendingReason>,
}

/// Why a pending task has not been assigned yet, as of the moment asked.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingReason {
    /// It was submitted to run at `at` (`run_at` or `delay_seconds`).
    Scheduled { at: DateTime<Utc> },
    /// It failed and waits out its retry backoff.
    RetryBackoff { until: DateTime<Utc> },
    /// The `task_router` job is paused (or an emergency stop is in force).
    RouterPaused,
    /// No active droplet offers the capability it requires.
    NoActiveDropletWithCapability { capability: Option<String> },
    /// Droplets offer it, but every one is at its capacity.
    AllCapableDropletsFull {
        capability: Option<String>,
        droplets: usize,
    },
    /// A droplet can take it now: the router is about to assign it.
    Routable,
    /// It waits for these tasks of its workflow to finish.
    WaitingFor {
        workflow_id: orchestrator_domain::WorkflowId,
        task_ids: Vec<TaskId>,
    },
    /// Its concurrency key has `running` of `max_running` tasks assigned or
    /// running: it waits for one of them to end.
    ConcurrencyLimited {
        key: String,
        running: u32,
        max_running: u32,
    },
}

/// One page of `GET /tasks`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskListing {
    pub tasks: Vec<TaskView>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    /// Older tasks follow this page.
    pub more_after: bool,
    /// Newer tasks precede this page.
    pub more_before: bool,
}

impl TaskListing {
    pub fn has_more(&self) -> bool {
        self.more_after
    }

    /// Where the next page (older tasks) starts, when there is one.
    pub fn next(&self) -> Option<TaskKey> {
        self.tasks
            .last()
            .filter(|_| self.more_after)
            .map(|v| TaskKey::of(&v.task))
    }

    /// Where the previous page (newer tasks) ends, when there is one.
    pub fn previous(&self) -> Option<TaskKey> {
        self.tasks
            .first()
            .filter(|_| self.more_before)
            .map(|v| TaskKey::of(&v.task))
    }
}

/// What a report names, for the checks and the history of a refused one.
#[derive(Debug, Clone, Copy)]
struct Reported {
    status: TaskStatus,
    attempt: Option<u32>,
}

fn stale_attempt(task: &Task, why: String) -> AppError {
    AppError::StaleAttempt {
        current: task.status,
        attempt: task.attempt,
        message: format!("{why}; this report was not applied"),
    }
}

/// What `PATCH /tasks/{id}` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub status: TaskStatus,
    pub result: Option<Value>,
    pub error_message: Option<String>,
    /// The assignment the report is about (`attempt`); when given, a report
    /// about any other assignment is refused.
    pub attempt: Option<u32>,
}

#[derive(Clone)]
pub struct TaskService {
    ports: Ports,
    /// Asked whether routing is paused, to explain a pending task.
    router: Option<std::sync::Arc<crate::Router>>,
    /// How long an `Idempotency-Key` counts ([`IDEMPOTENCY_WINDOW`] unless set).
    idempotency_window: std::time::Duration,
    /// Asked what a task of a workflow waits for, to explain it.
    workflows: Option<std::sync::Arc<dyn orchestrator_ports::WorkflowStore>>,
    /// Asked whether a task's concurrency key is at its limit, to explain it.
    limits: Option<std::sync::Arc<dyn orchestrator_ports::ConcurrencyStore>>,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("idempotency_window", &self.idempotency_window)
            .field("workflows", &self.workflows.is_some())
            .field("limits", &self.limits.is_some())
            .finish_non_exhaustive()
    }
}

impl TaskService {
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            router: None,
            idempotency_window: IDEMPOTENCY_WINDOW,
            workflows: None,
            limits: None,
        }
    }

    /// Remembers `Idempotency-Key`s for `window` instead of a day.
    pub fn with_idempotency_window(mut self, window: std::time::Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    fn keys_expired_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.idempotency_window)
            .ok()
            .and_then(|window| now.checked_sub_signed(window))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Lets `get` say when a task waits for its workflow's other tasks.
    pub fn with_workflows(
        mut self,
        workflows: std::sync::Arc<dyn orchestrator_ports::WorkflowStore>,
    ) -> Self {
        self.workflows = Some(workflows);
        self
    }

    /// Lets `get` say when a task waits for a slot of its concurrency key.
    pub fn with_limits(mut self, limits: std::sync::Arc<dyn orchestrator_ports::ConcurrencyStore>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Lets `get` say when a task waits because routing is paused.
    pub fn with_router(mut self, router: std::sync::Arc<crate::Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// Seconds `task` can expect to wait for its first assignment, from the
    /// recent waits of tasks needing its capability (0 without a router, or
    /// before one was seen).
    pub fn estimated_assignment_seconds(&self, task: &Task) -> u32 {
        let capability = task.required_capability.as_ref().map(|c| c.as_str());
        let routing = self
            .router
            .as_ref()
            .map_or(0, |router| router.expected_wait_seconds(capability));
        let now = self.ports.clock.now();
        // Whole seconds, rounded up: a task due in 29.9 s is not due in 29.
        let waiting = task
            .wait(now)
            .map_or(0, |wait| ((wait.ends_at() - now).num_milliseconds() + 999) / 1000);
        routing.saturating_add(u32::try_from(waiting).unwrap_or(u32::MAX))
    }

    pub async fn create(&self, caller: &Caller, draft: TaskDraft) -> AppResult<Task> {
        require(caller, Permission::Write)?;
        let now = self.ports.clock.now();
        let new = NewTask::parse(draft, now)?;
        let task = self
            .ports
            .tasks
            .create_task(new, Uuid::new_v4(), creation_record(caller), now)
            .await?;
        self.ports
            .events
            .publish(DomainEvent::TaskCreated(task.clone()))
            .await;
        Ok(task)
    }

    /// Creates every task of `drafts` in one commit, or none: each is
    /// validated first, and the first invalid one is named by its index.
    /// The tasks come back in the order of `drafts`.
    pub async fn create_batch(&self, caller: &Caller, drafts: Vec<TaskDraft>) -> AppResult<Vec<Task>> {
        require(caller, Permission::Write)?;
        check_batch_size(drafts.len())?;
        let now = self.ports.clock.now();
        let news = parse_drafts(drafts, now, true)?;
        let tasks = self
            .ports
            .tasks
            .create_tasks(news, creation_record(caller), now)
            .await?;
        self.publish_created(&tasks).await;
        Ok(tasks)
    }

    /// Creates the tasks of one request under the caller's `key`, once: the
    /// same caller, key and request within [`IDEMPOTENCY_WINDOW`] gets the
    /// tasks the first one made (as they are now) and creates nothing;
    /// the same key with another request, or on another kind of request,
    /// is refused.
    pub async fn create_once(
        &self,
        caller: &Caller,
        request: CreationRequest,
        drafts: Vec<TaskDraft>,
        key: &str,
    ) -> AppResult<Creation> {
        require(caller, Permission::Write)?;
        check_idempotency_key(key)?;
        let batch = request == CreationRequest::Batch;
        if batch {
            check_batch_size(drafts.len())?;
        }
        let fingerprint = fingerprint(request, &drafts);
        let now = self.ports.clock.now();
        let news = parse_drafts(drafts, now, batch)?;
        let key = IdempotencyKey {
            caller: caller.subject.clone(),
            key: key.to_owned(),
            fingerprint,
        };
        let expired_before = self.keys_expired_before(now);
        let outcome = self
            .ports
            .tasks
            .create_tasks_once(&key, news, creation_record(caller), now, expired_before)
            .await?;
        match outcome {
            OnceCreated::Created(tasks) => {
                self.publish_created(&tasks).await;
                Ok(Creation {
                    tasks,
                    replayed: false,
                })
            }
            OnceCreated::Replayed(tasks) => Ok(Creation {
                tasks,
                replayed: true,
            }),
            OnceCreated::KeyReused => Err(AppError::IdempotencyKeyReused(format!(
                "the Idempotency-Key {:?} was used for another request within the last {} s; \
                 send a new key for a new request",
                key.key,
                self.idempotency_window.as_secs()
            ))),
        }
    }

    /// Deletes the idempotency keys older than [`IDEMPOTENCY_WINDOW`] (the
    /// `idempotency_cleanup` job); returns how many.
    pub async fn forget_expired_keys(&self) -> AppResult<u64> {
        let before = self.keys_expired_before(self.ports.clock.now());
        Ok(self.ports.tasks.delete_expired_idempotency_keys(before).await?)
    }

    async fn publish_created(&self, tasks: &[Task]) {
        for task in tasks {
            self.ports
                .events
                .publish(DomainEvent::TaskCreated(task.clone()))
                .await;
        }
    }

    pub async fn list(&self, caller: &Caller, filter: TaskFilter) -> AppResult<TaskListing> {
        require(caller, Permission::Read)?;
        validate_filter(&filter)?;
        let page = self.ports.tasks.list_tasks(&filter).await?;
        let names = self.droplet_names().await?;
        Ok(TaskListing {
            tasks: page.tasks.into_iter().map(|task| view(task, &names)).collect(),
            total: page.total,
            limit: filter.limit,
            offset: filter.offset,
            more_after: page.more_after,
            more_before: page.more_before,
        })
    }

    pub async fn get(&self, caller: &Caller, id: TaskId) -> AppResult<TaskDetails> {
        require(caller, Permission::Read)?;
        let task = self.ports.tasks.get_task(id).await?;
        let history = self.ports.tasks.task_history(id).await?;
        let routing = match task.status {
            TaskStatus::Pending => Some(self.why_pending(&task).await?),
            _ => None,
        };
        Ok(TaskDetails {
            view: self.view_one(task).await?,
            history,
            routing,
        })
    }

    /// Why `task` (pending) is not assigned yet, with the domain's routing
    /// policy over the droplets as they are now.
    async fn why_pending(&self, task: &Task) -> AppResult<PendingReason> {
        if let Some(workflows) = &self.workflows
            && let Some((workflow_id, task_ids)) =
                crate::workflows::waiting_for(workflows.as_ref(), task.id, self.ports.clock.now()).await?
        {
            return Ok(PendingReason::WaitingFor {
                workflow_id,
                task_ids,
            });
        }
        match task.wait(self.ports.clock.now()) {
            Some(Wait::Scheduled { at }) => return Ok(PendingReason::Scheduled { at }),
            Some(Wait::Backoff { until }) => return Ok(PendingReason::RetryBackoff { until }),
            None => {}
        }
        if self.router.as_ref().is_some_and(|r| r.is_paused()) {
            return Ok(PendingReason::RouterPaused);
        }
        if let Some(reason) = self.key_limited(task).await? {
            return Ok(reason);
        }
        let active = DropletFilter {
            status: Some(orchestrator_domain::DropletStatus::Active),
            ..DropletFilter::default()
        };
        let droplets = self.ports.droplets.list_droplets(&active).await?;
        let counts = self.ports.tasks.active_task_counts().await?;
        let candidates: Vec<Candidate> = droplets
            .iter()
            .map(|d| Candidate::new(d, counts.get(&d.droplet_id).copied().unwrap_or(0)))
            .collect();
        let required = task.required_capability.as_ref();
        let capability = required.map(|c| c.as_str().to_owned());
        let explanation = RoutingPolicy::explain(required, &candidates);
        Ok(match explanation.placement {
            Placement::NoCapableDroplet => PendingReason::NoActiveDropletWithCapability { capability },
            Placement::AllCapableFull => PendingReason::AllCapableDropletsFull {
                capability,
                droplets: explanation.considered.len(),
            },
            Placement::Assign { .. } => PendingReason::Routable,
        })
    }

    /// `ConcurrencyLimited` when `task`'s key is at its limit.
    async fn key_limited(&self, task: &Task) -> AppResult<Option<PendingReason>> {
        let (Some(limits), Some(key)) = (&self.limits, &task.concurrency_key) else {
            return Ok(None);
        };
        let usage = match limits.concurrency_limit(key).await {
            Ok(usage) => usage,
            Err(StoreError::UnknownName { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        Ok(
            (!usage.limit.has_room(usage.running)).then(|| PendingReason::ConcurrencyLimited {
                key: key.clone(),
                running: usage.running,
                max_running: usage.limit.max_running,
            }),
        )
    }

    /// A droplet reports progress on a task it holds (or an admin steps in).
    pub async fn update_status(
        &self,
        caller: &Caller,
        id: TaskId,
        change: StatusChange,
    ) -> AppResult<TaskView> {
        require(caller, Permission::Write)?;
        let read = match self.report_in_one_call(caller, id, &change).await? {
            Ok(view) => return Ok(view),
            Err(read) => read,
        };
        let task = match read {
            Some(task) => task,
            None => self.ports.tasks.get_task(id).await?,
        };
        let report = Reported {
            status: change.status,
            attempt: change.attempt,
        };
        let holds_it = self.check_reporter(caller, &task, report).await?;
        if holds_it && repeats_the_last_report(&task, &change) {
            // The droplet did not see the answer to its report and sent it
            // again: the task is already as it says, so answer it as it is.
            return self.view_one(task).await;
        }
        check_storable(&change)?;
        let update = status_update(&task, change)?;
        let reason = reason_of(&update);
        let task = self.transition(caller, task, update, reason).await?;
        self.view_one(task).await
    }

    /// A droplet's report in one call to the store, which reads the task,
    /// lets the domain judge the report and writes it if it stands
    /// ([`orchestrator_domain::Task::apply_report`]), with no read around
    /// the write. When it does not stand as it is (a repeat, a late report,
    /// a refusal) nothing changed, and the answer is the task as the store
    /// read it (`None`: read it again) for the full checks to explain.
    async fn report_in_one_call(
        &self,
        caller: &Caller,
        id: TaskId,
        change: &StatusChange,
    ) -> AppResult<Result<TaskView, Option<Task>>> {
        let Some(droplet) = caller.droplet_id else {
            return Ok(Err(None));
        };
        // A cancel is the creator's or an admin's to ask for, and a report
        // that cannot be stored gets its error from the full checks.
        let update = match report_update(change.clone()) {
            Some(update) if update != TaskUpdate::Cancel && check_storable(change).is_ok() => update,
            _ => return Ok(Err(None)),
        };
        let reason = reason_of(&update);
        let report = Report {
            task_id: id,
            droplet,
            attempt: change.attempt,
            record: ChangeRecord {
                changed_by: Some(caller.subject.clone()),
                reason,
                metadata: None,
            },
            update,
            at: self.ports.clock.now(),
        };
        match self.ports.tasks.apply_report(report).await? {
            ReportOutcome::Applied {
                from,
                task,
                droplet_name,
            } => {
                self.ports
                    .events
                    .publish(DomainEvent::for_transition(from, task.clone()))
                    .await;
                Ok(Ok(TaskView {
                    task,
                    assigned_droplet_name: droplet_name,
                }))
            }
            ReportOutcome::NotApplied { current } => Ok(Err(current)),
        }
    }

    /// The droplet running task `id` says how far it is: the report is kept
    /// on the task (no history row), restarts the clock of its run timeout
    /// and is published as `task_progress`. Only its holder may report, on
    /// its current attempt.
    pub async fn report_progress(
        &self,
        caller: &Caller,
        id: TaskId,
        attempt: u32,
        percent: Option<i64>,
        message: Option<String>,
    ) -> AppResult<TaskView> {
        require(caller, Permission::Write)?;
        let progress = Progress::parse(percent, message, self.ports.clock.now())?;
        // One call to the store, which records it if it stands; only a
        // report that does not is read about, to say why.
        let current = match caller.droplet_id {
            Some(droplet) => {
                let report = ProgressReport {
                    task_id: id,
                    droplet,
                    attempt,
                    progress: progress.clone(),
                };
                match self.ports.tasks.record_progress(report).await? {
                    ReportOutcome::Applied {
                        task, droplet_name, ..
                    } => {
                        self.ports
                            .events
                            .publish(DomainEvent::TaskProgress(task.clone()))
                            .await;
                        return Ok(TaskView {
                            task,
                            assigned_droplet_name: droplet_name,
                        });
                    }
                    ReportOutcome::NotApplied { current } => current,
                }
            }
            None => None,
        };
        let task = match current {
            Some(task) => task,
            None => self.ports.tasks.get_task(id).await?,
        };
        Err(self.progress_refused(caller, &task, attempt, progress).await)
    }

    /// Why a progress report on `task` was not recorded.
    async fn progress_refused(
        &self,
        caller: &Caller,
        task: &Task,
        attempt: u32,
        progress: Progress,
    ) -> AppError {
        let id = task.id;
        if !task.assigned_droplet_id.is_some_and(|d| caller.is_droplet(d)) {
            return AppError::Forbidden(format!(
                "only the droplet running task {id} may report its progress"
            ));
        }
        if attempt != task.attempt {
            return stale_attempt(
                task,
                format!(
                    "the report is about attempt {attempt}, but task {id} is on attempt {} ({})",
                    task.attempt, task.status
                ),
            );
        }
        if task.report_progress(progress).is_err() {
            return AppError::InvalidTransition {
                current: task.status,
                message: format!(
                    "task {id} is {} and not running: there is no progress to report",
                    task.status
                ),
            };
        }
        // It stood when read: the task changed between the write and the read.
        self.lost_race(id).await
    }

    /// Whether `caller` may report on `task` at all, checked before the
    /// attempt it names, so that only the task's holder (or a previous
    /// holder whose report is late) ever gets a refused report in the
    /// history. True when the caller holds the task now.
    async fn check_reporter(&self, caller: &Caller, task: &Task, report: Reported) -> AppResult<bool> {
        let id = task.id;
        let holds_it = task.assigned_droplet_id.is_some_and(|d| caller.is_droplet(d));
        if !(holds_it || caller.is_admin()) {
            if let Some(droplet) = caller.droplet_id
                && self.was_assigned_to(id, droplet).await?
            {
                // A late report from a droplet the task was taken from must
                // never complete it twice: refuse it, and say so in the history.
                let why = format!(
                    "task {id} was taken from droplet {droplet} and is {} now",
                    task.status
                );
                return Err(self.refuse_stale(caller, task, report, why).await);
            }
            return Err(AppError::Forbidden(format!(
                "only the droplet task {id} is assigned to, or an admin, may update its status"
            )));
        }
        if let Some(reported) = report.attempt.filter(|a| *a != task.attempt) {
            let why = format!(
                "the report is about attempt {reported}, but task {id} is on attempt {} ({})",
                task.attempt, task.status
            );
            return Err(self.refuse_stale(caller, task, report, why).await);
        }
        Ok(holds_it)
    }

    /// Cancels a task that has not started; its creator or an admin may.
    pub async fn cancel(&self, caller: &Caller, id: TaskId) -> AppResult<Task> {
        let task = self.task_of_its_creator(caller, id, "cancel").await?;
        if task.status == TaskStatus::InProgress {
            return Err(AppError::InvalidTransition {
                current: task.status,
                message: format!(
                    "task {id} is running and cannot be cancelled outright; \
                     POST /tasks/{id}/cancel-request asks its droplet to stop it"
                ),
            });
        }
        let reason = Some(format!("cancelled by {}", caller.subject));
        self.transition(caller, task, TaskUpdate::Cancel, reason).await
    }

    /// Asks the droplet running task `id` to stop: records the request in
    /// the task and its history and publishes `task_cancel_requested`
    /// (pushed to the droplet, and on `/ws/tasks`). The droplet then fails
    /// the task (which is not retried) or finishes it anyway. Asking again
    /// changes nothing.
    pub async fn request_cancel(&self, caller: &Caller, id: TaskId) -> AppResult<TaskView> {
        let task = self.task_of_its_creator(caller, id, "cancel").await?;
        let now = self.ports.clock.now();
        let next = task
            .request_cancel(now)
            .map_err(|e| AppError::InvalidTransition {
                current: task.status,
                message: format!("{e} (task {id})"),
            })?;
        let Some(next) = next else {
            return self.view_one(task).await;
        };
        let record = ChangeRecord {
            changed_by: Some(caller.subject.clone()),
            reason: Some(format!("cancel requested by {}", caller.subject)),
            metadata: Some(serde_json::json!({
                "cancel_requested": true,
                "droplet_id": task.assigned_droplet_id,
                "attempt": task.attempt,
            })),
        };
        let saved = match self.ports.tasks.record_cancel_request(&next, record).await {
            Err(StoreError::Conflict(_)) => return Err(self.lost_race(id).await),
            other => other?,
        };
        self.ports
            .events
            .publish(DomainEvent::TaskCancelRequested(saved.clone()))
            .await;
        self.view_one(saved).await
    }

    /// Gives a failed task that will not be retried automatically (its
    /// retries spent, or stopped on request) one more attempt: back to
    /// `pending`, routable at once. Its creator or an admin may; the
    /// history row names who and why.
    pub async fn retry(&self, caller: &Caller, id: TaskId, why: Option<String>) -> AppResult<TaskView> {
        let task = self.task_of_its_creator(caller, id, "retry").await?;
        let why = why.filter(|w| !w.trim().is_empty());
        if let Some(why) = &why {
            check_reason(why)?;
        }
        let record = ChangeRecord {
            changed_by: Some(caller.subject.clone()),
            reason: Some(match &why {
                Some(why) => format!("retried by {}: {why}", caller.subject),
                None => format!("retried by {}", caller.subject),
            }),
            metadata: Some(serde_json::json!({
                "manual_retry": true,
                "retried_by": caller.subject,
                "previous_error": task.error_message,
                "retry_count": task.retry_count,
                "max_retries": task.max_retries,
            })),
        };
        let saved = self
            .transition_recorded(caller, task, TaskUpdate::OperatorRetry, record)
            .await?;
        self.view_one(saved).await
    }

    /// Task `id`, if `caller` may `act` on it (cancel or retry): its creator or an admin.
    async fn task_of_its_creator(&self, caller: &Caller, id: TaskId, act: &str) -> AppResult<Task> {
        require(caller, Permission::Write)?;
        let task = self.ports.tasks.get_task(id).await?;
        if !(caller.is_admin() || is_creator(caller, &task)) {
            return Err(AppError::Forbidden(format!(
                "only the creator of task {id}, or an admin, may {act} it"
            )));
        }
        Ok(task)
    }

    async fn transition(
        &self,
        caller: &Caller,
        task: Task,
        update: TaskUpdate,
        reason: Option<String>,
    ) -> AppResult<Task> {
        let record = ChangeRecord {
            changed_by: Some(caller.subject.clone()),
            reason,
            metadata: None,
        };
        self.transition_recorded(caller, task, update, record).await
    }

    async fn transition_recorded(
        &self,
        caller: &Caller,
        task: Task,
        update: TaskUpdate,
        record: ChangeRecord,
    ) -> AppResult<Task> {
        let now = self.ports.clock.now();
        let next = task
            .apply(update, actor_for(caller, &task), now)
            .map_err(|e| AppError::transition(task.status, e))?;
        let transition = Transition {
            expected_status: task.status,
            expected_attempt: task.attempt,
            expected_droplet: task.assigned_droplet_id,
            task: next,
            record,
        };
        let saved = match self.ports.tasks.apply_transition(transition).await {
            Err(StoreError::Conflict(_)) => return Err(self.lost_race(task.id).await),
            other => other?,
        };
        self.ports
            .events
            .publish(DomainEvent::for_transition(task.status, saved.clone()))
            .await;
        Ok(saved)
    }

    /// Records a refused report in the task's history (its status does not
    /// change) and returns the error to answer with.
    async fn refuse_stale(&self, caller: &Caller, task: &Task, report: Reported, why: String) -> AppError {
        let record = ChangeRecord {
            changed_by: Some(caller.subject.clone()),
            reason: Some(format!("refused report: {why}")),
            metadata: Some(serde_json::json!({
                "refused": true,
                "reported_status": report.status,
                "reported_attempt": report.attempt,
                "attempt": task.attempt,
                "reporter_droplet_id": caller.droplet_id,
            })),
        };
        crate::rescues::Rescue::StaleReportRefused.count(task);
        let at = self.ports.clock.now();
        if let Err(err) = self
            .ports
            .tasks
            .record_refused_report(task.id, task.status, record, at)
            .await
        {
            tracing::warn!(task_id = task.id, error = %err, "could not record a refused report");
        }
        stale_attempt(task, why)
    }

    /// True when the history shows the task was once assigned to `droplet`.
    async fn was_assigned_to(&self, id: TaskId, droplet: DropletId) -> AppResult<bool> {
        let history = self.ports.tasks.task_history(id).await?;
        Ok(history.iter().any(|row| {
            row.to_status == TaskStatus::Assigned
                && row
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("droplet_id"))
                    .and_then(Value::as_i64)
                    == Some(droplet)
        }))
    }

    /// Another change got there first: report the task's status now.
    async fn lost_race(&self, id: TaskId) -> AppError {
        match self.ports.tasks.get_task(id).await {
            Ok(now) => AppError::InvalidTransition {
                current: now.status,
                message: format!("task {id} changed meanwhile and is {} now", now.status),
            },
            Err(err) => err.into(),
        }
    }

    async fn view_one(&self, task: Task) -> AppResult<TaskView> {
        let name = match task.assigned_droplet_id {
            None => None,
            Some(id) => match self.ports.droplets.get_droplet(id).await {
                Ok(droplet) => Some(droplet.name),
                Err(StoreError::NotFound { .. }) => None,
                Err(err) => return Err(err.into()),
            },
        };
        Ok(TaskView {
            task,
            assigned_droplet_name: name,
        })
    }

    async fn droplet_names(&self) -> AppResult<HashMap<DropletId, String>> {
        let droplets = self
            .ports
            .droplets
            .list_droplets(&DropletFilter::default())
            .await?;
        Ok(droplets.into_iter().map(|d| (d.droplet_id, d.name)).collect())
    }
}

fn view(task: Task, names: &HashMap<DropletId, String>) -> TaskView {
    let assigned_droplet_name = task.assigned_droplet_id.and_then(|id| names.get(&id).cloned());
    TaskView {
        task,
        assigned_droplet_name,
    }
}

/// True when `change` asks for what the task already is: the status it has
/// and, for a finished one, the same result or error. (The attempt was
/// checked before: a report naming another attempt never gets here.)
fn repeats_the_last_report(task: &Task, change: &StatusChange) -> bool {
    change.status == task.status
        && match task.status {
            TaskStatus::InProgress => true,
            TaskStatus::Completed => change.result == task.result,
            TaskStatus::Failed => change.error_message == task.error_message,
            _ => false,
        }
}

/// The longest reason a person may give for a retry, in characters.
pub const MAX_REASON_CHARS: usize = 500;

fn check_reason(why: &str) -> Result<(), ValidationError> {
    orchestrator_domain::storable_text("reason", why)?;
    if why.chars().count() > MAX_REASON_CHARS {
        return Err(ValidationError::new(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(())
}

/// How long an `Idempotency-Key` keeps its request's answer.
pub const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The kinds of request that create tasks under an `Idempotency-Key`; a
/// key is never shared by two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationRequest {
    /// `POST /tasks`: one task.
    Task,
    /// `POST /tasks/batch`: 1 to 1,000 tasks, named by index when invalid.
    Batch,
    /// The `create_task` command of `POST /message`: one task.
    Message,
}

impl CreationRequest {
    fn name(self) -> &'static str {
        match self {
            CreationRequest::Task => "POST /tasks",
            CreationRequest::Batch => "POST /tasks/batch",
            CreationRequest::Message => "create_task",
        }
    }
}

/// Tasks made by one request, and whether an earlier request with the same
/// `Idempotency-Key` made them.
#[derive(Debug, Clone, PartialEq)]
pub struct Creation {
    pub tasks: Vec<Task>,
    pub replayed: bool,
}

fn check_idempotency_key(key: &str) -> Result<(), ValidationError> {
    let printable = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !printable {
        return Err(ValidationError::new(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters, such as a UUID"),
        ));
    }
    Ok(())
}

/// A hash of what a request asks for: the same request twice has the same one.
fn fingerprint(request: CreationRequest, drafts: &[TaskDraft]) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(request.name().as_bytes());
    hash.update([0]);
    // Over canonical JSON: a client that serialises its retry again, with
    // the keys of its payload in another order, sends the same request.
    let drafts = serde_json::to_value(drafts).unwrap_or_default();
    hash.update(serde_json::to_vec(&canonical(drafts)).unwrap_or_default());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` with the keys of every object sorted, at every depth.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Parses every draft, naming the first invalid one by its index when `indexed`.
fn parse_drafts(
    drafts: Vec<TaskDraft>,
    now: DateTime<Utc>,
    indexed: bool,
) -> Result<Vec<(NewTask, Uuid)>, ValidationError> {
    drafts
        .into_iter()
        .enumerate()
        .map(|(i, draft)| {
            NewTask::parse(draft, now)
                .map(|new| (new, Uuid::new_v4()))
                .map_err(|e| match indexed {
                    true => ValidationError::new(format!("tasks[{i}].{}", e.field), e.message),
                    false => e,
                })
        })
        .collect()
}

/// The most tasks one `create_batch` takes.
pub const MAX_BATCH_TASKS: usize = 1000;

fn check_batch_size(size: usize) -> Result<(), ValidationError> {
    match size {
        0 => Err(ValidationError::new("tasks", "give at least one task")),
        n if n > MAX_BATCH_TASKS => Err(ValidationError::new(
            "tasks",
            format!("at most {MAX_BATCH_TASKS} tasks go in one batch; this one has {n}"),
        )),
        _ => Ok(()),
    }
}

fn creation_record(caller: &Caller) -> ChangeRecord {
    ChangeRecord {
        changed_by: Some(caller.subject.clone()),
        reason: Some("task created".into()),
        metadata: None,
    }
}

fn is_creator(caller: &Caller, task: &Task) -> bool {
    task.created_by.as_deref() == Some(caller.subject.as_str())
}

/// The roles `caller` holds towards `task`.
fn actor_for(caller: &Caller, task: &Task) -> Actor {
    let mut actor = Actor::default();
    if caller.is_admin() {
        actor = actor.with(Role::Admin);
    }
    if is_creator(caller, task) {
        actor = actor.with(Role::Creator);
    }
    if task.assigned_droplet_id.is_some_and(|d| caller.is_droplet(d)) {
        actor = actor.with(Role::AssignedDroplet);
    }
    actor
}

fn status_update(task: &Task, change: StatusChange) -> AppResult<TaskUpdate> {
    let status = change.status;
    report_update(change).ok_or_else(|| AppError::InvalidTransition {
        current: task.status,
        message: format!(
            "only the orchestrator moves a task to {status} (the task is {})",
            task.status
        ),
    })
}

/// The change a status report asks for; `None` for a status only the
/// orchestrator sets.
fn report_update(change: StatusChange) -> Option<TaskUpdate> {
    Some(match change.status {
        TaskStatus::InProgress => TaskUpdate::Start,
        TaskStatus::Completed => TaskUpdate::Complete {
            result: change.result,
        },
        TaskStatus::Failed => TaskUpdate::Fail {
            error_message: change.error_message,
        },
        TaskStatus::Cancelled => TaskUpdate::Cancel,
        TaskStatus::Pending | TaskStatus::Assigned => return None,
    })
}

/// The reason a history row gives for `update`: a failure's message.
fn reason_of(update: &TaskUpdate) -> Option<String> {
    match update {
        TaskUpdate::Fail { error_message } => error_message.clone(),
        _ => None,
    }
}

fn check_storable(change: &StatusChange) -> AppResult<()> {
    if let Some(result) = &change.result {
        orchestrator_domain::storable_json("result", result)?;
    }
    if let Some(message) = &change.error_message {
        orchestrator_domain::storable_text("error_message", message)?;
    }
    Ok(())
}

fn validate_filter(filter: &TaskFilter) -> AppResult<()> {
    if !(1..=MAX_PAGE_SIZE).contains(&filter.limit) {
        return Err(ValidationError::new(
            "limit",
            format!(
                "limit must be between 1 and {MAX_PAGE_SIZE}, got {}",
                filter.limit
            ),
        )
        .into());
    }
    if filter.cursor.is_some() && filter.offset > 0 {
        return Err(ValidationError::new(
            "offset",
            "offset cannot be combined with after or before: a cursor says where the page starts",
        )
        .into());
    }
    if let (Some(min), Some(max)) = (filter.priority_min, filter.priority_max)
        && min > max
    {
        return Err(ValidationError::new(
            "priority_min",
            "priority_min must not be greater than priority_max",
        )
        .into());
    }
    Ok(())
}

/// When a task was cancelled (its `completed_at`), for the cancel response.
pub fn cancelled_at(task: &Task) -> Option<DateTime<Utc>> {
    (task.status == TaskStatus::Cancelled)
        .then_some(task.completed_at)
        .flatten()
}
