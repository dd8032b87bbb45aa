//! Tasks: what a client submits, what the orchestrator tracks, and the audit
//! trail of every state change.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{bounded_text, storable_json, storable_text};
use crate::{Actor, Capability, DropletId, Priority, TransitionError, ValidationError};

pub type TaskId = i64;

/// Longest `task_type`, `title` and `required_capability` the schema holds.
pub const MAX_TASK_TYPE_CHARS: usize = 50;
pub const MAX_TITLE_CHARS: usize = 255;
/// Retries a client may ask for; more is a mistake, not a policy.
pub const MAX_RETRIES_LIMIT: u32 = 100;
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Longest run a client may ask for, in seconds (30 days).
pub const MAX_TIMEOUT_SECONDS: u32 = 30 * 24 * 3600;
/// Furthest ahead a task may be scheduled (`run_at`, `delay_seconds`), in
/// seconds (366 days): further is a mistake, or work for a schedule.
pub const MAX_DELAY_SECONDS: i64 = 366 * 24 * 3600;
/// Longest progress message a droplet may report.
pub const MAX_PROGRESS_MESSAGE_CHARS: usize = 1000;

/// Where a task is in its life. See [`crate::state_machine`] for the moves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Assigned,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Assigned,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Assigned => "assigned",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// A task in this status occupies a slot of its droplet.
    pub fn occupies_droplet(self) -> bool {
        matches!(self, TaskStatus::Assigned | TaskStatus::InProgress)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!(
                        "unknown status '{s}'; expected one of pending, assigned, in_progress, completed, failed, cancelled"
                    ),
                )
            })
    }
}

/// A task as the orchestrator tracks it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub trace_id: Uuid,
    pub task_type: String,
    pub title: String,
    pub description: Option<String>,
    pub payload: Value,
    pub required_capability: Option<Capability>,
    /// The external id of the droplet holding the task, if any.
    pub assigned_droplet_id: Option<DropletId>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub created_at: DateTime<Utc>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error_message: Option<String>,
    pub retry_count: u32,
    pub max_retries: u32,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// A retried task is not routed before this time (its backoff).
    pub retry_after: Option<DateTime<Utc>>,
    /// How many times it has been assigned; the current assignment's number.
    /// A droplet's report may name it, so that a report about an earlier
    /// assignment is refused.
    #[serde(default)]
    pub attempt: u32,
    /// When its creator or an admin asked the droplet running it to stop
    /// (`POST /tasks/{id}/cancel-request`). A task asked to stop is never
    /// retried.
    #[serde(default)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// How long a run may go without progress before it is failed, in
    /// seconds; `0` for no limit, `None` for the server's `TASK_RUN_TIMEOUT`.
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// The latest progress its droplet reported on the current run.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// When it was submitted to run: it is not routed before then. `None`
    /// for at once.
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// Times it was taken back from a droplet that did not start it, since
    /// it last started or was retried.
    #[serde(default)]
    pub requeues: u32,
    /// At most the key's limit of tasks with this key are assigned or
    /// running at once ([`crate::concurrency`]).
    #[serde(default)]
    pub concurrency_key: Option<String>,
}

/// What a droplet last said of a run it is making.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Percent done, 0 to 100, when the droplet says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was reported: the run's clock starts again from here.
    pub at: DateTime<Utc>,
}

impl Progress {
    /// Checks a report's fields: a percentage of 0 to 100 and a storable
    /// message of bounded length.
    pub fn parse(
        percent: Option<i64>,
        message: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let percent = percent
            .map(|p| {
                u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                    ValidationError::new("progress", format!("progress must be between 0 and 100, got {p}"))
                })
            })
            .transpose()?;
        let message = match message {
            Some(text) => Some(bounded_text("message", &text, MAX_PROGRESS_MESSAGE_CHARS)?),
            None => None,
        };
        Ok(Progress { percent, message, at })
    }
}

/// A change a caller or the system asks of a task; each has one target status.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskUpdate {
    Assign {
        droplet_id: DropletId,
    },
    Start,
    Complete {
        result: Option<Value>,
    },
    Fail {
        error_message: Option<String>,
    },
    Cancel,
    /// Back to `pending` from `assigned`, when its droplet cannot run it.
    Requeue,
    /// Back to `pending` from `failed`, spending one retry; the router
    /// leaves it alone until `retry_after` (the backoff).
    Retry {
        retry_after: DateTime<Utc>,
    },
    /// Back to `pending` from `failed` at a person's request, once the
    /// task will not be retried automatically (its budget spent, or it was
    /// stopped on request): one more attempt, routable at once. The budget
    /// is not renewed, so if it fails again it stays failed.
    OperatorRetry,
}

impl TaskUpdate {
    pub fn target(&self) -> TaskStatus {
        match self {
            TaskUpdate::Assign { .. } => TaskStatus::Assigned,
            TaskUpdate::Start => TaskStatus::InProgress,
            TaskUpdate::Complete { .. } => TaskStatus::Completed,
            TaskUpdate::Fail { .. } => TaskStatus::Failed,
            TaskUpdate::Cancel => TaskStatus::Cancelled,
            TaskUpdate::Requeue | TaskUpdate::Retry { .. } | TaskUpdate::OperatorRetry => TaskStatus::Pending,
        }
    }
}

/// Why a pending task may not be routed yet, whatever the droplets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Submitted to run at `at` (`run_at` or `delay_seconds`).
    Scheduled { at: DateTime<Utc> },
    /// It failed and waits out its retry backoff until `until`.
    Backoff { until: DateTime<Utc> },
}

impl Wait {
    /// When the wait ends.
    pub fn ends_at(self) -> DateTime<Utc> {
        match self {
            Wait::Scheduled { at } => at,
            Wait::Backoff { until } => until,
        }
    }
}

impl Task {
    /// The earliest time the router may take it: its `run_at` and the end
    /// of its retry backoff, whichever is later. `None` when neither is set.
    pub fn not_before(&self) -> Option<DateTime<Utc>> {
        self.run_at.max(self.retry_after)
    }

    /// Whether the router may take it at `now` (were it pending).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.not_before().is_none_or(|at| at <= now)
    }

    /// What it waits for at `now` before it may be routed, if anything;
    /// the later of the two when both apply.
    pub fn wait(&self, now: DateTime<Utc>) -> Option<Wait> {
        let scheduled = self
            .run_at
            .filter(|at| *at > now)
            .map(|at| Wait::Scheduled { at });
        let backoff = self
            .retry_after
            .filter(|until| *until > now)
            .map(|until| Wait::Backoff { until });
        match (scheduled, backoff) {
            (Some(s), Some(b)) => Some(if s.ends_at() >= b.ends_at() { s } else { b }),
            (s, b) => s.or(b),
        }
    }

    /// The order the router takes pending tasks in: priority, then the
    /// earlier deadline (a task without one comes after those with one),
    /// then age, then id.
    pub fn routing_order(&self) -> (Priority, bool, Option<DateTime<Utc>>, DateTime<Utc>, TaskId) {
        (
            self.priority,
            self.deadline.is_none(),
            self.deadline,
            self.created_at,
            self.id,
        )
    }

    /// The task after a report of `update` by `droplet` at time `at`, when
    /// the report applies as the task stands: the droplet holds it, on
    /// `attempt` when the report names one, and the transition table lets
    /// a task's droplet make the change. `None` when it does not; what to
    /// answer then (a repeated report, a late one, a refusal) is the
    /// caller's to work out from the task.
    pub fn apply_report(
        &self,
        droplet: DropletId,
        attempt: Option<u32>,
        update: TaskUpdate,
        at: DateTime<Utc>,
    ) -> Option<Task> {
        if self.assigned_droplet_id != Some(droplet) || attempt.is_some_and(|a| a != self.attempt) {
            return None;
        }
        self.apply(update, Actor::from_roles(&[crate::Role::AssignedDroplet]), at)
            .ok()
    }

    /// Checks the transition table for `actor` and returns the task as it is
    /// after `update` at time `at`. The caller persists it with a
    /// compare-and-set on the current status.
    pub fn apply(
        &self,
        update: TaskUpdate,
        actor: Actor,
        at: DateTime<Utc>,
    ) -> Result<Task, TransitionError> {
        self.status.transition(update.target(), actor)?;
        if matches!(update, TaskUpdate::Retry { .. }) && !self.can_retry() {
            return Err(TransitionError::RetriesExhausted {
                retry_count: self.retry_count,
                max_retries: self.max_retries,
            });
        }
        if matches!(update, TaskUpdate::OperatorRetry) && self.can_retry() {
            return Err(TransitionError::RetriesLeft {
                retry_count: self.retry_count,
                max_retries: self.max_retries,
            });
        }
        let mut next = self.clone();
        next.status = update.target();
        next.updated_at = at;
        match update {
            TaskUpdate::Assign { droplet_id } => {
                next.assigned_droplet_id = Some(droplet_id);
                next.assigned_at = Some(at);
                next.retry_after = None;
                next.attempt = next.attempt.saturating_add(1);
                next.progress = None;
            }
            TaskUpdate::Start => next.started_at = Some(at),
            TaskUpdate::Complete { result } => {
                next.result = result;
                next.error_message = None;
                next.completed_at = Some(at);
            }
            TaskUpdate::Fail { error_message } => {
                next.error_message = error_message;
                next.completed_at = Some(at);
            }
            TaskUpdate::Cancel => next.completed_at = Some(at),
            TaskUpdate::Requeue => {
                next.release();
                next.requeues = next.requeues.saturating_add(1);
            }
            TaskUpdate::Retry { retry_after } => {
                next.release();
                next.requeues = 0;
                next.retry_count += 1;
                next.completed_at = None;
                next.retry_after = Some(retry_after);
            }
            TaskUpdate::OperatorRetry => {
                next.release();
                next.requeues = 0;
                next.completed_at = None;
                next.retry_after = None;
                next.error_message = None;
                next.result = None;
                next.cancel_requested_at = None;
            }
        }
        Ok(next)
    }

    fn release(&mut self) {
        self.assigned_droplet_id = None;
        self.assigned_at = None;
        self.started_at = None;
        self.progress = None;
    }

    /// The task with `progress` recorded: only a running task takes it. It
    /// changes no status and writes no history row; it restarts the clock
    /// of the run's timeout.
    pub fn report_progress(&self, progress: Progress) -> Result<Task, TransitionError> {
        if self.status != TaskStatus::InProgress {
            return Err(TransitionError::NoSuchTransition {
                from: self.status,
                to: TaskStatus::InProgress,
            });
        }
        let mut next = self.clone();
        next.updated_at = progress.at;
        next.progress = Some(progress);
        Ok(next)
    }

    /// The run's timeout: its own, else `default`; `None` when it has none.
    pub fn run_timeout(&self, default: std::time::Duration) -> Option<std::time::Duration> {
        let timeout = self
            .timeout_seconds
            .map_or(default, |s| std::time::Duration::from_secs(u64::from(s)));
        (!timeout.is_zero()).then_some(timeout)
    }

    /// When the current run was last heard of: its start or its latest progress.
    pub fn last_sign_of_life(&self) -> Option<DateTime<Utc>> {
        let progressed = self.progress.as_ref().map(|p| p.at);
        self.started_at.max(progressed)
    }

    /// Whether the run has gone longer than its timeout without progress at `now`.
    pub fn run_timed_out(&self, default: std::time::Duration, now: DateTime<Utc>) -> bool {
        let (Some(timeout), Some(since)) = (self.run_timeout(default), self.last_sign_of_life()) else {
            return false;
        };
        self.status == TaskStatus::InProgress
            && chrono::Duration::from_std(timeout).is_ok_and(|timeout| since + timeout < now)
    }

    /// A failed task may go back to `pending` while its retry budget lasts.
    pub fn can_retry(&self) -> bool {
        self.status == TaskStatus::Failed
            && self.retry_count < self.max_retries
            && self.cancel_requested_at.is_none()
    }

    /// Finished for good at `now`: [`Self::is_final`], or failed with its
    /// deadline passed, which recovery never retries. Only a person's retry
    /// brings such a task back; retention deletes it once it is old.
    pub fn is_finished(&self, now: DateTime<Utc>) -> bool {
        self.is_final() || (self.status == TaskStatus::Failed && self.deadline.is_some_and(|d| d < now))
    }

    /// The task with a cancel request recorded at `at`: only a running task
    /// takes one (one not started yet is cancelled outright, a finished one
    /// has nothing to stop). `Ok(None)` when one was already recorded.
    pub fn request_cancel(&self, at: DateTime<Utc>) -> Result<Option<Task>, CancelRequestError> {
        match self.status {
            TaskStatus::InProgress if self.cancel_requested_at.is_some() => Ok(None),
            TaskStatus::InProgress => {
                let mut next = self.clone();
                next.cancel_requested_at = Some(at);
                next.updated_at = at;
                Ok(Some(next))
            }
            TaskStatus::Pending | TaskStatus::Assigned => Err(CancelRequestError::NotStarted(self.status)),
            status => Err(CancelRequestError::Finished(status)),
        }
    }

    /// Nothing will ever move this task again.
    pub fn is_final(&self) -> bool {
        match self.status {
            TaskStatus::Completed | TaskStatus::Cancelled => true,
            TaskStatus::Failed => !self.can_retry(),
            _ => false,
        }
    }
}

/// Why a cancel request cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRequestError {
    #[error("the task is {0} and not running yet: DELETE cancels it at once")]
    NotStarted(TaskStatus),
    #[error("the task is {0}: there is nothing left to stop")]
    Finished(TaskStatus),
}

/// A task submission as a client sends it, before validation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDraft {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 50))]
    pub task_type: String,
    /// The task's title; `task_type` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    pub required_capability: Option<String>,
    /// A number from 1 to 10, or a word of the mesh's guide (see
    /// [`crate::priority::PRIORITY_WORDS`]).
    #[serde(
        default,
        deserialize_with = "crate::priority::deserialize_level",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::priority::level_schema))]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub max_retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// When to run it: it waits `pending` (reason `scheduled`) and is not
    /// routed before then. A time past or now runs it at once; at most
    /// 366 days ahead, and before its `deadline`. Not with `delay_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// As `run_at`, counted in seconds from its submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 31622400))]
    pub delay_seconds: Option<i64>,
    /// Seconds a run may go without progress before it is failed (and
    /// retried by its budget); `0` for no limit. The server's
    /// `TASK_RUN_TIMEOUT` (3600 by default) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2592000))]
    pub timeout_seconds: Option<i64>,
    /// The task's data, a JSON object; `data` is read for it too, as the
    /// mesh's integration guide writes it.
    #[serde(default, alias = "data", skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Tasks sharing a key run at most the key's limit at once
    /// (`PUT /concurrency-limits/{key}`); no limit set, no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    pub concurrency_key: Option<String>,
}

/// A validated task submission: every field is within the schema's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub task_type: String,
    pub title: String,
    pub description: Option<String>,
    pub payload: Value,
    pub required_capability: Option<Capability>,
    pub priority: Priority,
    pub max_retries: u32,
    pub deadline: Option<DateTime<Utc>>,
    /// `None`: the server's default.
    pub timeout_seconds: Option<u32>,
    /// Not routed before this time; `None` for at once.
    pub run_at: Option<DateTime<Utc>>,
    pub concurrency_key: Option<String>,
}

impl NewTask {
    /// Validates a draft; `now` is when it is submitted (a deadline must be later).
    pub fn parse(draft: TaskDraft, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        if let Some(description) = &draft.description {
            storable_text("description", description)?;
        }
        let payload = match draft.payload {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(obj @ Value::Object(_)) => obj,
            Some(_) => return Err(ValidationError::new("payload", "payload must be a JSON object")),
        };
        storable_json("payload", &payload)?;
        if draft.deadline.is_some_and(|deadline| deadline <= now) {
            return Err(ValidationError::new("deadline", "deadline must be in the future"));
        }
        let run_at = parse_run_at(draft.run_at, draft.delay_seconds, now, draft.deadline)?;
        Ok(NewTask {
            task_type: bounded_text("task_type", &draft.task_type, MAX_TASK_TYPE_CHARS)?,
            title: bounded_text(
                "title",
                draft.title.as_deref().unwrap_or(&draft.task_type),
                MAX_TITLE_CHARS,
            )?,
            description: draft.description,
            payload,
            required_capability: draft
                .required_capability
                .as_deref()
                .map(|c| {
                    Capability::new(c).map_err(|e| ValidationError::new("required_capability", e.message))
                })
                .transpose()?,
            priority: draft.priority.map(Priority::new).transpose()?.unwrap_or_default(),
            max_retries: parse_max_retries(draft.max_retries)?,
            deadline: draft.deadline,
            timeout_seconds: parse_timeout(draft.timeout_seconds)?,
            run_at,
            concurrency_key: draft
                .concurrency_key
                .as_deref()
                .map(|key| crate::concurrency::parse_key("concurrency_key", key))
                .transpose()?,
        })
    }

    /// The task as first stored: `pending`, nothing assigned, no retries spent.
    pub fn into_task(
        self,
        id: TaskId,
        trace_id: Uuid,
        created_by: Option<String>,
        at: DateTime<Utc>,
    ) -> Task {
        Task {
            id,
            trace_id,
            task_type: self.task_type,
            title: self.title,
            description: self.description,
            payload: self.payload,
            required_capability: self.required_capability,
            assigned_droplet_id: None,
            status: TaskStatus::Pending,
            priority: self.priority,
            created_at: at,
            assigned_at: None,
            started_at: None,
            completed_at: None,
            deadline: self.deadline,
            result: None,
            error_message: None,
            retry_count: 0,
            max_retries: self.max_retries,
            created_by,
            updated_at: at,
            retry_after: None,
            attempt: 0,
            cancel_requested_at: None,
            timeout_seconds: self.timeout_seconds,
            progress: None,
            requeues: 0,
            run_at: self.run_at,
            concurrency_key: self.concurrency_key,
        }
    }
}

/// When a submission asks to run: `run_at`, or `delay_seconds` from `now`
/// (one of the two at most), no further than [`MAX_DELAY_SECONDS`] and
/// before the deadline. A time already come runs at once (`None`).
fn parse_run_at(
    run_at: Option<DateTime<Utc>>,
    delay_seconds: Option<i64>,
    now: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, ValidationError> {
    let at = match (run_at, delay_seconds) {
        (Some(_), Some(_)) => {
            return Err(ValidationError::new(
                "run_at",
                "give run_at or delay_seconds, not both",
            ));
        }
        (None, Some(delay)) if !(0..=MAX_DELAY_SECONDS).contains(&delay) => {
            return Err(ValidationError::new(
                "delay_seconds",
                format!("delay_seconds must be between 0 and {MAX_DELAY_SECONDS}, got {delay}"),
            ));
        }
        (None, Some(delay)) => now + chrono::TimeDelta::seconds(delay),
        (Some(at), None) => at,
        (None, None) => return Ok(None),
    };
    if at - now > chrono::TimeDelta::seconds(MAX_DELAY_SECONDS) {
        return Err(ValidationError::new(
            "run_at",
            format!("run_at must be at most {MAX_DELAY_SECONDS} seconds (366 days) ahead"),
        ));
    }
    if deadline.is_some_and(|deadline| deadline <= at) {
        return Err(ValidationError::new(
            "run_at",
            "run_at (or the delay) must come before the deadline",
        ));
    }
    // Microseconds, as every store keeps a time.
    let at = chrono::SubsecRound::trunc_subsecs(at, 6);
    Ok(Some(at).filter(|at| *at > now))
}

fn parse_timeout(value: Option<i64>) -> Result<Option<u32>, ValidationError> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v <= MAX_TIMEOUT_SECONDS)
                .ok_or_else(|| {
                    ValidationError::new(
                        "timeout_seconds",
                        format!(
                            "timeout_seconds must be between 0 (no limit) and {MAX_TIMEOUT_SECONDS}, got {v}"
                        ),
                    )
                })
        })
        .transpose()
}

fn parse_max_retries(value: Option<i64>) -> Result<u32, ValidationError> {
    match value {
        None => Ok(DEFAULT_MAX_RETRIES),
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| *v <= MAX_RETRIES_LIMIT)
            .ok_or_else(|| {
                ValidationError::new(
                    "max_retries",
                    format!("max_retries must be between 0 and {MAX_RETRIES_LIMIT}, got {v}"),
                )
            }),
    }
}

/// One row of a task's audit trail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub task_id: TaskId,
    /// `None` for the row written when the task was created.
    pub from_status: Option<TaskStatus>,
    pub to_status: TaskStatus,
    pub changed_by: Option<String>,
    pub reason: Option<String>,
    /// Details of the change. An assignment's (`pending` to `assigned`) says
    /// why that droplet was chosen (`PlacementRecord`); recovery's name the
    /// `recovery` reason; a refused report has `refused: true`; a cancel
    /// request has `cancel_requested: true`.
    pub metadata: Option<Value>,
    pub changed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::Role;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    fn draft() -> TaskDraft {
        TaskDraft {
            task_type: "verify".into(),
            title: Some("Verify droplet 14".into()),
            ..TaskDraft::default()
        }
    }

    fn task() -> Task {
        NewTask::parse(draft(), at(0))
            .expect("valid")
            .into_task(1, Uuid::nil(), Some("alice".into()), at(0))
    }

    #[test]
    fn draft_gets_defaults() {
        let new = NewTask::parse(draft(), at(0)).expect("valid");
        assert_eq!(new.priority, Priority::default());
        assert_eq!(new.max_retries, DEFAULT_MAX_RETRIES);
        assert_eq!(new.payload, serde_json::json!({}));
    }

    fn scheduled(
        run_at: Option<DateTime<Utc>>,
        delay_seconds: Option<i64>,
    ) -> Result<NewTask, ValidationError> {
        let draft = TaskDraft {
            run_at,
            delay_seconds,
            deadline: Some(at(1000)),
            ..draft()
        };
        NewTask::parse(draft, at(0))
    }

    #[test]
    fn a_task_is_scheduled_by_time_or_by_delay() {
        assert_eq!(scheduled(Some(at(60)), None).expect("valid").run_at, Some(at(60)));
        assert_eq!(scheduled(None, Some(60)).expect("valid").run_at, Some(at(60)));
        assert_eq!(scheduled(None, None).expect("valid").run_at, None);
        // A time already come runs at once.
        assert_eq!(scheduled(Some(at(-5)), None).expect("valid").run_at, None);
        assert_eq!(scheduled(None, Some(0)).expect("valid").run_at, None);
        let body = r#"{"task_type": "verify", "data": {}, "delay_seconds": 30}"#;
        let draft: TaskDraft = serde_json::from_str(body).expect("the guide's body with a delay");
        let new = NewTask::parse(draft, at(0)).expect("valid");
        assert_eq!(
            new.clone().into_task(1, Uuid::nil(), None, at(0)).run_at,
            Some(at(30))
        );
    }

    #[test]
    fn a_schedule_out_of_bounds_is_refused_naming_the_field() {
        let far = Some(at(MAX_DELAY_SECONDS + 1));
        let undated = |run_at, delay| {
            NewTask::parse(
                TaskDraft {
                    run_at,
                    delay_seconds: delay,
                    ..draft()
                },
                at(0),
            )
        };
        for (outcome, field) in [
            (scheduled(Some(at(60)), Some(60)), "run_at"),
            (scheduled(None, Some(-1)), "delay_seconds"),
            (undated(None, Some(MAX_DELAY_SECONDS + 1)), "delay_seconds"),
            (undated(far, None), "run_at"),
            (scheduled(Some(at(1000)), None), "run_at"),
            (scheduled(None, Some(2000)), "run_at"),
        ] {
            assert_eq!(outcome.expect_err("refused").field, field);
        }
        assert!(
            undated(None, Some(MAX_DELAY_SECONDS)).is_ok(),
            "366 days is the limit"
        );
    }

    #[test]
    fn a_task_waits_for_the_later_of_its_run_at_and_its_backoff() {
        let mut task = task();
        assert_eq!((task.not_before(), task.wait(at(0))), (None, None));
        assert!(task.is_due(at(0)));
        task.run_at = Some(at(10));
        assert_eq!(task.wait(at(0)), Some(Wait::Scheduled { at: at(10) }));
        assert!(!task.is_due(at(9)) && task.is_due(at(10)));
        assert_eq!(task.wait(at(10)), None);
        task.retry_after = Some(at(20));
        assert_eq!(task.not_before(), Some(at(20)));
        assert_eq!(task.wait(at(5)), Some(Wait::Backoff { until: at(20) }));
        task.retry_after = Some(at(8));
        assert_eq!(task.wait(at(5)), Some(Wait::Scheduled { at: at(10) }));
        assert_eq!(task.wait(at(9)).map(Wait::ends_at), Some(at(10)));
    }

    #[test]
    fn the_guides_body_is_read_too() {
        let body = r#"{"task_type": "verify", "data": {"code": "x"}, "priority": "high"}"#;
        let draft: TaskDraft = serde_json::from_str(body).expect("the guide's body");
        let new = NewTask::parse(draft, at(0)).expect("valid");
        assert_eq!(new.title, "verify", "the title is the type when absent");
        assert_eq!(new.payload, serde_json::json!({"code": "x"}));
        assert_eq!(new.priority.value(), 3);
        let both = r#"{"task_type": "v", "data": {}, "payload": {}}"#;
        assert!(
            serde_json::from_str::<TaskDraft>(both).is_err(),
            "data or payload, not both"
        );
        let unknown = r#"{"task_type": "v", "datum": {}}"#;
        assert!(serde_json::from_str::<TaskDraft>(unknown).is_err());
    }

    #[test]
    fn draft_fields_are_validated() {
        let cases: Vec<(TaskDraft, &str)> = vec![
            (
                TaskDraft {
                    title: Some("  ".into()),
                    ..draft()
                },
                "title",
            ),
            (
                TaskDraft {
                    task_type: "".into(),
                    ..draft()
                },
                "task_type",
            ),
            (
                TaskDraft {
                    task_type: "x".repeat(51),
                    ..draft()
                },
                "task_type",
            ),
            (
                TaskDraft {
                    title: Some("x".repeat(256)),
                    ..draft()
                },
                "title",
            ),
            (
                TaskDraft {
                    priority: Some(0),
                    ..draft()
                },
                "priority",
            ),
            (
                TaskDraft {
                    priority: Some(11),
                    ..draft()
                },
                "priority",
            ),
            (
                TaskDraft {
                    max_retries: Some(-1),
                    ..draft()
                },
                "max_retries",
            ),
            (
                TaskDraft {
                    max_retries: Some(101),
                    ..draft()
                },
                "max_retries",
            ),
            (
                TaskDraft {
                    payload: Some(serde_json::json!([1])),
                    ..draft()
                },
                "payload",
            ),
            (
                TaskDraft {
                    deadline: Some(at(-1)),
                    ..draft()
                },
                "deadline",
            ),
            (
                TaskDraft {
                    required_capability: Some("has space".into()),
                    ..draft()
                },
                "required_capability",
            ),
        ];
        for (draft, field) in cases {
            let err = NewTask::parse(draft.clone(), at(0)).expect_err(field);
            assert_eq!(err.field, field, "{draft:?}");
        }
    }

    #[test]
    fn full_lifecycle_sets_timestamps() {
        let t = task();
        let assigned = t
            .apply(TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, at(1))
            .expect("assign");
        assert_eq!(
            (assigned.assigned_droplet_id, assigned.assigned_at),
            (Some(8), Some(at(1)))
        );
        let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
        let started = assigned.apply(TaskUpdate::Start, droplet, at(2)).expect("start");
        assert_eq!(started.started_at, Some(at(2)));
        let done = started
            .apply(
                TaskUpdate::Complete {
                    result: Some(serde_json::json!({"ok": true})),
                },
                droplet,
                at(3),
            )
            .expect("complete");
        assert_eq!(
            (done.status, done.completed_at),
            (TaskStatus::Completed, Some(at(3)))
        );
        assert!(done.is_final());
    }

    #[test]
    fn retry_spends_budget_and_releases_droplet() {
        let mut failed = task();
        failed.status = TaskStatus::Failed;
        failed.assigned_droplet_id = Some(8);
        failed.max_retries = 1;
        let retried = failed
            .apply(TaskUpdate::Retry { retry_after: at(9) }, Actor::SYSTEM, at(5))
            .expect("retry");
        assert_eq!((retried.status, retried.retry_count), (TaskStatus::Pending, 1));
        assert_eq!(retried.assigned_droplet_id, None);
        let mut again = retried;
        again.status = TaskStatus::Failed;
        assert!(again.is_final());
        assert!(matches!(
            again.apply(TaskUpdate::Retry { retry_after: at(9) }, Actor::SYSTEM, at(6)),
            Err(TransitionError::RetriesExhausted { .. })
        ));
    }

    #[test]
    fn finished_for_good_is_final_or_failed_past_its_deadline() {
        let mut failed = task();
        failed.status = TaskStatus::Failed;
        failed.max_retries = 2;
        assert!(!failed.is_finished(at(5)), "retries left");
        failed.deadline = Some(at(4));
        assert!(failed.is_finished(at(5)), "deadline passed");
        assert!(!failed.is_finished(at(3)), "deadline still ahead");
        failed.deadline = None;
        failed.cancel_requested_at = Some(at(1));
        assert!(failed.is_finished(at(5)), "stopped on request");
        for (status, finished) in [
            (TaskStatus::Completed, true),
            (TaskStatus::Cancelled, true),
            (TaskStatus::Pending, false),
            (TaskStatus::Assigned, false),
            (TaskStatus::InProgress, false),
        ] {
            let mut t = task();
            t.status = status;
            t.deadline = Some(at(1));
            assert_eq!(t.is_finished(at(5)), finished, "{status}");
        }
    }

    #[test]
    fn a_person_retries_only_what_will_not_be_retried_automatically() {
        let mut spent = task();
        spent.status = TaskStatus::Failed;
        spent.assigned_droplet_id = Some(8);
        spent.error_message = Some("boom".into());
        spent.completed_at = Some(at(4));
        spent.cancel_requested_at = Some(at(3));
        spent.max_retries = 2;
        spent.retry_count = 2;
        let creator = Actor::from_roles(&[Role::Creator]);
        let again = spent
            .apply(TaskUpdate::OperatorRetry, creator, at(5))
            .expect("retried by hand");
        assert_eq!((again.status, again.retry_count), (TaskStatus::Pending, 2));
        assert_eq!((again.assigned_droplet_id, again.completed_at), (None, None));
        assert_eq!((again.error_message, again.cancel_requested_at), (None, None));
        let mut budget_left = spent.clone();
        budget_left.cancel_requested_at = None;
        budget_left.retry_count = 1;
        assert!(matches!(
            budget_left.apply(TaskUpdate::OperatorRetry, creator, at(5)),
            Err(TransitionError::RetriesLeft {
                retry_count: 1,
                max_retries: 2
            })
        ));
        let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
        assert!(matches!(
            spent.apply(TaskUpdate::OperatorRetry, droplet, at(5)),
            Err(TransitionError::NotAllowedFor { .. })
        ));
        let mut done = spent;
        done.status = TaskStatus::Completed;
        assert!(matches!(
            done.apply(
                TaskUpdate::OperatorRetry,
                Actor::from_roles(&[Role::Admin]),
                at(5)
            ),
            Err(TransitionError::NoSuchTransition { .. })
        ));
    }

    #[test]
    fn a_run_times_out_from_its_start_or_its_latest_progress() {
        let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
        let running = task()
            .apply(TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, at(0))
            .and_then(|t| t.apply(TaskUpdate::Start, droplet, at(10)))
            .expect("running");
        let default = std::time::Duration::from_secs(60);
        assert!(!running.run_timed_out(default, at(70)));
        assert!(running.run_timed_out(default, at(71)));
        let progressed = running
            .report_progress(Progress::parse(Some(40), Some("half".into()), at(65)).expect("valid"))
            .expect("a running task takes progress");
        assert_eq!(progressed.status, TaskStatus::InProgress);
        assert!(
            !progressed.run_timed_out(default, at(120)),
            "progress restarts the clock"
        );
        assert!(progressed.run_timed_out(default, at(126)));
        let mut own = progressed.clone();
        own.timeout_seconds = Some(0);
        assert!(!own.run_timed_out(default, at(100_000)), "0 is no limit");
        own.timeout_seconds = Some(5);
        assert!(own.run_timed_out(default, at(71)), "its own timeout wins");
        assert!(
            task()
                .report_progress(Progress::parse(None, None, at(1)).expect("valid"))
                .is_err()
        );
    }

    #[test]
    fn progress_and_timeouts_are_validated() {
        assert_eq!(
            Progress::parse(Some(101), None, at(0))
                .expect_err("over 100")
                .field,
            "progress"
        );
        assert_eq!(
            Progress::parse(Some(-1), None, at(0))
                .expect_err("negative")
                .field,
            "progress"
        );
        let long = "x".repeat(MAX_PROGRESS_MESSAGE_CHARS + 1);
        assert_eq!(
            Progress::parse(None, Some(long), at(0)).expect_err("long").field,
            "message"
        );
        let timeout = |t| {
            NewTask::parse(
                TaskDraft {
                    timeout_seconds: Some(t),
                    ..draft()
                },
                at(0),
            )
        };
        assert_eq!(timeout(-1).expect_err("negative").field, "timeout_seconds");
        assert_eq!(
            timeout(i64::from(MAX_TIMEOUT_SECONDS) + 1)
                .expect_err("too long")
                .field,
            "timeout_seconds"
        );
        assert_eq!(timeout(0).expect("no limit").timeout_seconds, Some(0));
        assert_eq!(
            NewTask::parse(draft(), at(0)).expect("valid").timeout_seconds,
            None
        );
    }

    #[test]
    fn requeues_count_until_a_retry() {
        let assigned = task()
            .apply(TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, at(1))
            .expect("assigned");
        let requeued = assigned
            .apply(TaskUpdate::Requeue, Actor::SYSTEM, at(2))
            .expect("requeued");
        assert_eq!(requeued.requeues, 1);
        let mut failed = requeued;
        failed.status = TaskStatus::Failed;
        let retried = failed
            .apply(TaskUpdate::Retry { retry_after: at(3) }, Actor::SYSTEM, at(2))
            .expect("retried");
        assert_eq!(retried.requeues, 0);
    }

    #[test]
    fn status_parses_from_its_name() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
        }
        assert!("done".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn only_a_running_task_takes_a_cancel_request_and_then_is_not_retried() {
        let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
        let pending = task();
        assert_eq!(
            pending.request_cancel(at(1)),
            Err(CancelRequestError::NotStarted(TaskStatus::Pending))
        );
        let running = pending
            .apply(TaskUpdate::Assign { droplet_id: 3 }, Actor::SYSTEM, at(1))
            .and_then(|t| t.apply(TaskUpdate::Start, droplet, at(2)))
            .expect("running");
        let asked = running.request_cancel(at(3)).expect("taken").expect("recorded");
        assert_eq!(asked.cancel_requested_at, Some(at(3)));
        assert_eq!(asked.status, TaskStatus::InProgress, "the task keeps running");
        assert_eq!(
            asked.request_cancel(at(4)),
            Ok(None),
            "asking again changes nothing"
        );

        let failed = asked
            .apply(TaskUpdate::Fail { error_message: None }, droplet, at(5))
            .expect("failed");
        assert!(failed.retry_count < failed.max_retries);
        assert!(!failed.can_retry(), "a task asked to stop is not retried");
        assert!(failed.is_final());
        assert_eq!(
            failed.request_cancel(at(6)),
            Err(CancelRequestError::Finished(TaskStatus::Failed))
        );
    }
}
