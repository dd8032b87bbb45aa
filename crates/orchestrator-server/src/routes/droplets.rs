//! `/droplets`: register, heartbeat, list, get, activate, deactivate,
//! capabilities; and `POST /heartbeat`, the mesh's heartbeat.

use actix_web::{middleware::from_fn, web};
use chrono::{DateTime, Utc};
use orchestrator_api::droplets::{
    DeactivateQuery, DropletCapabilities, DropletList, DropletQuery, DropletReply, HeartbeatAck, Registered,
    StatusChanged,
};
use orchestrator_domain::{
    Capability, DropletId, DropletStatus, HeartbeatReport, RegistrationDraft, ServiceHeartbeat,
};
use orchestrator_ports::{DropletChange, DropletFilter};

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// Where every route of this module lives.
const SCOPE: &str = "/droplets";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(resource(SCOPE, "").get(documented!(list)).build())
            .service(resource(SCOPE, "/register").post(documented!(register)).build())
            .service(resource(SCOPE, "/{droplet_id}").get(documented!(get)).build())
            .service(
                resource(SCOPE, "/{droplet_id}/heartbeat")
                    .post(documented!(heartbeat))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{droplet_id}/activate")
                    .post(documented!(activate))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{droplet_id}/deactivate")
                    .post(documented!(deactivate))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{droplet_id}/capabilities")
                    .get(documented!(capabilities))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

/// When the droplet must beat again before it counts as missing, in Unix seconds.
fn next_deadline(last: Option<DateTime<Utc>>, app: &AppState) -> Option<f64> {
    let timeout = chrono::Duration::from_std(app.management.tunables().recovery.heartbeat_timeout).ok()?;
    last.map(|t| (t + timeout).timestamp_millis() as f64 / 1000.0)
}

/// `POST /heartbeat`, the mesh's own heartbeat (integration guide, 2.1).
pub fn configure_mesh(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("", "/heartbeat")
            .post(documented!(service_heartbeat))
            .build()
            .wrap(from_fn(envelope_errors)),
    );
}

/// Registers a droplet, or updates the one with this `droplet_id`. A known
/// droplet registering again is a new process (restarted by its
/// supervisor, say): the tasks the old process held are taken back before
/// this answers (`assigned` ones requeued, `in_progress` ones failed and
/// retried at once). A process that registers again without having lost
/// its work sends `"resume": true` and keeps it. An endpoint on the
/// orchestrator's host (loopback), on the link (link-local) or at a cloud's
/// metadata service is refused (422) unless
/// `ALLOW_PRIVATE_DROPLET_ENDPOINTS` is on, as it is by default in
/// development.
#[utoipa::path(
    post,
    path = "/droplets/register",
    tag = "droplets",
    request_body = RegistrationDraft,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 200, description = "Already known: updated", body = Registered),
    ),
)]
pub(crate) async fn register(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(draft): Body<RegistrationDraft>,
) -> Result<Udc<Registered>, ApiError> {
    let change = app.droplets.register(&caller, draft).await?;
    let d = change.droplet;
    let body = Registered {
        next_heartbeat_deadline: next_deadline(d.last_heartbeat, &app),
        droplet_id: d.droplet_id,
        name: d.name,
        status: d.status,
        capabilities: d.capabilities,
        max_concurrent_tasks: d.max_concurrent_tasks,
        registered_at: d.registered_at,
        heartbeat_interval_seconds: app
            .management
            .tunables()
            .interval(&orchestrator_app::jobs::health_monitor::SPEC)
            .as_secs(),
    };
    Ok(if change.previous_status.is_none() {
        Udc::created(body)
    } else {
        Udc::ok(body)
    })
}

/// A sign of life; an inactive droplet that beats is active again (unless
/// an admin deactivated it).
#[utoipa::path(
    post,
    path = "/droplets/{droplet_id}/heartbeat",
    tag = "droplets",
    params(("droplet_id" = i64, Path, description = "The droplet's id")),
    request_body(content = HeartbeatReport, description = "Optional: an empty body means `active`"),
    responses((status = 200, description = "Recorded", body = HeartbeatAck)),
)]
pub(crate) async fn heartbeat(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
    Body(report): Body<HeartbeatReport>,
) -> Result<Udc<HeartbeatAck>, ApiError> {
    let change = app.droplets.heartbeat(&caller, id.into_inner(), report).await?;
    Ok(acknowledge(&change, &app))
}

/// A heartbeat as the mesh's integration guide sends it: `{"service_id",
/// "status", "metrics"}`, the service found through the Registry's
/// directory (asked again when it lists the service only since the last
/// sync), or `droplet_id`, or neither for the caller's own droplet. The
/// effect and the answer are those of `POST /droplets/{droplet_id}/heartbeat`.
#[utoipa::path(
    post,
    path = "/heartbeat",
    tag = "droplets",
    request_body = ServiceHeartbeat,
    responses((status = 200, description = "Recorded", body = HeartbeatAck)),
)]
pub(crate) async fn service_heartbeat(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(beat): Body<ServiceHeartbeat>,
) -> Result<Udc<HeartbeatAck>, ApiError> {
    let change = app.droplets.service_heartbeat(&caller, beat).await?;
    Ok(acknowledge(&change, &app))
}

fn acknowledge(change: &DropletChange, app: &AppState) -> Udc<HeartbeatAck> {
    Udc::ok(HeartbeatAck {
        droplet_id: change.droplet.droplet_id,
        status: change.droplet.status,
        last_heartbeat: change.droplet.last_heartbeat,
        next_heartbeat_deadline: next_deadline(change.droplet.last_heartbeat, app),
    })
}

/// Lists droplets, by status and capability.
#[utoipa::path(
    get,
    path = "/droplets",
    tag = "droplets",
    params(DropletQuery),
    responses((status = 200, description = "The droplets, by id", body = DropletList)),
)]
pub(crate) async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<DropletQuery>,
) -> Result<Udc<DropletList>, ApiError> {
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
    Ok(Udc::ok(DropletList::new(droplets)))
}

/// One droplet.
#[utoipa::path(
    get,
    path = "/droplets/{droplet_id}",
    tag = "droplets",
    params(("droplet_id" = i64, Path, description = "The droplet's id")),
    responses((status = 200, description = "The droplet", body = DropletReply)),
)]
pub(crate) async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<DropletReply>, ApiError> {
    let droplet = app.droplets.get(&caller, id.into_inner()).await?;
    Ok(Udc::ok(DropletReply { droplet }))
}

/// What a droplet can do.
#[utoipa::path(
    get,
    path = "/droplets/{droplet_id}/capabilities",
    tag = "droplets",
    params(("droplet_id" = i64, Path, description = "The droplet's id")),
    responses((status = 200, description = "Its capabilities", body = DropletCapabilities)),
)]
pub(crate) async fn capabilities(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<DropletCapabilities>, ApiError> {
    let droplet_id = id.into_inner();
    let capabilities: Vec<Capability> = app.droplets.capabilities(&caller, droplet_id).await?;
    Ok(Udc::ok(DropletCapabilities {
        droplet_id,
        capabilities,
    }))
}

fn status_change(change: DropletChange) -> Udc<StatusChanged> {
    Udc::ok(status_changed(change, None))
}

fn status_changed(change: DropletChange, tasks_taken_back: Option<u64>) -> StatusChanged {
    StatusChanged {
        droplet_id: change.droplet.droplet_id,
        status: change.droplet.status,
        previous_status: change.previous_status,
        updated_at: change.droplet.updated_at,
        tasks_taken_back,
    }
}

/// Puts a droplet back into service (admin).
#[utoipa::path(
    post,
    path = "/droplets/{droplet_id}/activate",
    tag = "droplets",
    params(("droplet_id" = i64, Path, description = "The droplet's id")),
    responses((status = 200, description = "Active", body = StatusChanged)),
)]
pub(crate) async fn activate(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
) -> Result<Udc<StatusChanged>, ApiError> {
    Ok(status_change(
        app.droplets.activate(&caller, id.into_inner()).await?,
    ))
}

/// Takes a droplet out of service (admin); heartbeats do not undo it. It
/// drains: no new work is assigned to it, and the tasks it holds run on
/// and may be reported. `?requeue=true` takes them back instead (assigned
/// ones requeued, running ones failed and retried at once).
#[utoipa::path(
    post,
    path = "/droplets/{droplet_id}/deactivate",
    tag = "droplets",
    params(("droplet_id" = i64, Path, description = "The droplet's id"), DeactivateQuery),
    responses((status = 200, description = "Inactive", body = StatusChanged)),
)]
pub(crate) async fn deactivate(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<DropletId>,
    query: web::Query<DeactivateQuery>,
) -> Result<Udc<StatusChanged>, ApiError> {
    let requeue = query.into_inner().requeue;
    let (change, moved) = app.droplets.deactivate(&caller, id.into_inner(), requeue).await?;
    let moved = requeue.then(|| u64::try_from(moved).unwrap_or(u64::MAX));
    Ok(Udc::ok(status_changed(change, moved)))
}
