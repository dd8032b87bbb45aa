//! `/management`: version, the scheduler's jobs, emergency stop (admin only).

use actix_web::{middleware::from_fn, web};
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{method_not_allowed, not_found};
use crate::settings::StoreKind;
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path.to_owned()).default_service(web::to(method_not_allowed));
    cfg.service(
        web::scope("/management")
            .wrap(from_fn(envelope_errors))
            .service(resource("/version").route(web::get().to(version)))
            .service(resource("/scheduler/jobs").route(web::get().to(jobs)))
            .service(resource("/scheduler/jobs/{job_id}/pause").route(web::post().to(pause)))
            .service(resource("/scheduler/jobs/{job_id}/resume").route(web::post().to(resume)))
            .service(resource("/emergency-stop").route(web::post().to(emergency_stop)))
            .service(resource("/shutdown").route(web::post().to(shutdown)))
            .service(resource("/reload-config").route(web::post().to(reload_config)))
            .service(resource("/cache/clear").route(web::post().to(clear_cache)))
            .default_service(web::to(not_found)),
    );
}

async fn version(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    app.management.authorize(&caller)?;
    let store = match app.settings.store {
        StoreKind::Memory => "memory",
        StoreKind::Postgres { .. } => "postgres",
    };
    Ok(Udc::ok(json!({
        "name": "orchestrator",
        "version": env!("CARGO_PKG_VERSION"),
        "udc_version": crate::envelope::UDC_VERSION,
        "store": store,
        "environment": format!("{:?}", app.settings.environment).to_lowercase(),
    })))
}

async fn jobs(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    Ok(Udc::ok(json!({ "jobs": app.management.jobs(&caller)? })))
}

async fn pause(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<String>,
) -> Result<Udc<Value>, ApiError> {
    Ok(Udc::ok(
        json!({ "job": app.management.pause(&caller, &id).await? }),
    ))
}

async fn resume(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<String>,
) -> Result<Udc<Value>, ApiError> {
    Ok(Udc::ok(json!({ "job": app.management.resume(&caller, &id)? })))
}

async fn emergency_stop(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    let jobs = app.management.emergency_stop(&caller).await?;
    Ok(Udc::ok(json!({
        "stopped": true,
        "jobs": jobs,
        "resume": "POST /management/scheduler/jobs/{id}/resume for each job, task_router first",
    })))
}

/// Stops accepting connections, lets in-flight requests (and their
/// transactions) finish, then stops the server; `orchestrator serve` then
/// exits 0. SIGTERM and Ctrl-C do the same.
async fn shutdown(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    app.management.authorize(&caller)?;
    let handle = app
        .server
        .get()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the server handle is not set".into()))?;
    tracing::warn!(by = %caller.subject, "graceful shutdown requested");
    // Stop after this response is sent: stopping waits for in-flight requests, this one included.
    actix_web::rt::spawn(async move { handle.stop(true).await });
    Ok(Udc::ok(json!({ "shutting_down": true, "graceful": true })))
}

/// This version keeps no cache of its own (every read goes to the store);
/// the Registry's public key will be the first.
async fn clear_cache(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    app.management.authorize(&caller)?;
    Ok(Udc::ok(
        json!({ "cleared": [], "message": "no cache to clear: every read goes to the store" }),
    ))
}

/// Reads the environment again. The run-time settings (job intervals,
/// heartbeat and acknowledgement timeouts, recovery and retry backoff) take
/// effect at once; the others are named as needing a restart. An invalid
/// environment changes nothing and is answered 422 with every bad line.
async fn reload_config(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Value>, ApiError> {
    app.management.authorize(&caller)?;
    let next = crate::Settings::from_env().map_err(|lines| {
        ApiError::App(orchestrator_domain::ValidationError::new("environment", lines.join("; ")).into())
    })?;
    let changed = app.management.reload(&caller, crate::startup::tunables(&next))?;
    Ok(Udc::ok(json!({
        "changed": changed,
        "requires_restart": app.settings.restart_needed(&next),
    })))
}
