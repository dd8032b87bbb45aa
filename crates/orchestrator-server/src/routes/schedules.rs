//! `/schedules`: cron schedules that create tasks at their fire times.

use actix_web::{middleware::from_fn, web};
use orchestrator_api::schedules::{
    ScheduleBody, ScheduleDeleted, ScheduleList, SchedulePatchBody, ScheduleReply,
};
use orchestrator_app::{SchedulePatch, ScheduleView};
use orchestrator_domain::ScheduleDraft;

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// Where every route of this module lives.
const SCOPE: &str = "/schedules";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(
                resource(SCOPE, "")
                    .post(documented!(create))
                    .get(documented!(list))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{name}")
                    .get(documented!(get))
                    .patch(documented!(update))
                    .delete(documented!(delete))
                    .build(),
            )
            .service(resource(SCOPE, "/{name}/pause").post(documented!(pause)).build())
            .service(
                resource(SCOPE, "/{name}/resume")
                    .post(documented!(resume))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

fn body(view: ScheduleView) -> ScheduleBody {
    let schedule = view.schedule;
    ScheduleBody {
        name: schedule.name,
        cron: schedule.cron,
        timezone: schedule.timezone,
        task: schedule.template,
        overlap: schedule.overlap,
        catch_up: schedule.catch_up,
        paused: schedule.paused,
        created_by: schedule.created_by,
        created_at: schedule.created_at,
        updated_at: schedule.updated_at,
        last_fire_at: schedule.last_fire_at,
        last_task_id: schedule.last_task_id,
        fires: schedule.fires,
        skips: schedule.skips,
        next_runs: view.next_runs,
    }
}

fn reply(view: ScheduleView) -> ScheduleReply {
    ScheduleReply { schedule: body(view) }
}

/// Creates a schedule (`write`): from its first fire time after now, each
/// fire submits `task` as its creator. Missed fire times (the orchestrator
/// down, or the schedule paused) are not caught up one by one: after a
/// stop, only the last one missed fires.
#[utoipa::path(
    post,
    path = "/schedules",
    tag = "schedules",
    request_body = ScheduleDraft,
    responses((status = 201, description = "Created", body = ScheduleReply)),
)]
pub(crate) async fn create(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(draft): Body<ScheduleDraft>,
) -> Result<Udc<ScheduleReply>, ApiError> {
    Ok(Udc::created(reply(app.schedules.create(&caller, draft).await?)))
}

/// Every schedule, by name, with its next fire times.
#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    responses((status = 200, description = "The schedules", body = ScheduleList)),
)]
pub(crate) async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<ScheduleList>, ApiError> {
    let schedules = app.schedules.list(&caller).await?;
    Ok(Udc::ok(ScheduleList {
        schedules: schedules.into_iter().map(body).collect(),
    }))
}

/// One schedule, with its next fire times.
#[utoipa::path(
    get,
    path = "/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses((status = 200, description = "The schedule", body = ScheduleReply)),
)]
pub(crate) async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    name: web::Path<String>,
) -> Result<Udc<ScheduleReply>, ApiError> {
    Ok(Udc::ok(reply(app.schedules.get(&caller, &name).await?)))
}

/// Changes a schedule (`write`): the fields given replace the old ones,
/// and fire times from now on follow them.
#[utoipa::path(
    patch,
    path = "/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body = SchedulePatchBody,
    responses((status = 200, description = "Changed", body = ScheduleReply)),
)]
pub(crate) async fn update(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    name: web::Path<String>,
    Body(patch): Body<SchedulePatchBody>,
) -> Result<Udc<ScheduleReply>, ApiError> {
    let patch = SchedulePatch {
        cron: patch.cron,
        timezone: patch.timezone,
        task: patch.task,
        overlap: patch.overlap,
        catch_up: patch.catch_up,
    };
    Ok(Udc::ok(reply(app.schedules.update(&caller, &name, patch).await?)))
}

/// Deletes a schedule (`write`); the tasks it made stay.
#[utoipa::path(
    delete,
    path = "/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses((status = 200, description = "Deleted", body = ScheduleDeleted)),
)]
pub(crate) async fn delete(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    name: web::Path<String>,
) -> Result<Udc<ScheduleDeleted>, ApiError> {
    app.schedules.delete(&caller, &name).await?;
    Ok(Udc::ok(ScheduleDeleted {
        name: name.into_inner(),
        deleted: true,
    }))
}

/// Pauses a schedule (`write`): it fires nothing until resumed.
#[utoipa::path(
    post,
    path = "/schedules/{name}/pause",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses((status = 200, description = "Paused", body = ScheduleReply)),
)]
pub(crate) async fn pause(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    name: web::Path<String>,
) -> Result<Udc<ScheduleReply>, ApiError> {
    Ok(Udc::ok(reply(
        app.schedules.set_paused(&caller, &name, true).await?,
    )))
}

/// Resumes a paused schedule (`write`): it fires from its next fire time
/// on, none of those it missed.
#[utoipa::path(
    post,
    path = "/schedules/{name}/resume",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses((status = 200, description = "Resumed", body = ScheduleReply)),
)]
pub(crate) async fn resume(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    name: web::Path<String>,
) -> Result<Udc<ScheduleReply>, ApiError> {
    Ok(Udc::ok(reply(
        app.schedules.set_paused(&caller, &name, false).await?,
    )))
}
