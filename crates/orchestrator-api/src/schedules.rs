//! `/schedules`: cron schedules that create tasks. A schedule is created
//! with the domain's `ScheduleDraft`; answers carry its next fire times.

use chrono::{DateTime, Utc};
use orchestrator_domain::{CatchUp, Overlap, TaskDraft, TaskId};
use serde::{Deserialize, Serialize};

/// A schedule as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ScheduleBody {
    pub name: String,
    /// Five fields, or six with seconds first.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The body of `POST /tasks` each fire submits.
    pub task: TaskDraft,
    pub overlap: Overlap,
    /// What a fire time missed while the orchestrator was down does.
    pub catch_up: CatchUp,
    /// A paused schedule fires nothing, and on resuming fires none of the
    /// times it missed.
    pub paused: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When its definition or its pause last changed.
    pub updated_at: DateTime<Utc>,
    /// The last fire time dealt with (fired or skipped).
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The task of the last fire that made one.
    pub last_task_id: Option<TaskId>,
    /// Fires that made a task.
    pub fires: u64,
    /// Fire times that made no task: the previous task was unfinished
    /// (`overlap: skip`), or the time was missed (`catch_up: none`).
    pub skips: u64,
    /// Its next five fire times; none while paused.
    pub next_runs: Vec<DateTime<Utc>>,
}

/// The answer about one schedule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ScheduleReply {
    pub schedule: ScheduleBody,
}

/// The answer to `GET /schedules`: every schedule, by name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleBody>,
}

/// The body of `PATCH /schedules/{name}`: what is given replaces what
/// was; fire times from then on follow it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatchBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskDraft>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
}

/// The answer to `DELETE /schedules/{name}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ScheduleDeleted {
    pub name: String,
    pub deleted: bool,
}
