//! `/metrics/…`: the analytics over a [`TimeRange`], the system's health, and
//! the Prometheus text of `GET /metrics`.

use std::collections::BTreeMap;

use orchestrator_domain::{DropletId, DropletStatus, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::{Client, ClientError, FeedStatus, JobStatus};

/// The window the analytics cover (`time_range`).
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

/// The query of the analytics that take only a window; all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RangeQuery {
    /// Absent: the last 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
}

/// The query of `GET /metrics/tasks/performance`; all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PerformanceQuery {
    /// Absent: the last 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Only tasks of this type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
}

/// Tasks created, and tasks finished (`completed` or `failed`), in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Throughput {
    pub created: u64,
    pub finished: u64,
}

/// `GET /metrics/summary`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Summary {
    pub time_range: TimeRange,
    /// All tasks now, by status; a status no task has is absent.
    pub tasks_by_status: BTreeMap<TaskStatus, u64>,
    pub tasks_total: u64,
    /// All droplets now, by status; a status no droplet has is absent.
    pub droplets_by_status: BTreeMap<DropletStatus, u64>,
    pub droplets_total: u64,
    /// In the window.
    pub throughput: Throughput,
    /// Tasks finished per hour over the window.
    pub finished_per_hour: f64,
}

/// Percentiles of a duration in seconds; `None` when nothing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// How the tasks that finished in a window fared.
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskPerformance {
    #[serde(flatten)]
    pub figures: Performance,
    /// The type asked for, if any.
    pub task_type: Option<String>,
}

/// `GET /metrics/droplets/{id}/performance`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DropletPerformance {
    #[serde(flatten)]
    pub figures: Performance,
    pub droplet_id: DropletId,
}

/// `GET /metrics/tasks/by-type`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskTypes {
    pub time_range: TimeRange,
    /// Most numerous first.
    pub types: Vec<TypeBreakdown>,
}

/// The tasks of one type created in a window, by status now.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TypeBreakdown {
    pub task_type: String,
    pub total: u64,
    pub by_status: BTreeMap<TaskStatus, u64>,
}

/// `GET /metrics/routing`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RoutingStats {
    pub time_range: TimeRange,
    /// From creation to (the last) assignment, for tasks assigned in the window.
    pub time_to_assign_seconds: Percentiles,
    /// Tasks each droplet holds or finished that were assigned in the window.
    pub assignments_per_droplet: BTreeMap<DropletId, u64>,
    /// Assignments in the window, over every droplet.
    pub assignments_total: u64,
    /// Pending tasks (now) whose required capability no active droplet
    /// offers, by capability.
    pub pending_without_capable_droplet: BTreeMap<String, u64>,
    /// Work rescued or refused in the window, by required capability.
    pub rescues: Vec<RescueCounts>,
}

/// What recovery and fencing did in a window for tasks of one capability.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RescueCounts {
    /// `None`: the tasks that require no capability.
    pub capability: Option<String>,
    /// Tasks taken from a droplet that went silent or did not start them in
    /// time, to run elsewhere.
    pub reassignments: u64,
    /// Of the reassignments, those whose droplet did not start the task in time.
    pub ack_timeouts: u64,
    /// Status reports refused as `stale_attempt`.
    pub stale_reports_refused: u64,
    /// Tasks failed because their deadline passed.
    pub deadline_failures: u64,
    /// `task_deadline_at_risk` warnings.
    pub deadline_at_risk: u64,
}

/// `GET /metrics/system/health`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SystemHealth {
    pub store: StoreHealth,
    /// `None` while the store is down.
    pub droplets: Option<DropletHealth>,
    pub jobs: Vec<JobStatus>,
    pub websockets: FeedStatus,
    pub uptime_seconds: u64,
    pub memory_mb: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// The droplets by status, and the active ones late on their heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DropletHealth {
    pub total: u64,
    pub by_status: BTreeMap<DropletStatus, u64>,
    /// Active droplets silent for longer than `heartbeat_interval_seconds`.
    pub late_heartbeats: u64,
    pub heartbeat_interval_seconds: u64,
}

/// Whether the store answers, and how fast.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StoreHealth {
    pub status: StoreStatus,
    /// `None` while the store is down.
    pub latency_ms: Option<f64>,
}

/// Whether the store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreStatus {
    Up,
    Down,
}

impl Client {
    /// Tasks and droplets by status now, and throughput in the window (`read`).
    pub async fn metrics_summary(&self, query: &RangeQuery) -> Result<Summary, ClientError> {
        self.get_with("/metrics/summary", query).await
    }

    /// Count, success rate and percentiles of queue wait and run time (`read`).
    pub async fn task_performance(&self, query: &PerformanceQuery) -> Result<TaskPerformance, ClientError> {
        self.get_with("/metrics/tasks/performance", query).await
    }

    /// Tasks created in the window, by type and status (`read`).
    pub async fn tasks_by_type(&self, query: &RangeQuery) -> Result<TaskTypes, ClientError> {
        self.get_with("/metrics/tasks/by-type", query).await
    }

    /// The figures of the tasks one droplet ran (`read`); an unknown droplet
    /// is `not_found`.
    pub async fn droplet_performance(
        &self,
        id: DropletId,
        query: &RangeQuery,
    ) -> Result<DropletPerformance, ClientError> {
        self.get_with(&format!("/metrics/droplets/{id}/performance"), query)
            .await
    }

    /// Time to assign, assignments per droplet, stranded work and rescues (`read`).
    pub async fn routing_stats(&self, query: &RangeQuery) -> Result<RoutingStats, ClientError> {
        self.get_with("/metrics/routing", query).await
    }

    /// The store's latency, the jobs, the feeds and the process (`read`).
    pub async fn system_health(&self) -> Result<SystemHealth, ClientError> {
        self.send(reqwest::Method::GET, "/metrics/system/health", None::<&()>)
            .await
    }

    /// The Prometheus text of `GET /metrics`, as it came; `not_found` (404)
    /// when the server runs with `ENABLE_METRICS=false`.
    pub async fn prometheus_metrics(&self) -> Result<String, ClientError> {
        self.text("/metrics").await
    }
}
