//! Prometheus metrics (`GET /metrics` when `ENABLE_METRICS`): counters and
//! histograms recorded as things happen, gauges read when scraped.

use std::sync::OnceLock;

use futures_util::StreamExt;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use orchestrator_app::{Feed, Ports};
use orchestrator_domain::DomainEvent;

use crate::startup::AppState;

/// Bucket bounds of every histogram, in seconds: from a millisecond to a minute.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; several applications in one
/// process share it). `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(BUCKETS).ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// The methods counted by name; any other a client sends is `other`, so
/// that no request can add a series of its own.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn method_label(method: &str) -> &'static str {
    METHODS.into_iter().find(|m| *m == method).unwrap_or("other")
}

/// Counts a served request by method, route pattern and status.
pub fn record_request(method: &str, route: &str, status: u16, seconds: f64) {
    let labels = [
        ("method", method_label(method).to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    counter!("orchestrator_http_requests_total", &labels).increment(1);
    histogram!("orchestrator_http_request_duration_seconds", "route" => route.to_owned()).record(seconds);
}

/// Counts this replica's task transitions and times its assignments (run
/// as a background service).
pub fn record_events(ports: &Ports) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut events = ports.events.subscribe();
    async move {
        while let Some(event) = events.next().await {
            let Some(task) = event.task() else { continue };
            match event {
                DomainEvent::TaskDeadlineAtRisk(_) => {
                    counter!("orchestrator_deadline_at_risk_total").increment(1);
                    continue;
                }
                // Not a transition: the task keeps running.
                DomainEvent::TaskCancelRequested(_) | DomainEvent::TaskProgress(_) => continue,
                _ => {}
            }
            counter!(
                "orchestrator_task_transitions_total",
                "event" => event.name(),
                "to" => task.status.as_str(),
            )
            .increment(1);
            if let (DomainEvent::TaskAssigned(_), Some(assigned)) = (&event, task.assigned_at) {
                let waited = (assigned - task.created_at).to_std().unwrap_or_default();
                histogram!("orchestrator_routing_latency_seconds").record(waited.as_secs_f64());
            }
        }
    }
}

/// Sets the gauges read at scrape time, then renders every metric.
pub async fn render(handle: &PrometheusHandle, app: &AppState) -> String {
    match app.metrics.pending_by_priority().await {
        Ok(depth) => {
            for priority in 1..=10_u8 {
                let n = depth.get(&priority).copied().unwrap_or(0);
                gauge!("orchestrator_queue_depth", "priority" => priority.to_string()).set(n as f64);
            }
            gauge!("orchestrator_store_up").set(1.0);
        }
        Err(_) => gauge!("orchestrator_store_up").set(0.0),
    }
    let feeds = app.feeds.status();
    for (feed, name) in [(Feed::Tasks, "tasks"), (Feed::Droplets, "droplets")] {
        let clients = feeds.connections.get(&feed).copied().unwrap_or(0);
        gauge!("orchestrator_websocket_clients", "feed" => name).set(clients as f64);
    }
    counter!("orchestrator_websocket_dropped_clients_total", "reason" => "slow")
        .absolute(feeds.dropped_slow_clients);
    counter!("orchestrator_websocket_dropped_clients_total", "reason" => "unresponsive")
        .absolute(feeds.dropped_unresponsive_clients);
    let heartbeats = app.metrics.heartbeat_backlog();
    gauge!("orchestrator_heartbeats_held").set(heartbeats.held as f64);
    counter!("orchestrator_heartbeats_dropped_total").absolute(heartbeats.dropped);
    for job in app.management.job_states() {
        counter!("orchestrator_job_runs_total", "job" => job.id).absolute(job.runs);
        counter!("orchestrator_job_failures_total", "job" => job.id).absolute(job.failures);
    }
    handle.render()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_methods_are_labelled_by_name() {
        assert_eq!(super::method_label("PATCH"), "PATCH");
        assert_eq!(super::method_label("BREW"), "other");
        assert_eq!(super::method_label("get"), "other", "methods are case-sensitive");
    }
}
