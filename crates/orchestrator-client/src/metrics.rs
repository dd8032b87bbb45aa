//! `/metrics/…`: the analytics over a [`TimeRange`], the system's health, and
//! the Prometheus text of `GET /metrics`.

pub use orchestrator_api::metrics::{
    DropletHealth, DropletPerformance, Percentiles, Performance, PerformanceQuery, RangeQuery, RescueCounts,
    RoutingStats, StoreHealth, StoreStatus, Summary, TaskTypePerformance as TaskPerformance, TaskTypes,
    Throughput, TimeRange, TypeBreakdown,
};
use orchestrator_domain::DropletId;

use crate::{Client, ClientError};

/// `GET /metrics/system/health`.
pub use orchestrator_api::metrics::SystemHealth;

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
