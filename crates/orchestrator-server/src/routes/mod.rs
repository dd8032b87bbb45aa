//! One module per resource, each with `configure`; this module holds what
//! they share: the error handlers for paths, queries and unknown routes.

pub mod concurrency;
pub mod droplets;
pub mod feeds;
pub mod management;
pub mod messages;
pub mod metrics;
pub mod public;
pub mod schedules;
pub mod tasks;
pub mod tokens;
pub mod workflows;

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpResponse, Responder, web};
use utoipa::openapi::path::{HttpMethod, Operation, Paths};
use utoipa::openapi::{RefOr, schema::Schema};

use crate::error::ApiError;

/// Registers every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(path_config())
        .app_data(query_config())
        .configure(public::configure)
        .configure(tasks::configure)
        .configure(schedules::configure)
        .configure(workflows::configure)
        .configure(concurrency::configure)
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
/// added by method, each with its OpenAPI entry ([`Resource::get`] and the
/// like, given [`documented!`]); [`Resource::build`] makes it answer 405
/// to any other method, with an `Allow` header made from the methods
/// added, and records it ([`registered`]). The OpenAPI document is made
/// from those records, so a route is documented where it is registered.
pub fn resource(scope: &'static str, path: &'static str) -> Resource {
    Resource {
        path: format!("{scope}{path}"),
        methods: Vec::new(),
        entries: Vec::new(),
        resource: web::resource(path),
    }
}

/// A handler with the OpenAPI entry of its `#[utoipa::path]` annotation.
pub use orchestrator_server_macros::documented;

/// A handler and its OpenAPI entry; made by [`documented!`].
#[derive(Debug)]
pub struct Documented<F> {
    handler: F,
    entry: Entry,
}

impl<F> Documented<F> {
    /// `handler` documented by `entry`, the type its annotation generated.
    pub fn new<P>(handler: F, _entry: P) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
    {
        Self {
            handler,
            entry: Entry {
                path: P::path,
                methods: P::methods,
                operation: P::operation,
                tags: P::tags,
                schemas: P::schemas,
            },
        }
    }
}

/// What an annotation generated, kept as functions so that an operation
/// is built only when the document is.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    path: fn() -> String,
    methods: fn() -> Vec<HttpMethod>,
    operation: fn() -> Operation,
    tags: fn() -> Vec<&'static str>,
    schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl Entry {
    /// Adds the operation to `paths` and the schemas it names to `schemas`.
    pub fn document(&self, paths: &mut Paths, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let mut operation = (self.operation)();
        let tags = (self.tags)().into_iter().map(str::to_owned);
        operation.tags.get_or_insert_with(Vec::new).extend(tags);
        paths.add_path_operation((self.path)(), (self.methods)(), operation);
        (self.schemas)(schemas);
    }

    /// Why this entry does not describe `method` on `path`, if it does not.
    fn mismatch(&self, path: &str, method: &Method) -> Option<String> {
        let (documented, methods) = ((self.path)(), (self.methods)());
        let same_method = methods == [http_method(method)?];
        (documented != path || !same_method).then(|| {
            let methods = serde_json::to_string(&methods).unwrap_or_default();
            format!("{method} {path} is registered with a handler whose #[utoipa::path] documents {methods} {documented}")
        })
    }
}

fn http_method(method: &Method) -> Option<HttpMethod> {
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        _ => return None,
    })
}

/// `Resource`'s methods that add a documented handler for one HTTP method
/// each.
macro_rules! by_method {
    ($($name:ident: $method:ident),+ $(,)?) => {
        $(
            #[doc = concat!("Serves `", stringify!($method), "` with the handler, documented by its entry.")]
            pub fn $name<F, Args>(mut self, documented: Documented<F>) -> Self
            where
                F: Handler<Args>,
                Args: FromRequest + 'static,
                F::Output: Responder + 'static,
            {
                self.entries.push((Method::$method, documented.entry));
                self.to(Method::$method, web::method(Method::$method).to(documented.handler))
            }
        )+
    };
}

/// A route being registered; see [`resource`].
pub struct Resource {
    path: String,
    methods: Vec<Method>,
    entries: Vec<(Method, Entry)>,
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
        put: PUT,
        patch: PATCH,
        delete: DELETE,
    }

    /// Serves `GET` with `handler`, which the OpenAPI document leaves out
    /// (the pages of its own viewer).
    pub fn get_undocumented<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.to(Method::GET, web::method(Method::GET).to(handler))
    }

    fn to(mut self, method: Method, route: actix_web::Route) -> Self {
        self.methods.push(method);
        self.resource = self.resource.route(route);
        self
    }

    /// The route, answering 405 naming the methods it takes to any other.
    ///
    /// # Panics
    /// When a handler's annotation documents another path or method than
    /// the one it is registered for: the document would lie, and every
    /// test that starts the server says so.
    pub fn build(self) -> actix_web::Resource {
        for (method, entry) in &self.entries {
            if let Some(mismatch) = entry.mismatch(&self.path, method) {
                panic!("{mismatch}");
            }
        }
        let allow = allow_header(&self.methods);
        let entries = self.entries.into_iter().map(|(_, entry)| entry).collect();
        REGISTERED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.path, Registered { allow, entries });
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

/// A registered route: the methods it takes and the entries documenting
/// them.
struct Registered {
    allow: &'static str,
    entries: Vec<Entry>,
}

static REGISTERED: std::sync::Mutex<BTreeMap<String, Registered>> = std::sync::Mutex::new(BTreeMap::new());

/// Every path this process has registered, with the methods it takes (as
/// its `Allow` header names them).
pub fn registered() -> BTreeMap<String, &'static str> {
    let registered = REGISTERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    registered
        .iter()
        .map(|(path, route)| (path.clone(), route.allow))
        .collect()
}

/// The entries documenting every route of the API, found by registering
/// them once ([`configure`] on an application that is never started).
pub fn documented() -> Vec<Entry> {
    drop(actix_web::App::new().configure(configure));
    let registered = REGISTERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    registered
        .values()
        .flat_map(|route| route.entries.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler documented as `GET /documented`.
    #[utoipa::path(get, path = "/documented", tag = "tests", responses((status = 200, description = "Always")))]
    async fn documented_handler() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[test]
    fn a_route_is_documented_by_its_handlers_annotation() {
        let route = resource("", "/documented").get(documented!(documented_handler));
        let entry = route.entries[0].1;
        assert_eq!(entry.mismatch("/documented", &Method::GET), None);
        let mut paths = Paths::new();
        entry.document(&mut paths, &mut Vec::new());
        let operation = paths.paths["/documented"].get.clone().expect("documented");
        assert_eq!(operation.tags, Some(vec!["tests".to_owned()]));
    }

    #[test]
    #[should_panic(
        expected = "POST /elsewhere is registered with a handler whose #[utoipa::path] documents [\"get\"] /documented"
    )]
    fn a_handler_registered_where_its_annotation_does_not_say_fails_to_build() {
        let _ = resource("", "/elsewhere")
            .post(documented!(documented_handler))
            .build();
    }
}
