//! `/metrics/…`: the analytics of spec section 5 over `time_range` (`1h`,
//! `24h`, `7d`, `30d`; default `24h`).

use actix_web::{HttpResponse, middleware::from_fn, web};
use orchestrator_api::metrics::{
    DropletHealth, DropletPerformance, Percentiles, Performance, PerformanceQuery, RangeQuery, RescueCounts,
    RoutingStats, StoreHealth, StoreStatus, Summary, TaskTypePerformance, TaskTypes, Throughput, TimeRange,
    TypeBreakdown,
};
use orchestrator_domain::DropletId;

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::process_stats::ProcessStats;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// `GET /metrics/system/health`, with the feeds' figures as the feeds
/// endpoint answers them.
use orchestrator_api::metrics::SystemHealth;

/// Where every route of this module lives.
const SCOPE: &str = "/metrics";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(resource(SCOPE, "").get(documented!(prometheus)).build())
            .service(resource(SCOPE, "/summary").get(documented!(summary)).build())
            .service(
                resource(SCOPE, "/tasks/performance")
                    .get(documented!(performance))
                    .build(),
            )
            .service(
                resource(SCOPE, "/tasks/by-type")
                    .get(documented!(by_type))
                    .build(),
            )
            .service(
                resource(SCOPE, "/droplets/{droplet_id}/performance")
                    .get(documented!(droplet_performance))
                    .build(),
            )
            .service(resource(SCOPE, "/routing").get(documented!(routing)).build())
            .service(
                resource(SCOPE, "/system/health")
                    .get(documented!(system_health))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

fn range(text: Option<&str>) -> Result<orchestrator_app::TimeRange, ApiError> {
    orchestrator_app::TimeRange::parse(text).map_err(|e| ApiError::App(e.into()))
}

/// Tasks and droplets by status now, and throughput in the window.
#[utoipa::path(
    get,
    path = "/metrics/summary",
    tag = "metrics",
    params(RangeQuery),
    responses((status = 200, description = "The summary", body = Summary)),
)]
pub(crate) async fn summary(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Summary>, ApiError> {
    let summary = app
        .metrics
        .summary(&caller, range(query.time_range.as_deref())?)
        .await?;
    Ok(Udc::ok(summary_of(summary)))
}

/// Count, success rate and percentiles of queue wait and run time.
#[utoipa::path(
    get,
    path = "/metrics/tasks/performance",
    tag = "metrics",
    params(PerformanceQuery),
    responses((status = 200, description = "The figures", body = TaskTypePerformance)),
)]
pub(crate) async fn performance(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<PerformanceQuery>,
) -> Result<Udc<TaskTypePerformance>, ApiError> {
    let query = query.into_inner();
    let range = range(query.time_range.as_deref())?;
    let figures = app
        .metrics
        .performance(&caller, range, query.task_type.clone())
        .await?;
    Ok(Udc::ok(TaskTypePerformance {
        figures: performance_of(figures),
        task_type: query.task_type,
    }))
}

/// Tasks created in the window, by type and status, most numerous first.
#[utoipa::path(
    get,
    path = "/metrics/tasks/by-type",
    tag = "metrics",
    params(RangeQuery),
    responses((status = 200, description = "By type", body = TaskTypes)),
)]
pub(crate) async fn by_type(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<TaskTypes>, ApiError> {
    let time_range = range(query.time_range.as_deref())?;
    let types = app.metrics.by_type(&caller, time_range).await?;
    Ok(Udc::ok(TaskTypes {
        time_range: time_range_of(time_range),
        types: types.into_iter().map(type_breakdown_of).collect(),
    }))
}

/// The figures of the tasks one droplet ran.
#[utoipa::path(
    get,
    path = "/metrics/droplets/{droplet_id}/performance",
    tag = "metrics",
    params(("droplet_id" = i64, Path, description = "The droplet's id"), RangeQuery),
    responses((status = 200, description = "The figures", body = DropletPerformance)),
)]
pub(crate) async fn droplet_performance(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
    query: web::Query<RangeQuery>,
) -> Result<Udc<DropletPerformance>, ApiError> {
    let droplet_id = id.into_inner();
    let range = range(query.time_range.as_deref())?;
    let figures = app
        .metrics
        .droplet_performance(&caller, droplet_id, range)
        .await?;
    Ok(Udc::ok(DropletPerformance {
        figures: performance_of(figures),
        droplet_id,
    }))
}

/// Time to assign, assignments per droplet, stranded work, and rescues by
/// capability.
#[utoipa::path(
    get,
    path = "/metrics/routing",
    tag = "metrics",
    params(RangeQuery),
    responses((status = 200, description = "The figures", body = RoutingStats)),
)]
pub(crate) async fn routing(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<RoutingStats>, ApiError> {
    let time_range = range(query.time_range.as_deref())?;
    let stats = app.metrics.routing(&caller, time_range).await?;
    Ok(Udc::ok(routing_of(stats, time_range)))
}

/// The store's latency, the droplets, the jobs, the feeds and the process.
#[utoipa::path(
    get,
    path = "/metrics/system/health",
    tag = "metrics",
    responses((status = 200, description = "The figures", body = SystemHealth)),
)]
pub(crate) async fn system_health(
    app: web::Data<AppState>,
    stats: web::Data<ProcessStats>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<SystemHealth>, ApiError> {
    let (status, latency_ms) = match app.metrics.store_latency(&caller).await {
        Ok(latency) => (StoreStatus::Up, Some(latency.as_secs_f64() * 1000.0)),
        Err(orchestrator_app::AppError::Unavailable(_)) => (StoreStatus::Down, None),
        Err(other) => return Err(other.into()),
    };
    let interval = app
        .management
        .tunables()
        .interval(&orchestrator_app::jobs::health_monitor::SPEC);
    let droplets = match app.metrics.droplet_health(&caller, interval).await {
        Ok(health) => Some(droplet_health_of(health)),
        Err(orchestrator_app::AppError::Unavailable(_)) => None,
        Err(other) => return Err(other.into()),
    };
    let sample = stats.sample();
    Ok(Udc::ok(SystemHealth {
        store: StoreHealth { status, latency_ms },
        droplets,
        jobs: app
            .management
            .job_states()
            .into_iter()
            .map(crate::routes::management::job)
            .collect(),
        websockets: crate::routes::feeds::feed_status(app.feeds.status()),
        uptime_seconds: sample.uptime_seconds,
        memory_mb: sample.memory_mb,
        cpu_percent: sample.cpu_percent,
    }))
}

/// Prometheus' text format, open to scrapers, when `ENABLE_METRICS` is on
/// (else 404).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")),
)]
pub(crate) async fn prometheus(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(handle) = app.prometheus else {
        return Err(ApiError::RouteNotFound);
    };
    let body = crate::telemetry::render(handle, &app).await;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

fn time_range_of(range: orchestrator_app::TimeRange) -> TimeRange {
    match range {
        orchestrator_app::TimeRange::Hour => TimeRange::Hour,
        orchestrator_app::TimeRange::Day => TimeRange::Day,
        orchestrator_app::TimeRange::Week => TimeRange::Week,
        orchestrator_app::TimeRange::Month => TimeRange::Month,
    }
}

fn summary_of(summary: orchestrator_app::Summary) -> Summary {
    Summary {
        time_range: time_range_of(summary.time_range),
        tasks_by_status: summary.tasks_by_status,
        tasks_total: summary.tasks_total,
        droplets_by_status: summary.droplets_by_status,
        droplets_total: summary.droplets_total,
        throughput: Throughput {
            created: summary.throughput.created,
            finished: summary.throughput.finished,
        },
        finished_per_hour: summary.finished_per_hour,
    }
}

fn percentiles_of(percentiles: orchestrator_ports::Percentiles) -> Percentiles {
    Percentiles {
        p50: percentiles.p50,
        p95: percentiles.p95,
        p99: percentiles.p99,
    }
}

fn performance_of(performance: orchestrator_app::Performance) -> Performance {
    let figures = performance.figures;
    Performance {
        time_range: time_range_of(performance.time_range),
        finished: figures.finished,
        completed: figures.completed,
        failed: figures.failed,
        queue_wait_seconds: percentiles_of(figures.queue_wait_seconds),
        run_seconds: percentiles_of(figures.run_seconds),
        success_rate: performance.success_rate,
    }
}

fn type_breakdown_of(breakdown: orchestrator_ports::TypeBreakdown) -> TypeBreakdown {
    TypeBreakdown {
        task_type: breakdown.task_type,
        total: breakdown.total,
        by_status: breakdown.by_status,
    }
}

fn routing_of(stats: orchestrator_ports::RoutingStats, range: orchestrator_app::TimeRange) -> RoutingStats {
    RoutingStats {
        time_to_assign_seconds: percentiles_of(stats.time_to_assign_seconds),
        assignments_total: stats.assignments_per_droplet.values().sum(),
        assignments_per_droplet: stats.assignments_per_droplet,
        pending_without_capable_droplet: stats.pending_without_capable_droplet,
        rescues: stats.rescues.into_iter().map(rescue_counts_of).collect(),
        time_range: time_range_of(range),
    }
}

fn rescue_counts_of(counts: orchestrator_ports::RescueCounts) -> RescueCounts {
    RescueCounts {
        capability: counts.capability,
        reassignments: counts.reassignments,
        ack_timeouts: counts.ack_timeouts,
        stale_reports_refused: counts.stale_reports_refused,
        deadline_failures: counts.deadline_failures,
        deadline_at_risk: counts.deadline_at_risk,
    }
}

fn droplet_health_of(health: orchestrator_app::DropletHealth) -> DropletHealth {
    DropletHealth {
        total: health.total,
        by_status: health.by_status,
        late_heartbeats: health.late_heartbeats,
        heartbeat_interval_seconds: health.heartbeat_interval_seconds,
    }
}
