//! `/metrics/…`: the analytics of spec section 5 over `time_range` (`1h`,
//! `24h`, `7d`, `30d`; default `24h`).

use actix_web::{HttpResponse, middleware::from_fn, web};
use orchestrator_api::management::JobStatus;
use orchestrator_app::{DropletHealth, FeedStatus, Performance, Summary, TimeRange};
use orchestrator_domain::DropletId;
use orchestrator_ports::{RoutingStats, TypeBreakdown};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::process_stats::ProcessStats;
use crate::routes::{not_found, resource};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/metrics")
            .wrap(from_fn(envelope_errors))
            .service(resource("", "GET").route(web::get().to(prometheus)))
            .service(resource("/summary", "GET").route(web::get().to(summary)))
            .service(resource("/tasks/performance", "GET").route(web::get().to(performance)))
            .service(resource("/tasks/by-type", "GET").route(web::get().to(by_type)))
            .service(
                resource("/droplets/{droplet_id}/performance", "GET")
                    .route(web::get().to(droplet_performance)),
            )
            .service(resource("/routing", "GET").route(web::get().to(routing)))
            .service(resource("/system/health", "GET").route(web::get().to(system_health)))
            .default_service(web::to(not_found)),
    );
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// `1h`, `24h` (the default), `7d` or `30d`; anything else is 422.
    #[param(value_type = Option<TimeRange>)]
    time_range: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PerformanceQuery {
    /// `1h`, `24h` (the default), `7d` or `30d`; anything else is 422.
    #[param(value_type = Option<TimeRange>)]
    time_range: Option<String>,
    /// Only tasks of this type.
    task_type: Option<String>,
}

fn range(text: Option<&str>) -> Result<TimeRange, ApiError> {
    TimeRange::parse(text).map_err(|e| ApiError::App(e.into()))
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
    Ok(Udc::ok(summary))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskTypePerformance {
    #[serde(flatten)]
    figures: Performance,
    task_type: Option<String>,
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
        figures,
        task_type: query.task_type,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Types {
    time_range: TimeRange,
    types: Vec<TypeBreakdown>,
}

/// Tasks created in the window, by type and status, most numerous first.
#[utoipa::path(
    get,
    path = "/metrics/tasks/by-type",
    tag = "metrics",
    params(RangeQuery),
    responses((status = 200, description = "By type", body = Types)),
)]
pub(crate) async fn by_type(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Types>, ApiError> {
    let time_range = range(query.time_range.as_deref())?;
    let types = app.metrics.by_type(&caller, time_range).await?;
    Ok(Udc::ok(Types { time_range, types }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DropletPerformance {
    #[serde(flatten)]
    figures: Performance,
    droplet_id: DropletId,
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
    Ok(Udc::ok(DropletPerformance { figures, droplet_id }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Routing {
    #[serde(flatten)]
    stats: RoutingStats,
    /// Assignments in the range, over every droplet.
    assignments_total: u64,
    time_range: TimeRange,
}

/// Time to assign, assignments per droplet, stranded work, and rescues by
/// capability.
#[utoipa::path(
    get,
    path = "/metrics/routing",
    tag = "metrics",
    params(RangeQuery),
    responses((status = 200, description = "The figures", body = Routing)),
)]
pub(crate) async fn routing(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Routing>, ApiError> {
    let time_range = range(query.time_range.as_deref())?;
    let stats = app.metrics.routing(&caller, time_range).await?;
    let assignments_total = stats.assignments_per_droplet.values().sum();
    Ok(Udc::ok(Routing {
        stats,
        assignments_total,
        time_range,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SystemHealth {
    store: StoreHealth,
    /// Absent when the store is down.
    droplets: Option<DropletHealth>,
    jobs: Vec<JobStatus>,
    websockets: FeedStatus,
    uptime_seconds: u64,
    memory_mb: Option<f64>,
    cpu_percent: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoreHealth {
    /// `up` or `down`.
    status: &'static str,
    latency_ms: Option<f64>,
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
        Ok(latency) => ("up", Some(latency.as_secs_f64() * 1000.0)),
        Err(orchestrator_app::AppError::Unavailable(_)) => ("down", None),
        Err(other) => return Err(other.into()),
    };
    let interval = app.management.tunables().heartbeat_check_interval;
    let droplets = match app.metrics.droplet_health(&caller, interval).await {
        Ok(health) => Some(health),
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
        websockets: app.feeds.status(),
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
