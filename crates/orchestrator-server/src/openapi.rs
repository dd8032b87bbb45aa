//! The OpenAPI document (`GET /openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations and the types they answer with, and
//! Swagger UI (`/docs`, when `ENABLE_SWAGGER`), served from assets vendored
//! in `vendor/swagger-ui` so that nothing is fetched at build or run time.
//!
//! The conventions every endpoint shares are applied here once, so that
//! the annotations only say what is particular to each: authenticated
//! endpoints answer in the UDC envelope and need a bearer token; every
//! endpoint may answer the errors of [`ERRORS`] with the error body.

use actix_web::{HttpResponse, ResponseError, web};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes::{self, documented, resource};
use crate::startup::AppState;
use orchestrator_api::error::ErrorCode;
use orchestrator_app::jobs;

/// Endpoints that answer without the envelope, errors included.
const BARE: &[&str] = &[
    "/health",
    "/readyz",
    "/v1/metadata",
    "/capabilities",
    "/state",
    "/dependencies",
    "/openapi.json",
];
/// Endpoints that need no token, besides the bare ones.
const OPEN_TOO: &[&str] = &["/metrics"];

/// The error statuses any endpoint may answer, and when.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed JSON, a bad path id or bad query parameters"),
    ("401", "No token, or a token that is invalid or expired"),
    ("403", "The token lacks the permission this needs"),
    ("404", "No such task, droplet, workflow, schedule or job"),
    ("405", "This path does not take that method"),
    ("409", "The change conflicts with the task's current state"),
    ("413", "The body is larger than MAX_BODY_BYTES"),
    ("415", "A body that is not application/json"),
    ("422", "The body is well-formed JSON but breaks a rule"),
    ("429", "Rate limit reached; see Retry-After"),
    ("503", "The task store is unavailable; see Retry-After"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orchestrator",
        description = "Routes tasks to capable, healthy, least-loaded droplets and tracks them \
                       through a strict state machine. Authenticated endpoints answer in the UDC \
                       envelope; request bodies may be bare or wrapped in one.",
    ),
    components(schemas(orchestrator_domain::PlacementRecord)),
    tags(
        (name = "public", description = "UDC endpoints every droplet has; no token"),
        (name = "tasks", description = "Submit, follow and steer tasks"),
        (name = "schedules", description = "Cron schedules that submit tasks at their fire times"),
        (name = "workflows", description = "Tasks submitted together, some waiting for others"),
        (name = "concurrency", description = "Limits on how many tasks of one concurrency key run at once"),
        (name = "droplets", description = "Registration, heartbeats and the directory"),
        (name = "management", description = "The scheduler's jobs and the process (admin)"),
        (name = "messages", description = "UDC messages to the orchestrator and through it"),
        (name = "metrics", description = "Analytics over the stored tasks, and Prometheus"),
        (name = "feeds", description = "Live events over WebSockets"),
        (name = "tokens", description = "Signing tokens"),
    ),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document: what [`ApiDoc`] says of the whole API, the operation of
/// every registered route ([`routes::documented`]) and the schemas they
/// name, with the shared conventions applied.
pub fn document() -> Document {
    let mut document = ApiDoc::openapi();
    let mut schemas = Vec::new();
    for entry in routes::documented() {
        entry.document(&mut document.paths, &mut schemas);
    }
    document
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    Conventions.modify(&mut document);
    document
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".to_owned()))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "public",
    operation_id = "document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")),
)]
pub(crate) async fn serve_document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("", "/openapi.json")
            .get(documented!(serve_document))
            .build(),
    )
    .service(resource("", "/docs").get_undocumented(swagger_page).build())
    .service(resource("", "/docs/").get_undocumented(swagger_page).build())
    .service(
        resource("", "/docs/{file}")
            .get_undocumented(swagger_asset)
            .build(),
    );
}

const SWAGGER_PAGE: &str = include_str!("../../../vendor/swagger-ui/index.html");
const SWAGGER_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../vendor/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../vendor/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-initializer.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../vendor/swagger-ui/swagger-initializer.js"),
    ),
];

/// What the Swagger UI page may load: its own files and the document;
/// it sets styles inline and shows images as data URLs.
const SWAGGER_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                              img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

async fn swagger_page(app: web::Data<AppState>) -> HttpResponse {
    if !app.settings.features.swagger {
        return ResponseError::error_response(&crate::error::ApiError::RouteNotFound);
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", SWAGGER_POLICY))
        .body(SWAGGER_PAGE)
}

async fn swagger_asset(app: web::Data<AppState>, file: web::Path<String>) -> HttpResponse {
    let asset = SWAGGER_ASSETS.iter().find(|(name, _, _)| *name == file.as_str());
    match asset {
        Some((_, content_type, bytes)) if app.settings.features.swagger => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header(("Cache-Control", "public, max-age=86400"))
            .body(*bytes),
        _ => ResponseError::error_response(&crate::error::ApiError::RouteNotFound),
    }
}

/// Applies the shared conventions to every operation.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A token signed with JWT_SECRET_KEY (HS256): POST /token or `orchestrator token`",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components
            .schemas
            .insert("Envelope".into(), RefOr::T(envelope_schema()));
        components
            .schemas
            .insert("ErrorBody".into(), RefOr::T(error_schema()));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let bare = BARE.contains(&path.as_str());
            let open = bare || OPEN_TOO.contains(&path.as_str());
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ];
            for operation in operations.into_iter().flatten() {
                name_uniquely(operation);
                list_job_ids(operation);
                if !open {
                    operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                }
                if !bare {
                    wrap_in_envelope(operation);
                }
                add_errors(operation, !bare);
            }
        }
    }
}

/// Handlers of different resources share names (`get`, `list`): the
/// operation id is the tag and the handler, such as `tasks_get`.
fn name_uniquely(operation: &mut Operation) {
    let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned();
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        *id = format!("{tag}_{id}");
    }
}

/// A `job_id` parameter takes the id of one of [`jobs::ALL`], listed from
/// there so that the document names every job and no other.
fn list_job_ids(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.name == "job_id" {
            let ids = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(jobs::ALL.iter().map(|job| job.spec.id)));
            parameter.schema = Some(RefOr::T(ids.into()));
        }
    }
}

/// The UDC envelope, with a payload of any shape.
fn envelope_schema() -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .description(Some("The UDC envelope every authenticated endpoint answers in"))
        .property("udc_version", text().examples([serde_json::json!("1.0")]))
        .property(
            "trace_id",
            text().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Uuid,
            ))),
        )
        .property(
            "source",
            text().description(Some("This orchestrator, such as droplet-10")),
        )
        .property("target", text().description(Some("The caller's token subject")))
        .property("message_type", text().description(Some("`response`, or `error`")))
        .property(
            "timestamp",
            text().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            ))),
        )
        .property("payload", Schema::default())
        .required("udc_version")
        .required("trace_id")
        .required("source")
        .required("target")
        .required("message_type")
        .required("timestamp")
        .required("payload")
        .into()
}

/// `{"error": {"code", "message", "details"}}`.
fn error_schema() -> Schema {
    let codes = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::KNOWN.iter().map(ErrorCode::as_str)));
    let details = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(
            "What the error is about: the field, the entity and id, the current status…",
        ));
    let error = ObjectBuilder::new()
        .property("code", codes)
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("details", details)
        .required("code")
        .required("message")
        .required("details");
    ObjectBuilder::new()
        .property("error", error)
        .required("error")
        .into()
}

/// The envelope whose payload is `payload`.
fn enveloped(payload: RefOr<Schema>) -> RefOr<Schema> {
    let narrowed = ObjectBuilder::new()
        .property("payload", payload)
        .required("payload");
    RefOr::T(
        AllOfBuilder::new()
            .item(Ref::from_schema_name("Envelope"))
            .item(narrowed)
            .into(),
    )
}

fn wrap_in_envelope(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if !status.starts_with('2') {
            continue;
        }
        if let Some(content) = response.content.get_mut("application/json")
            && let Some(schema) = content.schema.take()
        {
            content.schema = Some(enveloped(schema));
        }
    }
}

/// Documents [`ERRORS`] on `operation`, and gives the error body to the
/// error statuses it names without one.
fn add_errors(operation: &mut Operation, in_envelope: bool) {
    let body = || {
        let body = RefOr::Ref(Ref::from_schema_name("ErrorBody"));
        let schema = if in_envelope { enveloped(body) } else { body };
        ContentBuilder::new().schema(Some(schema)).build()
    };
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && (status.starts_with('4') || status.starts_with('5'))
            && response.content.is_empty()
        {
            response.content.insert("application/json".into(), body());
        }
    }
    for (status, description) in ERRORS {
        if operation.responses.responses.contains_key(*status) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(*description)
            .content("application/json", body())
            .build();
        operation
            .responses
            .responses
            .insert((*status).to_owned(), RefOr::T(response));
    }
}
