//! UDC messaging: `POST /message` (commands and queries addressed to the
//! orchestrator), `POST /send` (to one droplet) and `POST /broadcast` (to
//! many, admin only).

use actix_web::{HttpMessage, HttpRequest, middleware::from_fn, web};
use chrono::{DateTime, Utc};
use orchestrator_app::tasks::CreationRequest;
use orchestrator_app::{BroadcastOutcome, FeedStatus, MessageRequest, TaskDetails};
use orchestrator_domain::{Caller, Capability, DropletId, TaskDraft, TaskId, ValidationError};
use orchestrator_ports::DropletFilter;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::envelope::{Body, RawBody, Source, TraceId, UDC_VERSION, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::resource;
use orchestrator_api::droplets::DropletList;
use orchestrator_api::tasks::{Cancelled, TaskCreated, TaskReply};

use crate::routes::tasks::{cancelled_reply, created_reply, task_reply};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/message", "POST")
            .wrap(from_fn(envelope_errors))
            .route(web::post().to(message)),
    )
    .service(
        resource("/send", "POST")
            .wrap(from_fn(envelope_errors))
            .route(web::post().to(send)),
    )
    .service(
        resource("/broadcast", "POST")
            .wrap(from_fn(envelope_errors))
            .route(web::post().to(broadcast)),
    );
}

/// A full UDC envelope: every field is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Envelope {
    udc_version: String,
    trace_id: Uuid,
    source: String,
    target: String,
    message_type: String,
    #[allow(dead_code, reason = "required by the envelope; not used to answer")]
    timestamp: DateTime<Utc>,
    /// `{"command": "create_task", "task_data": {…}}`,
    /// `{"command": "cancel_task", "task_id": N}`,
    /// `{"query": "task_status", "task_id": N}`, `{"query": "droplet_list"}`
    /// or `{"query": "system_status"}`.
    payload: Value,
}

/// What a command or query answers: what the matching endpoint answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum MessageReply {
    Created(TaskCreated),
    Cancelled(Cancelled),
    Task(Box<TaskReply>),
    Droplets(DropletList),
    System(SystemStatus),
}

/// The `system_status` query's answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SystemStatus {
    status: &'static str,
    tasks: TaskCounts,
    droplets: DropletCounts,
    feeds: FeedStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskCounts {
    pending: u64,
    active: u64,
    completed: u64,
    failed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DropletCounts {
    active: u64,
    total: u64,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::App(ValidationError::new(field, message).into())
}

/// Reads `value` as `T`, naming `field` when it does not fit.
fn field_of<T: DeserializeOwned>(value: &Value, field: &str) -> Result<T, ApiError> {
    serde_json::from_value(value.clone()).map_err(|e| invalid(field, e.to_string()))
}

/// A command or query addressed to the orchestrator, in a full envelope;
/// the reply is an envelope of type `response`.
#[utoipa::path(
    post,
    path = "/message",
    tag = "messages",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Makes a `create_task` command happen once, as on `POST /tasks`")),
    request_body = Envelope,
    responses((status = 200, description = "The command's or query's answer", body = MessageReply)),
)]
pub(crate) async fn message(
    req: HttpRequest,
    app: web::Data<AppState>,
    source: web::Data<Source>,
    Authenticated(caller): Authenticated,
    RawBody(body): RawBody,
) -> Result<Udc<MessageReply>, ApiError> {
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
    let key = crate::routes::tasks::idempotency_key(&req)?;
    let reply = match envelope.message_type.as_str() {
        "command" => command(&app, &caller, payload, key.as_deref()).await?,
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

/// Runs a command; `key` is the request's `Idempotency-Key`, which makes a
/// `create_task` happen once.
async fn command(
    app: &AppState,
    caller: &Caller,
    payload: &Value,
    key: Option<&str>,
) -> Result<MessageReply, ApiError> {
    match payload["command"].as_str() {
        Some("create_task") => {
            let draft: TaskDraft = field_of(&payload["task_data"], "payload.task_data")?;
            let task = match key {
                None => app.tasks.create(caller, draft).await?,
                Some(key) => app
                    .tasks
                    .create_once(caller, CreationRequest::Message, vec![draft], key)
                    .await?
                    .tasks
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::Internal("a creation under a key made no task".into()))?,
            };
            Ok(MessageReply::Created(created_reply(app, &task)))
        }
        Some("cancel_task") => {
            let id: TaskId = field_of(&payload["task_id"], "payload.task_id")?;
            let task = app.tasks.cancel(caller, id).await?;
            Ok(MessageReply::Cancelled(cancelled_reply(&task)))
        }
        other => Err(unknown("payload.command", other, "create_task, cancel_task")),
    }
}

async fn query(app: &AppState, caller: &Caller, payload: &Value) -> Result<MessageReply, ApiError> {
    match payload["query"].as_str() {
        Some("task_status") => {
            let id: TaskId = field_of(&payload["task_id"], "payload.task_id")?;
            let details: TaskDetails = app.tasks.get(caller, id).await?;
            Ok(MessageReply::Task(Box::new(task_reply(details))))
        }
        Some("droplet_list") => {
            let droplets = app.droplets.list(caller, DropletFilter::default()).await?;
            Ok(MessageReply::Droplets(DropletList::new(droplets)))
        }
        Some("system_status") => {
            let counts = app.status.snapshot().await?;
            Ok(MessageReply::System(SystemStatus {
                status: "active",
                tasks: TaskCounts {
                    pending: counts.tasks_pending,
                    active: counts.tasks_active,
                    completed: counts.tasks_completed,
                    failed: counts.tasks_failed,
                },
                droplets: DropletCounts {
                    active: counts.droplets_active,
                    total: counts.droplets_total,
                },
                feeds: app.feeds.status(),
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageParams {
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

/// The droplet's answer to a forwarded message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sent {
    target_droplet_id: DropletId,
    /// The HTTP status the droplet answered with.
    status: u16,
    /// Its body: JSON, or text.
    response: Value,
}

/// Forwards an envelope to a droplet's `/message` and returns its answer:
/// 404 for an unknown droplet, 502 when it cannot be reached, 504 when it
/// does not answer within `SEND_TIMEOUT_SECONDS`.
#[utoipa::path(
    post,
    path = "/send",
    tag = "messages",
    params(QueryParams),
    request_body(content = MessageParams, description = "The same fields as the query; either may carry them"),
    responses(
        (status = 200, description = "The droplet's answer", body = Sent),
        (status = 502, description = "The droplet could not be reached"),
        (status = 504, description = "The droplet did not answer in time"),
    ),
)]
pub(crate) async fn send(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<QueryParams>,
    Body(body): Body<MessageParams>,
) -> Result<Udc<Sent>, ApiError> {
    let mut params = MessageParams::merge(body, query.into_inner().into_params())?;
    let target = params
        .target_droplet_id
        .ok_or_else(|| invalid("target_droplet_id", "is required"))?;
    let request = params.request(trace_of(&req))?;
    let reply = app.messaging.send(&caller, target, request).await?;
    Ok(Udc::ok(Sent {
        target_droplet_id: target,
        status: reply.status,
        response: reply.body,
    }))
}

/// Each target's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Broadcast {
    targets: usize,
    delivered: usize,
    results: Vec<BroadcastOutcome>,
}

/// Sends a message to every active droplet, or to those offering
/// `capability_filter`, at once (admin; `BROADCAST_RATE_LIMIT_PER_MINUTE`).
#[utoipa::path(
    post,
    path = "/broadcast",
    tag = "messages",
    params(QueryParams),
    request_body(content = MessageParams, description = "The same fields as the query; either may carry them"),
    responses((status = 200, description = "Each target's outcome", body = Broadcast)),
)]
pub(crate) async fn broadcast(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<QueryParams>,
    Body(body): Body<MessageParams>,
) -> Result<Udc<Broadcast>, ApiError> {
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
    Ok(Udc::ok(Broadcast {
        targets: outcomes.len(),
        delivered,
        results: outcomes,
    }))
}

/// Query parameters arrive as text; `payload` stays text until merged.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueryParams {
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
