//! `/droplets`: register, heartbeat, list, get, activate, deactivate, capabilities.

use actix_web::{middleware::from_fn, web};
use chrono::{DateTime, Utc};
use orchestrator_domain::{Capability, DropletId, DropletStatus, HeartbeatReport, RegistrationDraft};
use orchestrator_ports::{DropletChange, DropletFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{method_not_allowed, not_found};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path.to_owned()).default_service(web::to(method_not_allowed));
    cfg.service(
        web::scope("/droplets")
            .wrap(from_fn(envelope_errors))
            .service(resource("").route(web::get().to(list)))
            .service(resource("/register").route(web::post().to(register)))
            .service(resource("/{droplet_id}").route(web::get().to(get)))
            .service(resource("/{droplet_id}/heartbeat").route(web::post().to(heartbeat)))
            .service(resource("/{droplet_id}/activate").route(web::post().to(activate)))
            .service(resource("/{droplet_id}/deactivate").route(web::post().to(deactivate)))
            .service(resource("/{droplet_id}/capabilities").route(web::get().to(capabilities)))
            .default_service(web::to(not_found)),
    );
}

/// When the droplet must beat again before it counts as missing, in Unix seconds.
fn next_deadline(last: Option<DateTime<Utc>>, app: &AppState) -> Option<f64> {
    let timeout = chrono::Duration::from_std(app.management.tunables().recovery.heartbeat_timeout).ok()?;
    last.map(|t| (t + timeout).timestamp_millis() as f64 / 1000.0)
}

async fn register(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(draft): Body<RegistrationDraft>,
) -> Result<Udc<Value>, ApiError> {
    let change = app.droplets.register(&caller, draft).await?;
    let d = &change.droplet;
    let body = json!({
        "droplet_id": d.droplet_id,
        "name": d.name,
        "status": d.status,
        "capabilities": d.capabilities,
        "max_concurrent_tasks": d.max_concurrent_tasks,
        "registered_at": d.registered_at,
        "heartbeat_interval_seconds": app.management.tunables().heartbeat_check_interval.as_secs(),
        "next_heartbeat_deadline": next_deadline(d.last_heartbeat, &app),
    });
    Ok(if change.previous_status.is_none() {
        Udc::created(body)
    } else {
        Udc::ok(body)
    })
}

async fn heartbeat(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
    Body(report): Body<HeartbeatReport>,
) -> Result<Udc<Value>, ApiError> {
    let change = app.droplets.heartbeat(&caller, id.into_inner(), report).await?;
    Ok(Udc::ok(json!({
        "droplet_id": change.droplet.droplet_id,
        "status": change.droplet.status,
        "last_heartbeat": change.droplet.last_heartbeat,
        "next_heartbeat_deadline": next_deadline(change.droplet.last_heartbeat, &app),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    capability: Option<String>,
}

async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<ListQuery>,
) -> Result<Udc<Value>, ApiError> {
    let query = query.into_inner();
    let invalid = |e: orchestrator_domain::ValidationError| ApiError::App(e.into());
    let filter = DropletFilter {
        status: query
            .status
            .as_deref()
            .map(str::parse::<DropletStatus>)
            .transpose()
            .map_err(invalid)?,
        capability: query
            .capability
            .as_deref()
            .map(Capability::new)
            .transpose()
            .map_err(invalid)?,
    };
    let droplets = app.droplets.list(&caller, filter).await?;
    Ok(Udc::ok(json!({ "droplets": droplets, "total": droplets.len() })))
}

async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<Value>, ApiError> {
    let droplet = app.droplets.get(&caller, id.into_inner()).await?;
    Ok(Udc::ok(json!({ "droplet": droplet })))
}

async fn capabilities(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<Value>, ApiError> {
    let id = id.into_inner();
    let capabilities: Vec<Capability> = app.droplets.capabilities(&caller, id).await?;
    Ok(Udc::ok(json!({ "droplet_id": id, "capabilities": capabilities })))
}

fn status_change(change: DropletChange) -> Udc<Value> {
    Udc::ok(json!({
        "droplet_id": change.droplet.droplet_id,
        "status": change.droplet.status,
        "previous_status": change.previous_status,
        "updated_at": change.droplet.updated_at,
    }))
}

async fn activate(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<Value>, ApiError> {
    Ok(status_change(
        app.droplets.activate(&caller, id.into_inner()).await?,
    ))
}

async fn deactivate(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<Value>, ApiError> {
    Ok(status_change(
        app.droplets.deactivate(&caller, id.into_inner()).await?,
    ))
}
