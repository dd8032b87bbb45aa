//! `/management`: version, the scheduler's jobs, emergency stop (admin only).

use actix_web::{middleware::from_fn, web};
use orchestrator_api::management::{
    BackgroundServices, CacheCleared, EmergencyStop, Environment, Job, JobStatus, Jobs, Reloaded,
    ShuttingDown, StoreKind, Version,
};
use orchestrator_app::AppError;

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// Where every route of this module lives.
const SCOPE: &str = "/management";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(resource(SCOPE, "/version").get(documented!(version)).build())
            .service(resource(SCOPE, "/scheduler/jobs").get(documented!(jobs)).build())
            .service(resource(SCOPE, "/services").get(documented!(services)).build())
            .service(
                resource(SCOPE, "/scheduler/jobs/{job_id}/pause")
                    .post(documented!(pause))
                    .build(),
            )
            .service(
                resource(SCOPE, "/scheduler/jobs/{job_id}/resume")
                    .post(documented!(resume))
                    .build(),
            )
            .service(
                resource(SCOPE, "/emergency-stop")
                    .post(documented!(emergency_stop))
                    .build(),
            )
            .service(resource(SCOPE, "/shutdown").post(documented!(shutdown)).build())
            .service(
                resource(SCOPE, "/reload-config")
                    .post(documented!(reload_config))
                    .build(),
            )
            .service(
                resource(SCOPE, "/cache/clear")
                    .post(documented!(clear_cache))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

/// The build and how it runs.
#[utoipa::path(
    get,
    path = "/management/version",
    tag = "management",
    responses((status = 200, description = "Name, version, store and environment", body = Version)),
)]
pub(crate) async fn version(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Version>, ApiError> {
    app.management.authorize(&caller)?;
    let store = match app.settings.store.kind {
        crate::settings::StoreKind::Memory => StoreKind::Memory,
        crate::settings::StoreKind::Postgres { .. } => StoreKind::Postgres,
    };
    let environment = match app.settings.environment {
        crate::settings::Environment::Development => Environment::Development,
        crate::settings::Environment::Test => Environment::Test,
        crate::settings::Environment::Staging => Environment::Staging,
        crate::settings::Environment::Production => Environment::Production,
    };
    Ok(Udc::ok(Version {
        name: "orchestrator".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        udc_version: crate::envelope::UDC_VERSION.into(),
        store,
        environment,
    }))
}

/// The scheduler's jobs: interval, paused, last and next run, errors.
#[utoipa::path(
    get,
    path = "/management/scheduler/jobs",
    tag = "management",
    responses((status = 200, description = "Every job", body = Jobs)),
)]
pub(crate) async fn jobs(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Jobs>, ApiError> {
    Ok(Udc::ok(Jobs {
        jobs: app.management.jobs(&caller)?.into_iter().map(job).collect(),
    }))
}

/// Pauses a job; a paused `task_router` assigns nothing until resumed.
#[utoipa::path(
    post,
    path = "/management/scheduler/jobs/{job_id}/pause",
    tag = "management",
    params(("job_id" = String, Path, description = "The job's id, as `GET /management/scheduler/jobs` lists it")),
    responses((status = 200, description = "The job, paused", body = Job)),
)]
pub(crate) async fn pause(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<String>,
) -> Result<Udc<Job>, ApiError> {
    Ok(Udc::ok(Job {
        job: job(app.management.pause(&caller, &id).await?),
    }))
}

/// Resumes a paused job.
#[utoipa::path(
    post,
    path = "/management/scheduler/jobs/{job_id}/resume",
    tag = "management",
    params(("job_id" = String, Path, description = "The job's id, as `GET /management/scheduler/jobs` lists it")),
    responses((status = 200, description = "The job, running", body = Job)),
)]
pub(crate) async fn resume(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<String>,
) -> Result<Udc<Job>, ApiError> {
    Ok(Udc::ok(Job {
        job: job(app.management.resume(&caller, &id)?),
    }))
}

/// Stops routing and pauses every job at once; reads keep being served.
#[utoipa::path(
    post,
    path = "/management/emergency-stop",
    tag = "management",
    responses((status = 200, description = "Every job paused", body = EmergencyStop)),
)]
pub(crate) async fn emergency_stop(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<EmergencyStop>, ApiError> {
    let jobs = app.management.emergency_stop(&caller).await?;
    Ok(Udc::ok(EmergencyStop {
        stopped: true,
        jobs: jobs.into_iter().map(job).collect(),
        resume: "POST /management/scheduler/jobs/{id}/resume for each job, task_router first".into(),
    }))
}

/// What runs in the background of this process: the router, each
/// scheduler job, recovery, the feeds' fan-out, push delivery, the
/// Registry's registration and the event metrics, as configured.
#[utoipa::path(
    get,
    path = "/management/services",
    tag = "management",
    responses((status = 200, description = "The background services", body = BackgroundServices)),
)]
pub(crate) async fn services(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<BackgroundServices>, ApiError> {
    app.management.authorize(&caller)?;
    Ok(Udc::ok(BackgroundServices {
        services: app.services.names(),
        running: app.services.running(),
    }))
}

/// Stops accepting connections, closes the live feeds, waits for the other
/// requests in flight (up to `SHUTDOWN_GRACE_SECONDS`), answers with what
/// came of that, then stops the server; `orchestrator serve` writes the
/// heartbeats it holds and exits 0. SIGTERM and Ctrl-C do the same.
#[utoipa::path(
    post,
    path = "/management/shutdown",
    tag = "management",
    responses((status = 200, description = "Stopping after this answer (409 if a stop is under way)", body = ShuttingDown)),
)]
pub(crate) async fn shutdown(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<ShuttingDown>, ApiError> {
    app.management.authorize(&caller)?;
    tracing::warn!(by = %caller.subject, "graceful shutdown requested");
    // This request is in flight too: the drain waits for the others.
    let drained = app
        .begin_stop(1)
        .await
        .ok_or_else(|| ApiError::App(AppError::Conflict("a graceful stop is already under way".into())))?;
    // Stop after this answer is sent: stopping waits for it to be written.
    actix_web::rt::spawn(app.finish_stop(drained));
    Ok(Udc::ok(ShuttingDown {
        shutting_down: true,
        graceful: drained.graceful(),
        waited_ms: drained.waited.as_millis() as u64,
        abandoned_requests: drained.abandoned,
    }))
}

/// Clears what the orchestrator remembers instead of asking again: which
/// droplet each service of the mesh is (found again in the store), and,
/// when `REGISTRY_URL` is set, the Registry's signing key (fetched again on
/// the next RS256 token). Tasks and droplets are always read from the store.
#[utoipa::path(
    post,
    path = "/management/cache/clear",
    tag = "management",
    responses((status = 200, description = "What was cleared", body = CacheCleared)),
)]
pub(crate) async fn clear_cache(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<CacheCleared>, ApiError> {
    app.management.authorize(&caller)?;
    app.directory.forget();
    let Some(registry) = &app.registry else {
        return Ok(Udc::ok(CacheCleared {
            cleared: vec!["service_directory".to_owned()],
            message: "services are found in the store again".into(),
        }));
    };
    registry.clear_key_cache().await;
    Ok(Udc::ok(CacheCleared {
        cleared: vec!["service_directory".to_owned(), "registry_signing_key".to_owned()],
        message: "services are found in the store again, and the Registry's signing key is fetched again on the next RS256 token"
            .into(),
    }))
}

/// Reads the environment again. The run-time settings (job intervals,
/// heartbeat and acknowledgement timeouts, recovery and retry backoff) take
/// effect at once; the others are named as needing a restart. An invalid
/// environment changes nothing and is answered 422 with every bad line.
#[utoipa::path(
    post,
    path = "/management/reload-config",
    tag = "management",
    responses((status = 200, description = "What changed", body = Reloaded)),
)]
pub(crate) async fn reload_config(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<Reloaded>, ApiError> {
    app.management.authorize(&caller)?;
    let next = app.settings.reread().map_err(|lines| {
        ApiError::App(orchestrator_domain::ValidationError::new("configuration", lines.join("; ")).into())
    })?;
    let changed = app.management.reload(&caller, next.run.clone())?;
    let names = |names: Vec<&str>| names.into_iter().map(str::to_owned).collect();
    Ok(Udc::ok(Reloaded {
        changed: names(changed),
        requires_restart: names(app.settings.restart_needed(&next)),
    }))
}

/// A scheduler job as the API shows it.
pub(crate) fn job(status: orchestrator_app::JobStatus) -> JobStatus {
    JobStatus {
        id: status.id.to_owned(),
        interval_seconds: status.interval_seconds,
        paused: status.paused,
        leader: status.leader,
        last_run_at: status.last_run_at,
        next_run_at: status.next_run_at,
        last_error: status.last_error,
        runs: status.runs,
        failures: status.failures,
        idle_reason: status.idle_reason,
    }
}
