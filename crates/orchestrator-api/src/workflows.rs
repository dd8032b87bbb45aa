//! `/workflows`: tasks submitted together, some depending on others.

use chrono::{DateTime, Utc};
use orchestrator_domain::{DependencyFailure, Task, TaskDraft, TaskId, WorkflowId, WorkflowState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One task of a workflow as submitted: the body of `POST /tasks` with
/// `key`, `depends_on` and `on_dependency_failure`. Documents the items
/// of [`WorkflowSubmission::tasks`], which the server reads one by one to
/// name the task at fault.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkflowTaskBody {
    /// Unique within the workflow; `depends_on` names tasks by it.
    pub key: String,
    /// The keys of the tasks it waits for; it runs once all completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// What it does when one of them fails for good or is cancelled
    /// (`cancel` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failure: Option<DependencyFailure>,
    #[serde(flatten)]
    pub task: TaskDraft,
}

/// The body of `POST /workflows`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSubmission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 1 to `MAX_WORKFLOW_TASKS` (100) tasks, in any order.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<WorkflowTaskBody>))]
    pub tasks: Vec<Value>,
}

/// A task of a new workflow: its key and the id it was given.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WorkflowTaskId {
    pub key: String,
    pub task_id: TaskId,
}

/// The answer to `POST /workflows`: the tasks in dependency order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WorkflowCreated {
    pub workflow_id: WorkflowId,
    pub tasks: Vec<WorkflowTaskId>,
}

/// A task of a workflow as it is now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkflowTaskState {
    pub key: String,
    /// The keys of the tasks it depends on.
    pub depends_on: Vec<String>,
    pub on_dependency_failure: DependencyFailure,
    /// True while it waits for them, out of routing.
    pub waiting: bool,
    pub task: Task,
}

/// A workflow as the API shows it: its tasks in dependency order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkflowBody {
    pub id: WorkflowId,
    pub name: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `running` until every task finished, then `completed`, `failed` or
    /// `cancelled`.
    pub state: WorkflowState,
    pub tasks: Vec<WorkflowTaskState>,
}

/// The answer about one workflow: `GET /workflows/{id}` and
/// `POST /workflows/{id}/cancel`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkflowReply {
    pub workflow: WorkflowBody,
}

/// The answer to `GET /workflows`: the newest workflows, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowBody>,
}

/// The query of `GET /workflows`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowQuery {
    /// How many (1 to 100; 20 by default).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
