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

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpResponse, Responder, web};

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

/// The route `path` within `scope` (`""` at the top), to which handlers are
/// added by method ([`Resource::get`] and the like); [`Resource::build`]
/// makes it answer 405 to any other method, with an `Allow` header made
/// from the methods added, and records it with them ([`registered`]), so
/// that a test holds every route to the OpenAPI document.
pub fn resource(scope: &'static str, path: &'static str) -> Resource {
    Resource {
        path: format!("{scope}{path}"),
        methods: Vec::new(),
        resource: web::resource(path),
    }
}

/// `Resource`'s methods that add a handler for one HTTP method each.
macro_rules! by_method {
    ($($name:ident: $method:ident),+ $(,)?) => {
        $(
            #[doc = concat!("Serves `", stringify!($method), "` with `handler`.")]
            pub fn $name<F, Args>(self, handler: F) -> Self
            where
                F: Handler<Args>,
                Args: FromRequest + 'static,
                F::Output: Responder + 'static,
            {
                self.to(Method::$method, web::method(Method::$method).to(handler))
            }
        )+
    };
}

/// A route being registered; see [`resource`].
pub struct Resource {
    path: String,
    methods: Vec<Method>,
    resource: actix_web::Resource,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("path", &self.path)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// The methods a route may take, in the order `Allow` names them.
const METHOD_ORDER: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

impl Resource {
    by_method! {
        get: GET,
        post: POST,
        patch: PATCH,
        delete: DELETE,
    }

    fn to(mut self, method: Method, route: actix_web::Route) -> Self {
        self.methods.push(method);
        self.resource = self.resource.route(route);
        self
    }

    /// The route, answering 405 naming the methods it takes to any other.
    pub fn build(self) -> actix_web::Resource {
        let allow = allow_header(&self.methods);
        REGISTERED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.path, allow);
        self.resource.default_service(web::to(move || async move {
            Err::<HttpResponse, ApiError>(ApiError::MethodNotAllowed { allow })
        }))
    }
}

/// `methods` as an `Allow` header names them (`GET, POST`), one string
/// for each set of methods for the life of the process.
fn allow_header(methods: &[Method]) -> &'static str {
    static HEADERS: std::sync::Mutex<BTreeMap<String, &'static str>> = std::sync::Mutex::new(BTreeMap::new());
    let named = METHOD_ORDER
        .iter()
        .filter(|m| methods.contains(m))
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut headers = HEADERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    headers
        .entry(named.clone())
        .or_insert_with(|| Box::leak(named.into_boxed_str()))
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
