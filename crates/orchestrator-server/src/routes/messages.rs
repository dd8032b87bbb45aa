//! UDC messaging: `POST /message` (commands and queries addressed to the
//! orchestrator), `POST /send` (to one droplet) and `POST /broadcast` (to
//! many, admin only).

use actix_web::{HttpMessage, HttpRequest, middleware::from_fn, web};
use chrono::{DateTime, Utc};
use orchestrator_app::{MessageRequest, TaskDetails};
use orchestrator_domain::{Caller, Capability, DropletId, TaskDraft, TaskId, ValidationError};
use orchestrator_ports::DropletFilter;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::envelope::{Body, RawBody, Source, TraceId, UDC_VERSION, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::method_not_allowed;
use crate::routes::tasks::{cancelled_reply, created_reply, task_reply};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/message")
            .wrap(from_fn(envelope_errors))
            .route(web::post().to(message))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/send")
            .wrap(from_fn(envelope_errors))
            .route(web::post().to(send))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/broadcast")
            .wrap(from_fn(envelope_errors))
            .route(web::post().to(broadcast))
            .default_service(web::to(method_not_allowed)),
    );
}

/// A full UDC envelope: every field is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    udc_version: String,
    trace_id: Uuid,
    source: String,
    target: String,
    message_type: String,
    #[allow(dead_code, reason = "required by the envelope; not used to answer")]
    timestamp: DateTime<Utc>,
    payload: Value,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::App(ValidationError::new(field, message).into())
}

/// Reads `value` as `T`, naming `field` when it does not fit.
fn field_of<T: DeserializeOwned>(value: &Value, field: &str) -> Result<T, ApiError> {
    serde_json::from_value(value.clone()).map_err(|e| invalid(field, e.to_string()))
}

async fn message(
    req: HttpRequest,
    app: web::Data<AppState>,
    source: web::Data<Source>,
    Authenticated(caller): Authenticated,
    RawBody(body): RawBody,
) -> Result<Udc<Value>, ApiError> {
    let envelope: Envelope = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidBody(format!("not a full UDC envelope: {e}")))?;
    req.extensions_mut().insert(TraceId(envelope.trace_id));
    if envelope.udc_version != UDC_VERSION {
        return Err(invalid(
            "udc_version",
            format!("only UDC {UDC_VERSION} is spoken here"),
        ));
    }
    if envelope.target != source.0 {
        return Err(invalid(
            "target",
            format!("this is {}; the message is for {}", source.0, envelope.target),
        ));
    }
    if envelope.source.trim().is_empty() {
        return Err(invalid("source", "must name the sender"));
    }
    let payload = &envelope.payload;
    let reply = match envelope.message_type.as_str() {
        "command" => command(&app, &caller, payload).await?,
        "query" => query(&app, &caller, payload).await?,
        other => {
            return Err(invalid(
                "message_type",
                format!("'{other}' is not handled here; send a 'command' or a 'query'"),
            ));
        }
    };
    Ok(Udc::ok(reply))
}

async fn command(app: &AppState, caller: &Caller, payload: &Value) -> Result<Value, ApiError> {
    match payload["command"].as_str() {
        Some("create_task") => {
            let draft: TaskDraft = field_of(&payload["task_data"], "payload.task_data")?;
            let task = app.tasks.create(caller, draft).await?;
            Ok(created_reply(&task))
        }
        Some("cancel_task") => {
            let id: TaskId = field_of(&payload["task_id"], "payload.task_id")?;
            let task = app.tasks.cancel(caller, id).await?;
            serde_json::to_value(cancelled_reply(&task)).map_err(|e| ApiError::Internal(e.to_string()))
        }
        other => Err(unknown("payload.command", other, "create_task, cancel_task")),
    }
}

async fn query(app: &AppState, caller: &Caller, payload: &Value) -> Result<Value, ApiError> {
    match payload["query"].as_str() {
        Some("task_status") => {
            let id: TaskId = field_of(&payload["task_id"], "payload.task_id")?;
            let details: TaskDetails = app.tasks.get(caller, id).await?;
            Ok(task_reply(details))
        }
        Some("droplet_list") => {
            let droplets = app.droplets.list(caller, DropletFilter::default()).await?;
            Ok(json!({ "droplets": droplets, "total": droplets.len() }))
        }
        Some("system_status") => {
            let counts = app.status.snapshot().await?;
            Ok(json!({
                "status": "active",
                "tasks": {
                    "pending": counts.tasks_pending,
                    "active": counts.tasks_active,
                    "completed": counts.tasks_completed,
                    "failed": counts.tasks_failed,
                },
                "droplets": { "active": counts.droplets_active, "total": counts.droplets_total },
                "feeds": app.feeds.status(),
            }))
        }
        other => Err(unknown(
            "payload.query",
            other,
            "task_status, droplet_list, system_status",
        )),
    }
}

fn unknown(field: &str, given: Option<&str>, known: &str) -> ApiError {
    match given {
        Some(name) => invalid(field, format!("'{name}' is not known; known: {known}")),
        None => invalid(field, format!("is required; one of {known}")),
    }
}

/// The parameters of `/send` and `/broadcast`, as query parameters (the
/// spec's form, `payload` as JSON text) or as a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageParams {
    target_droplet_id: Option<DropletId>,
    message_type: Option<String>,
    payload: Option<Value>,
    capability_filter: Option<String>,
}

impl MessageParams {
    /// The body's values, then the query's for what the body leaves out.
    fn merge(body: MessageParams, query: MessageParams) -> Result<MessageParams, ApiError> {
        let payload = match (body.payload, query.payload) {
            (Some(payload), _) => Some(payload),
            // In a query string the payload is JSON text.
            (None, Some(Value::String(text))) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| invalid("payload", format!("is not valid JSON: {e}")))?,
            ),
            (None, other) => other,
        };
        Ok(MessageParams {
            target_droplet_id: body.target_droplet_id.or(query.target_droplet_id),
            message_type: body.message_type.or(query.message_type),
            payload,
            capability_filter: body.capability_filter.or(query.capability_filter),
        })
    }

    fn request(&mut self, trace_id: Uuid) -> Result<MessageRequest, ApiError> {
        Ok(MessageRequest {
            message_type: self
                .message_type
                .take()
                .ok_or_else(|| invalid("message_type", "is required"))?,
            payload: self.payload.take().unwrap_or_else(|| json!({})),
            trace_id,
        })
    }
}

fn trace_of(req: &HttpRequest) -> Uuid {
    req.extensions()
        .get::<TraceId>()
        .map_or_else(Uuid::new_v4, |t| t.0)
}

async fn send(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<QueryParams>,
    Body(body): Body<MessageParams>,
) -> Result<Udc<Value>, ApiError> {
    let mut params = MessageParams::merge(body, query.into_inner().into_params())?;
    let target = params
        .target_droplet_id
        .ok_or_else(|| invalid("target_droplet_id", "is required"))?;
    let request = params.request(trace_of(&req))?;
    let reply = app.messaging.send(&caller, target, request).await?;
    Ok(Udc::ok(json!({
        "target_droplet_id": target,
        "status": reply.status,
        "response": reply.body,
    })))
}

async fn broadcast(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<QueryParams>,
    Body(body): Body<MessageParams>,
) -> Result<Udc<Value>, ApiError> {
    app.broadcast_limit.check(&caller.subject)?;
    let mut params = MessageParams::merge(body, query.into_inner().into_params())?;
    let capability = params
        .capability_filter
        .take()
        .map(|c| Capability::new(&c))
        .transpose()
        .map_err(|e| ApiError::App(e.into()))?;
    let request = params.request(trace_of(&req))?;
    let outcomes = app.messaging.broadcast(&caller, capability, request).await?;
    let delivered = outcomes.iter().filter(|o| o.outcome == "delivered").count();
    Ok(Udc::ok(json!({
        "targets": outcomes.len(),
        "delivered": delivered,
        "results": outcomes,
    })))
}

/// Query parameters arrive as text; `payload` stays text until merged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryParams {
    target_droplet_id: Option<DropletId>,
    message_type: Option<String>,
    payload: Option<String>,
    capability_filter: Option<String>,
}

impl QueryParams {
    fn into_params(self) -> MessageParams {
        MessageParams {
            target_droplet_id: self.target_droplet_id,
            message_type: self.message_type,
            payload: self.payload.map(Value::String),
            capability_filter: self.capability_filter,
        }
    }
}
