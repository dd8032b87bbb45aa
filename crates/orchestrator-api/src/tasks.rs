//! The answers about tasks.

use chrono::{DateTime, Utc};
use orchestrator_domain::{TaskId, TaskStatus};
use serde::{Deserialize, Serialize};
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
    /// is assigned as soon as a capable droplet has a free slot.
    pub estimated_assignment_seconds: u32,
}

/// The answer to `DELETE /tasks/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Cancelled {
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub cancelled_at: Option<DateTime<Utc>>,
}
