//! `/metrics/…`: the analytics over a [`TimeRange`] and the system's
//! health (`GET /metrics` itself answers Prometheus' text, not JSON).
//! Every call needs a `read` token.

use std::collections::BTreeMap;

use orchestrator_domain::{DropletId, DropletStatus, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::management::JobStatus;

/// The window the analytics cover (`time_range`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum TimeRange {
    /// The last hour.
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours, the server's default.
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days.
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Month,
}

impl TimeRange {
    /// The text of `time_range`, such as `24h`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeRange::Hour => "1h",
            TimeRange::Day => "24h",
            TimeRange::Week => "7d",
            TimeRange::Month => "30d",
        }
    }
}

/// The query of the analytics that take only a window: `GET
/// /metrics/summary`, `/metrics/tasks/by-type`, `/metrics/routing` and
/// `/metrics/droplets/{id}/performance`.
///
/// `time_range` is text rather than a [`TimeRange`] so that the server
/// reads any value and answers an unknown one with its own 422, naming the
/// ranges it takes; build it with [`RangeQuery::over`].
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// `1h`, `24h` (the default), `7d` or `30d`; anything else is 422.
    #[cfg_attr(feature = "openapi", param(value_type = Option<TimeRange>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_range: Option<String>,
}

impl RangeQuery {
    /// The analytics over `range`.
    pub fn over(range: TimeRange) -> Self {
        RangeQuery {
            time_range: Some(range.as_str().to_owned()),
        }
    }
}

/// The query of `GET /metrics/tasks/performance`; `time_range` is text for
/// the reason [`RangeQuery`] gives.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceQuery {
    /// `1h`, `24h` (the default), `7d` or `30d`; anything else is 422.
    #[cfg_attr(feature = "openapi", param(value_type = Option<TimeRange>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_range: Option<String>,
    /// Only tasks of this type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
}

impl PerformanceQuery {
    /// The tasks of every type over `range`.
    pub fn over(range: TimeRange) -> Self {
        PerformanceQuery {
            time_range: Some(range.as_str().to_owned()),
            task_type: None,
        }
    }

    /// Only the tasks of `task_type`.
    #[must_use]
    pub fn of_type(self, task_type: impl Into<String>) -> Self {
        PerformanceQuery {
            task_type: Some(task_type.into()),
            ..self
        }
    }
}

/// Tasks created, and tasks finished (`completed` or `failed`), in a window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Throughput {
    pub created: u64,
    pub finished: u64,
}

/// `GET /metrics/summary`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Summary {
    pub time_range: TimeRange,
    /// All tasks now, by status.
    pub tasks_by_status: BTreeMap<TaskStatus, u64>,
    /// All tasks now.
    pub tasks_total: u64,
    /// All droplets now, by status.
    pub droplets_by_status: BTreeMap<DropletStatus, u64>,
    /// All droplets now.
    pub droplets_total: u64,
    pub throughput: Throughput,
    /// Tasks finished per hour over the range.
    pub finished_per_hour: f64,
}

/// Percentiles of a duration in seconds, interpolated as PostgreSQL's
/// `percentile_cont` does; `None` when nothing was measured.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// How the tasks that finished in a window fared: the figures of `GET
/// /metrics/tasks/performance` and `/metrics/droplets/{id}/performance`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Performance {
    pub time_range: TimeRange,
    /// Tasks that reached `completed` or `failed` in the window.
    pub finished: u64,
    pub completed: u64,
    pub failed: u64,
    /// From creation to (the last) assignment, for tasks assigned in the window.
    pub queue_wait_seconds: Percentiles,
    /// From `in_progress` to `completed`, for tasks completed in the window.
    pub run_seconds: Percentiles,
    /// Completed out of finished; `None` when nothing finished.
    pub success_rate: Option<f64>,
}

/// `GET /metrics/tasks/performance`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskTypePerformance {
    #[serde(flatten)]
    pub figures: Performance,
    /// The type asked for, if any.
    pub task_type: Option<String>,
}

/// `GET /metrics/droplets/{id}/performance`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DropletPerformance {
    #[serde(flatten)]
    pub figures: Performance,
    pub droplet_id: DropletId,
}

/// `GET /metrics/tasks/by-type`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskTypes {
    pub time_range: TimeRange,
    /// Most numerous first.
    pub types: Vec<TypeBreakdown>,
}

/// The tasks of one type created in a window, by status now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TypeBreakdown {
    pub task_type: String,
    pub total: u64,
    pub by_status: BTreeMap<TaskStatus, u64>,
}

/// `GET /metrics/routing`.
// Every field is its own rather than part of a flattened struct: serde
// buffers a flattened map's keys as text, and droplet ids would not read back.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RoutingStats {
    /// From creation to (the last) assignment, for tasks assigned in the window.
    pub time_to_assign_seconds: Percentiles,
    /// Tasks each droplet holds or finished that were assigned in the window, by droplet.
    /// JSON object keys are strings: the droplet id in decimal.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    pub assignments_per_droplet: BTreeMap<DropletId, u64>,
    /// Pending tasks (now) whose required capability no active droplet offers.
    pub pending_without_capable_droplet: BTreeMap<String, u64>,
    /// Work rescued or refused in the window, by required capability
    /// (`None`: tasks that require none), in capability order.
    pub rescues: Vec<RescueCounts>,
    /// Assignments in the range, over every droplet.
    pub assignments_total: u64,
    pub time_range: TimeRange,
}

/// What recovery and fencing did in a window for tasks of one capability.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RescueCounts {
    pub capability: Option<String>,
    /// Tasks taken from a droplet that went silent or did not start them in
    /// time, to run elsewhere (requeued, or failed and retried).
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

/// `GET /metrics/system/health`: the store, the droplets, the jobs, the
/// feeds and the process.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SystemHealth {
    pub store: StoreHealth,
    /// Absent when the store is down.
    pub droplets: Option<DropletHealth>,
    pub jobs: Vec<JobStatus>,
    /// The feeds' figures, as `GET /ws/status` answers.
    pub websockets: crate::feeds::FeedStatus,
    pub uptime_seconds: u64,
    pub memory_mb: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// Whether the store answers, and how fast.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StoreHealth {
    pub status: StoreStatus,
    /// `None` while the store is down.
    pub latency_ms: Option<f64>,
}

/// Whether the store answers: `up` or `down`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreStatus {
    Up,
    Down,
}

/// The droplets in `GET /metrics/system/health`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DropletHealth {
    pub total: u64,
    pub by_status: BTreeMap<DropletStatus, u64>,
    /// `active` droplets whose last heartbeat (or registration)
    /// is older than the interval they were told to beat at.
    pub late_heartbeats: u64,
    pub heartbeat_interval_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_sent_as_its_text() {
        for range in [TimeRange::Hour, TimeRange::Day, TimeRange::Week, TimeRange::Month] {
            let text = serde_json::to_string(&range).expect("json");
            assert_eq!(text, format!("\"{}\"", range.as_str()));
        }
        let query = PerformanceQuery::over(TimeRange::Week).of_type("scan");
        assert_eq!(
            serde_json::to_value(query).expect("json"),
            serde_json::json!({"time_range": "7d", "task_type": "scan"})
        );
        assert_eq!(serde_json::to_string(&RangeQuery::default()).expect("json"), "{}");
    }

    #[test]
    fn routing_reads_droplet_ids_back_from_their_keys() {
        let text = r#"{"time_to_assign_seconds": {"p50": 1.0, "p95": null, "p99": null},
            "assignments_per_droplet": {"8": 3}, "pending_without_capable_droplet": {},
            "rescues": [], "assignments_total": 3, "time_range": "24h"}"#;
        let routing: RoutingStats = serde_json::from_str(text).expect("reads");
        assert_eq!(routing.assignments_per_droplet, BTreeMap::from([(8, 3)]));
    }
}
