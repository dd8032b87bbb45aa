//! `/metrics/…`: the analytics of spec section 5 over `time_range` (`1h`,
//! `24h`, `7d`, `30d`; default `24h`).

use actix_web::{HttpResponse, middleware::from_fn, web};
use orchestrator_app::TimeRange;
use orchestrator_domain::DropletId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::process_stats::ProcessStats;
use crate::routes::not_found;
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/metrics")
            .wrap(from_fn(envelope_errors))
            .route("", web::get().to(prometheus))
            .route("/summary", web::get().to(summary))
            .route("/tasks/performance", web::get().to(performance))
            .route("/tasks/by-type", web::get().to(by_type))
            .route(
                "/droplets/{droplet_id}/performance",
                web::get().to(droplet_performance),
            )
            .route("/routing", web::get().to(routing))
            .route("/system/health", web::get().to(system_health))
            .default_service(web::to(not_found)),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    time_range: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceQuery {
    time_range: Option<String>,
    task_type: Option<String>,
}

fn range(text: Option<&str>) -> Result<TimeRange, ApiError> {
    TimeRange::parse(text).map_err(|e| ApiError::App(e.into()))
}

async fn summary(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Value>, ApiError> {
    let summary = app
        .metrics
        .summary(&caller, range(query.time_range.as_deref())?)
        .await?;
    Ok(Udc::ok(json!(summary)))
}

async fn performance(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<PerformanceQuery>,
) -> Result<Udc<Value>, ApiError> {
    let query = query.into_inner();
    let range = range(query.time_range.as_deref())?;
    let figures = app
        .metrics
        .performance(&caller, range, query.task_type.clone())
        .await?;
    let mut body = json!(figures);
    body["task_type"] = json!(query.task_type);
    Ok(Udc::ok(body))
}

async fn by_type(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Value>, ApiError> {
    let range = range(query.time_range.as_deref())?;
    let types = app.metrics.by_type(&caller, range).await?;
    Ok(Udc::ok(json!({ "time_range": range, "types": types })))
}

async fn droplet_performance(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Value>, ApiError> {
    let id = id.into_inner();
    let range = range(query.time_range.as_deref())?;
    let figures = app.metrics.droplet_performance(&caller, id, range).await?;
    let mut body = json!(figures);
    body["droplet_id"] = json!(id);
    Ok(Udc::ok(body))
}

async fn routing(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<RangeQuery>,
) -> Result<Udc<Value>, ApiError> {
    let range = range(query.time_range.as_deref())?;
    let stats = app.metrics.routing(&caller, range).await?;
    let mut body = json!(stats);
    body["time_range"] = json!(range);
    Ok(Udc::ok(body))
}

/// The store's latency, the jobs, the feeds and the process.
async fn system_health(
    app: web::Data<AppState>,
    stats: web::Data<ProcessStats>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    let (store, latency) = match app.metrics.store_latency(&caller).await {
        Ok(latency) => ("up", Some(latency.as_secs_f64() * 1000.0)),
        Err(orchestrator_app::AppError::Unavailable(_)) => ("down", None),
        Err(other) => return Err(other.into()),
    };
    let sample = stats.sample();
    Ok(Udc::ok(json!({
        "store": { "status": store, "latency_ms": latency },
        "jobs": app.management.job_states(),
        "websockets": app.feeds.status(),
        "uptime_seconds": sample.uptime_seconds,
        "memory_mb": sample.memory_mb,
        "cpu_percent": sample.cpu_percent,
    })))
}

/// `GET /metrics`: Prometheus' text format, open to scrapers, when
/// `ENABLE_METRICS` is on (else 404).
async fn prometheus(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(handle) = app.prometheus else {
        return Err(ApiError::RouteNotFound);
    };
    let body = crate::telemetry::render(handle, &app).await;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
