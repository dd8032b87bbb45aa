//! One module per resource, each with `configure`; this module holds what
//! they share: the error handlers for paths, queries and unknown routes.

pub mod droplets;
pub mod feeds;
pub mod health;
pub mod management;
pub mod messages;
pub mod metrics;
pub mod service;
pub mod tasks;
pub mod tokens;

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// Registers every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(path_config())
        .app_data(query_config())
        .configure(health::configure)
        .configure(service::configure)
        .configure(tasks::configure)
        .configure(droplets::configure)
        .configure(droplets::configure_mesh)
        .configure(management::configure)
        .configure(feeds::configure)
        .configure(messages::configure)
        .configure(metrics::configure)
        .configure(tokens::configure)
        .configure(crate::openapi::configure);
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _| {
        ApiError::InvalidPath(format!(
            "invalid id in the path: {err}; ids are positive integers"
        ))
        .into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| ApiError::InvalidQuery(format!("invalid query parameters: {err}")).into())
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

/// `path` within `scope` (`""` at the top), answering 405 with an `Allow`
/// header of `allow` to the methods it does not take. Every route is
/// recorded with its methods ([`registered`]), so that a test holds them
/// to the OpenAPI document.
pub fn resource(scope: &str, path: &str, allow: &'static str) -> actix_web::Resource {
    REGISTERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(format!("{scope}{path}"), allow);
    web::resource(path.to_owned()).default_service(web::to(move || async move {
        Err::<HttpResponse, ApiError>(ApiError::MethodNotAllowed { allow })
    }))
}

static REGISTERED: std::sync::Mutex<BTreeMap<String, &'static str>> = std::sync::Mutex::new(BTreeMap::new());

/// Every path this process has registered, with the methods it takes (as
/// its `Allow` header names them).
pub fn registered() -> BTreeMap<String, &'static str> {
    REGISTERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}
