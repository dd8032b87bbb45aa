//! UDC messaging: `POST /message` (commands and queries addressed to the
//! orchestrator), `POST /send` (to one droplet) and `POST /broadcast` (to
//! many, admin only).

use actix_web::{HttpMessage, HttpRequest, middleware::from_fn, web};
use orchestrator_api::messages::{
    Broadcast, BroadcastOutcome, DeliveryOutcome, DropletCounts, Message, MessageParams, MessageQuery,
    MessageReply, Sent, SystemStatus, TaskCounts,
};
use orchestrator_app::tasks::CreationRequest;
use orchestrator_app::{MessageRequest, Reached};
use orchestrator_domain::{Caller, Capability, ValidationError};
use orchestrator_ports::DropletFilter;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::envelope::{Body, RawBody, Source, TraceId, UDC_VERSION, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, resource};
use orchestrator_api::droplets::DropletList;
use orchestrator_api::envelope::Envelope;

use crate::routes::tasks::{cancelled_reply, create_one, created_reply, task_reply};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("", "/message")
            .post(documented!(message))
            .build()
            .wrap(from_fn(envelope_errors)),
    )
    .service(
        resource("", "/send")
            .post(documented!(send))
            .build()
            .wrap(from_fn(envelope_errors)),
    )
    .service(
        resource("", "/broadcast")
            .post(documented!(broadcast))
            .build()
            .wrap(from_fn(envelope_errors)),
    );
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::App(ValidationError::new(field, message).into())
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
    let key = crate::routes::tasks::idempotency_key(&req)?;
    let message =
        Message::read(&envelope.message_type, &envelope.payload).map_err(|e| invalid(e.field, e.message))?;
    Ok(Udc::ok(answer(&app, &caller, message, key.as_deref()).await?))
}

/// Runs a command or answers a query; `key` is the request's
/// `Idempotency-Key`, which makes a `create_task` happen once.
async fn answer(
    app: &AppState,
    caller: &Caller,
    message: Message,
    key: Option<&str>,
) -> Result<MessageReply, ApiError> {
    Ok(match message {
        Message::CreateTask(draft) => {
            let (task, _) = create_one(app, caller, CreationRequest::Message, *draft, key).await?;
            MessageReply::Created(created_reply(app, &task))
        }
        Message::CancelTask(id) => {
            MessageReply::Cancelled(cancelled_reply(&app.tasks.cancel(caller, id).await?))
        }
        Message::TaskStatus(id) => MessageReply::Task(Box::new(task_reply(app.tasks.get(caller, id).await?))),
        Message::DropletList => MessageReply::Droplets(DropletList::new(
            app.droplets.list(caller, DropletFilter::default()).await?,
        )),
        Message::SystemStatus => MessageReply::System(system_status(app).await?),
    })
}

async fn system_status(app: &AppState) -> Result<SystemStatus, ApiError> {
    let counts = app.public.snapshot().await?;
    Ok(SystemStatus {
        status: "active".into(),
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
        feeds: crate::routes::feeds::feed_status(app.feeds.status()),
    })
}

/// The body's values, then the query's for what the body leaves out.
fn merge(body: MessageParams, query: MessageParams) -> Result<MessageParams, ApiError> {
    let payload = match (body.payload, query.payload) {
        (Some(payload), _) => Some(payload),
        // In a query string the payload is JSON text.
        (None, Some(Value::String(text))) => Some(
            serde_json::from_str(&text).map_err(|e| invalid("payload", format!("is not valid JSON: {e}")))?,
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

fn request(params: &mut MessageParams, trace_id: Uuid) -> Result<MessageRequest, ApiError> {
    Ok(MessageRequest {
        message_type: params
            .message_type
            .take()
            .ok_or_else(|| invalid("message_type", "is required"))?,
        payload: params.payload.take().unwrap_or_else(|| json!({})),
        trace_id,
    })
}

fn trace_of(req: &HttpRequest) -> Uuid {
    req.extensions()
        .get::<TraceId>()
        .map_or_else(Uuid::new_v4, |t| t.0)
}

/// Forwards an envelope to a droplet's `/message` and returns its answer:
/// 404 for an unknown droplet; 502 when it cannot be reached
/// (`droplet_unreachable`), when its endpoint is on the orchestrator's host
/// or a cloud's metadata service and `ALLOW_PRIVATE_DROPLET_ENDPOINTS` is
/// off (`droplet_endpoint_refused`), or when its answer is longer than
/// `MAX_REPLY_BYTES` (`droplet_reply_too_large`); 504 when it does not
/// answer within `SEND_TIMEOUT_SECONDS`. Redirects are not followed: a 3xx
/// answer is returned as it came.
#[utoipa::path(
    post,
    path = "/send",
    tag = "messages",
    params(MessageQuery),
    request_body(content = MessageParams, description = "The same fields as the query; either may carry them"),
    responses(
        (status = 200, description = "The droplet's answer", body = Sent),
        (status = 502, description = "The droplet could not be reached, its endpoint is refused, or its answer is longer than MAX_REPLY_BYTES"),
        (status = 504, description = "The droplet did not answer in time"),
    ),
)]
pub(crate) async fn send(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<MessageQuery>,
    Body(body): Body<MessageParams>,
) -> Result<Udc<Sent>, ApiError> {
    let mut params = merge(body, query.into_inner().into())?;
    let target = params
        .target_droplet_id
        .ok_or_else(|| invalid("target_droplet_id", "is required"))?;
    let request = request(&mut params, trace_of(&req))?;
    let reply = app.messaging.send(&caller, target, request).await?;
    Ok(Udc::ok(Sent {
        target_droplet_id: target,
        status: reply.status,
        response: reply.body,
    }))
}

/// Sends a message to every active droplet, or to those offering
/// `capability_filter`, at once (admin; `BROADCAST_RATE_LIMIT_PER_MINUTE`).
#[utoipa::path(
    post,
    path = "/broadcast",
    tag = "messages",
    params(MessageQuery),
    request_body(content = MessageParams, description = "The same fields as the query; either may carry them"),
    responses((status = 200, description = "Each target's outcome", body = Broadcast)),
)]
pub(crate) async fn broadcast(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<MessageQuery>,
    Body(body): Body<MessageParams>,
) -> Result<Udc<Broadcast>, ApiError> {
    app.broadcast_limit.check(&caller.subject)?;
    let mut params = merge(body, query.into_inner().into())?;
    let capability = params
        .capability_filter
        .take()
        .map(|c| Capability::new(&c))
        .transpose()
        .map_err(|e| ApiError::App(e.into()))?;
    let request = request(&mut params, trace_of(&req))?;
    let outcomes = app.messaging.broadcast(&caller, capability, request).await?;
    let results: Vec<BroadcastOutcome> = outcomes.into_iter().map(broadcast_outcome).collect();
    let delivered = results
        .iter()
        .filter(|o| o.outcome == DeliveryOutcome::Delivered)
        .count();
    Ok(Udc::ok(Broadcast {
        targets: results.len() as u64,
        delivered: delivered as u64,
        results,
    }))
}

fn broadcast_outcome(outcome: orchestrator_app::BroadcastOutcome) -> BroadcastOutcome {
    BroadcastOutcome {
        droplet_id: outcome.droplet_id,
        outcome: match outcome.outcome {
            Reached::Delivered => DeliveryOutcome::Delivered,
            Reached::Refused => DeliveryOutcome::Refused,
            Reached::Unreachable => DeliveryOutcome::Unreachable,
            Reached::Timeout => DeliveryOutcome::Timeout,
        },
        status: outcome.status,
        error: outcome.error,
    }
}
