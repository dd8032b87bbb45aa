//! `/concurrency-limits`: limits per concurrency key.

use actix_web::{middleware::from_fn, web};
use orchestrator_api::concurrency::{
    ConcurrencyLimitBody, ConcurrencyLimitDeleted, ConcurrencyLimitList, ConcurrencyLimitReply,
    SetConcurrencyLimit,
};
use orchestrator_ports::KeyUsage;

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// Where every route of this module lives.
const SCOPE: &str = "/concurrency-limits";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(resource(SCOPE, "").get(documented!(list)).build())
            .service(
                resource(SCOPE, "/{key}")
                    .get(documented!(get))
                    .put(documented!(set))
                    .delete(documented!(delete))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

fn body(usage: KeyUsage) -> ConcurrencyLimitBody {
    ConcurrencyLimitBody {
        key: usage.limit.key,
        max_running: usage.limit.max_running,
        running: usage.running,
        updated_by: usage.limit.updated_by,
        updated_at: usage.limit.updated_at,
    }
}

/// Every limit, by key, with how many of its tasks run now.
#[utoipa::path(
    get,
    path = "/concurrency-limits",
    tag = "concurrency",
    responses((status = 200, description = "The limits", body = ConcurrencyLimitList)),
)]
pub(crate) async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Udc<ConcurrencyLimitList>, ApiError> {
    let limits = app.concurrency.list(&caller).await?;
    Ok(Udc::ok(ConcurrencyLimitList {
        limits: limits.into_iter().map(body).collect(),
    }))
}

/// One key's limit; 404 when it has none (its tasks run without one).
#[utoipa::path(
    get,
    path = "/concurrency-limits/{key}",
    tag = "concurrency",
    params(("key" = String, Path, description = "The concurrency key")),
    responses((status = 200, description = "The limit", body = ConcurrencyLimitReply)),
)]
pub(crate) async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    key: web::Path<String>,
) -> Result<Udc<ConcurrencyLimitReply>, ApiError> {
    let usage = app.concurrency.get(&caller, &key).await?;
    Ok(Udc::ok(ConcurrencyLimitReply { limit: body(usage) }))
}

/// Sets how many tasks with `concurrency_key` = `key` may be assigned or
/// running at once, across replicas (`admin`). A task over it waits
/// `pending` (reason `concurrency_limited`) until one ends; lowering it
/// stops nothing already running.
#[utoipa::path(
    put,
    path = "/concurrency-limits/{key}",
    tag = "concurrency",
    params(("key" = String, Path, description = "The concurrency key: letters, digits and _ . : -")),
    request_body = SetConcurrencyLimit,
    responses((status = 200, description = "Set", body = ConcurrencyLimitReply)),
)]
pub(crate) async fn set(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    key: web::Path<String>,
    Body(limit): Body<SetConcurrencyLimit>,
) -> Result<Udc<ConcurrencyLimitReply>, ApiError> {
    let usage = app.concurrency.set(&caller, &key, limit.max_running).await?;
    Ok(Udc::ok(ConcurrencyLimitReply { limit: body(usage) }))
}

/// Removes a key's limit (`admin`): its tasks run without one.
#[utoipa::path(
    delete,
    path = "/concurrency-limits/{key}",
    tag = "concurrency",
    params(("key" = String, Path, description = "The concurrency key")),
    responses((status = 200, description = "Removed", body = ConcurrencyLimitDeleted)),
)]
pub(crate) async fn delete(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    key: web::Path<String>,
) -> Result<Udc<ConcurrencyLimitDeleted>, ApiError> {
    app.concurrency.delete(&caller, &key).await?;
    Ok(Udc::ok(ConcurrencyLimitDeleted {
        key: key.into_inner(),
        deleted: true,
    }))
}
