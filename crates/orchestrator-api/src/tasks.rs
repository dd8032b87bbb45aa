//! `/tasks`: the bodies a task is created, listed, read, moved, cancelled
//! and retried with.

use chrono::{DateTime, Utc};
use orchestrator_domain::{DropletId, HistoryEntry, Task, TaskDraft, TaskId, TaskStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The answer to `POST /tasks` (and each task of `POST /tasks/batch`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TaskCreated {
    pub task_id: TaskId,
    pub trace_id: Uuid,
    pub status: TaskStatus,
    pub created_at: DateTime<Utc>,
    /// The recent wait, in whole seconds, of tasks needing the same
    /// capability for their first assignment, as the answering replica's
    /// router saw it (0 before it saw one). Routing is event-driven: a task
    /// is assigned as soon as a capable droplet has a free slot. A task
    /// scheduled for later adds the seconds until its `run_at`.
    pub estimated_assignment_seconds: u32,
    /// When it is to run, if it was submitted for later (`run_at` or
    /// `delay_seconds`): it waits `pending` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
}

/// The body of `POST /tasks/batch`: tasks submitted together.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBatch {
    /// From 1 to 1,000 tasks, each as `POST /tasks` takes it.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub tasks: Vec<TaskDraft>,
}

/// The answer to `POST /tasks/batch`: the tasks created, in the order they
/// were sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BatchCreated {
    pub tasks: Vec<TaskCreated>,
}

/// The query of `GET /tasks`; every parameter is optional. The server reads
/// the values as they came and checks them itself (a bad one is a
/// validation error naming it), so they are kept as sent: the `with_*`
/// methods set them from typed values.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    #[cfg_attr(feature = "openapi", param(value_type = Option<TaskStatus>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// 1 (most urgent) to 10.
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 10))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_min: Option<i64>,
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 10))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_max: Option<i64>,
    // `i64`, not the `DropletId` alias, which the parameter's schema would
    // name as a reference of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_droplet_id: Option<i64>,
    /// Tasks that require this capability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Part of the title (any case), or a whole trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// Page size (default 50).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 500))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The page after this cursor (a page's `next_cursor`): as fast deep
    /// in the list as at its start, where `offset` reads what it skips.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The page before this cursor (a page's `previous_cursor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

impl TaskQuery {
    pub fn with_status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status.as_str().to_owned());
        self
    }

    pub fn with_task_type(mut self, task_type: impl Into<String>) -> Self {
        self.task_type = Some(task_type.into());
        self
    }

    pub fn with_droplet(mut self, droplet_id: DropletId) -> Self {
        self.assigned_droplet_id = Some(droplet_id);
        self
    }

    pub fn with_capability(mut self, capability: impl Into<String>) -> Self {
        self.capability = Some(capability.into());
        self
    }

    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The page after `cursor`, a page's `next_cursor`.
    pub fn with_after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    /// The page before `cursor`, a page's `previous_cursor`.
    pub fn with_before(mut self, cursor: impl Into<String>) -> Self {
        self.before = Some(cursor.into());
        self
    }

    /// Skips the first `offset` tasks (past `i64::MAX`, all of them).
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(i64::try_from(offset).unwrap_or(i64::MAX));
        self
    }
}

/// A task as the API shows it: every stored field, the name of its droplet
/// and, on `GET /tasks/{id}`, its history and, while it is pending, why it
/// waits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskBody {
    #[serde(flatten)]
    pub task: Task,
    pub assigned_droplet_name: Option<String>,
    /// On `GET /tasks/{id}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_history: Option<Vec<HistoryEntry>>,
    /// On `GET /tasks/{id}` of a pending task: why it is not assigned yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<PendingReason>,
}

impl TaskBody {
    /// The task's history, oldest first; empty where the answer has none.
    pub fn history(&self) -> &[HistoryEntry] {
        self.state_history.as_deref().unwrap_or_default()
    }
}

/// Why a pending task has not been assigned yet, as of the moment asked
/// (`routing` of `GET /tasks/{id}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
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
    /// Its concurrency key has `running` of `max_running` tasks assigned
    /// or running: it waits for one of them to end.
    ConcurrencyLimited {
        key: String,
        running: u32,
        max_running: u32,
    },
    /// A state this crate does not know, from a newer server: a reader
    /// keeps the task rather than failing on its `routing`. Never written
    /// (and so not in the OpenAPI document).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// The answer to `GET /tasks`: one page of tasks, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskPage {
    pub tasks: Vec<TaskBody>,
    /// Tasks that match the filter, on every page.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    pub has_more: bool,
    /// `after` of the next page (older tasks), when there is one.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// `before` of the previous page (newer tasks), when there is one.
    #[serde(default)]
    pub previous_cursor: Option<String>,
}

/// A task's place in the list as `after` and `before` carry it: its
/// creation time in nanoseconds since the epoch and its id, as
/// `{nanos}_{id}`. Clients pass it back as they got it.
pub fn page_cursor(created_at: DateTime<Utc>, id: i64) -> String {
    let nanos = created_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
    format!("{nanos}_{id}")
}

/// The creation time and id a cursor of [`page_cursor`] names.
pub fn read_page_cursor(cursor: &str) -> Option<(DateTime<Utc>, i64)> {
    let (nanos, id) = cursor.trim().split_once('_')?;
    let created_at = DateTime::from_timestamp_nanos(nanos.parse().ok()?);
    Some((created_at, id.parse().ok()?))
}

/// The answer about one task: `GET /tasks/{id}`, `PATCH /tasks/{id}`,
/// `POST /tasks/{id}/cancel-request`, `POST /tasks/{id}/retry` and the
/// `task_status` query.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskReply {
    pub task: TaskBody,
}

/// The body of `PATCH /tasks/{id}`: a droplet's report on its task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPatch {
    /// `in_progress`, then `completed` or `failed` (an admin may also move
    /// tasks as the state machine allows).
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The assignment the report is about (the task's `attempt` when the
    /// droplet received it); a report about another is refused with 409
    /// `stale_attempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

impl StatusPatch {
    pub fn started(attempt: u32) -> Self {
        StatusPatch {
            status: TaskStatus::InProgress,
            result: None,
            error_message: None,
            attempt: Some(attempt),
        }
    }

    pub fn completed(attempt: u32, result: Value) -> Self {
        StatusPatch {
            status: TaskStatus::Completed,
            result: Some(result),
            ..StatusPatch::started(attempt)
        }
    }

    pub fn failed(attempt: u32, error_message: impl Into<String>) -> Self {
        StatusPatch {
            status: TaskStatus::Failed,
            error_message: Some(error_message.into()),
            ..StatusPatch::started(attempt)
        }
    }
}

/// The answer to `DELETE /tasks/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Cancelled {
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// The body of `POST /tasks/{id}/progress`: the droplet running a task
/// says how far it is. It restarts the clock of the run's timeout.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// The assignment the report is about (the task's `attempt`); another
    /// is refused with 409 `stale_attempt`.
    pub attempt: u32,
    /// Percent done, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub progress: Option<i64>,
    /// What it is doing, at most 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub message: Option<String>,
}

/// The body of `POST /tasks/{id}/retry`; it may be empty.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Why, for the task's history (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_query_sends_only_what_is_set() {
        let query = TaskQuery::default()
            .with_status(TaskStatus::InProgress)
            .with_droplet(7)
            .with_offset(20);
        assert_eq!(
            serde_json::to_value(&query).ok(),
            Some(json!({"status": "in_progress", "assigned_droplet_id": 7, "offset": 20}))
        );
    }

    #[test]
    fn a_report_leaves_out_what_it_does_not_say() {
        assert_eq!(
            serde_json::to_value(StatusPatch::failed(2, "no luck")).ok(),
            Some(json!({"status": "failed", "error_message": "no luck", "attempt": 2}))
        );
        assert_eq!(
            serde_json::to_value(RetryRequest::default()).ok(),
            Some(json!({}))
        );
    }

    #[test]
    fn a_pending_reason_is_tagged_by_its_state() {
        let full = PendingReason::AllCapableDropletsFull {
            capability: Some("echo".into()),
            droplets: 2,
        };
        let wire = json!({"state": "all_capable_droplets_full", "capability": "echo", "droplets": 2});
        assert_eq!(serde_json::to_value(&full).ok(), Some(wire.clone()));
        assert_eq!(serde_json::from_value::<PendingReason>(wire).ok(), Some(full));
        let newer = json!({"state": "waiting_for_quorum", "replicas": 2});
        assert_eq!(
            serde_json::from_value::<PendingReason>(newer).ok(),
            Some(PendingReason::Unknown)
        );
    }
}
