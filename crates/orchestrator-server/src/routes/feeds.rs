//! The live feeds: `/ws/tasks` and `/ws/droplets` (WebSocket), and
//! `GET /ws/status`. A token comes as `?token=` or an `Authorization`
//! header and is checked before the upgrade (401 when bad).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, http::header, middleware::from_fn, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_api::feeds::{FeedEvent, FeedKind, FeedQuery, FeedStatus};
use orchestrator_app::{AppError, Feed, FeedError, FeedFilter, FeedMessage, Subscription, feed_owner};
use orchestrator_domain::{Caller, Capability, DomainEvent, Permission};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// How long a close frame may wait for a client that has stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where every route of this module lives.
const SCOPE: &str = "/ws";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(resource(SCOPE, "/tasks").get(documented!(tasks_feed)).build())
            .service(
                resource(SCOPE, "/droplets")
                    .get(documented!(droplets_feed))
                    .build(),
            )
            .service(resource(SCOPE, "/status").get(documented!(status)).build())
            .default_service(web::to(not_found)),
    );
}

/// What a feed's query asks to see.
pub(crate) fn filter_of(query: &FeedQuery) -> Result<FeedFilter, ApiError> {
    let capability = query
        .capability
        .as_deref()
        .map(Capability::new)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(format!("invalid capability filter: {e}")))?;
    Ok(FeedFilter {
        task_type: query.task_type.clone(),
        capability,
        droplet_id: query.droplet_id,
    })
}

/// The text frame of an event: a [`FeedEvent`] with the task or the
/// droplet as it is after the event; a health change adds the droplet's
/// `previous_status`.
pub(crate) fn frame(event: &DomainEvent, at: DateTime<Utc>) -> String {
    let data = match event {
        DomainEvent::DropletHealthChanged { droplet, previous } => {
            let mut data = serde_json::to_value(droplet).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut data {
                map.insert("previous_status".into(), json!(previous));
            }
            data
        }
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    };
    let event = FeedEvent {
        event: event.name().to_owned(),
        data,
        timestamp: at,
    };
    serde_json::to_string(&event).unwrap_or_default()
}

/// The task events as they are committed, in order for each task:
/// `{"event", "data", "timestamp"}` text frames.
#[utoipa::path(
    get,
    path = "/ws/tasks",
    tag = "feeds",
    params(FeedQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol")),
)]
pub(crate) async fn tasks_feed(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<FeedQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    open(Feed::Tasks, &req, body, &query, &app).await
}

/// The droplet events: registrations, health changes, missed heartbeats.
#[utoipa::path(
    get,
    path = "/ws/droplets",
    tag = "feeds",
    params(FeedQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol")),
)]
pub(crate) async fn droplets_feed(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<FeedQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    open(Feed::Droplets, &req, body, &query, &app).await
}

/// Checks the caller, upgrades, and serves the feed on a task of its own.
async fn open(
    feed: Feed,
    req: &HttpRequest,
    body: web::Payload,
    query: &FeedQuery,
    app: &AppState,
) -> Result<HttpResponse, ApiError> {
    let caller = feed_caller(req, query).await?;
    let filter = filter_of(query)?;
    if app.feeds.is_full() {
        return Err(ApiError::TooManyConnections {
            limit: app.settings.feeds.max_total,
        });
    }
    let (response, session, stream) = actix_ws::handle(req, body)
        .map_err(|e| ApiError::InvalidQuery(format!("not a WebSocket upgrade: {e}")))?;
    let subscription = app.feeds.connect(feed, &feed_owner(&caller), filter);
    let closing = app.stopping.closing.clone();
    actix_web::rt::spawn(async move {
        match subscription {
            Ok(subscription) => serve(session, stream, subscription, closing).await,
            Err(err @ FeedError::TooManyConnections { .. }) => {
                close(session, CloseCode::Policy, &err.to_string()).await;
            }
            // Another connection took the last place since the check above.
            Err(err @ FeedError::Full { .. }) => {
                close(session, CloseCode::Again, &err.to_string()).await;
            }
        }
    });
    Ok(response)
}

/// The caller of a feed request, from `?token=` or the `Authorization` header.
async fn feed_caller(req: &HttpRequest, query: &FeedQuery) -> Result<Caller, ApiError> {
    let caller = match &query.token {
        Some(token) => crate::auth::verifier(req)?.verify(token).await?,
        None if req.headers().contains_key(header::AUTHORIZATION) => {
            let Authenticated(caller) = crate::auth::authenticate(req).await?;
            caller
        }
        None => {
            return Err(ApiError::Unauthorized(
                "missing token: connect with '?token=<token>' or an 'Authorization: Bearer <token>' header"
                    .into(),
            ));
        }
    };
    if !caller.can(Permission::Read) {
        return Err(forbidden("the feeds need the read permission"));
    }
    Ok(caller)
}

/// Forwards the feed to the client until either side ends it.
async fn serve(
    mut session: Session,
    mut stream: MessageStream,
    mut subscription: Subscription,
    closing: CancellationToken,
) {
    let mut awaiting_pong = false;
    let end = loop {
        tokio::select! {
            () = closing.cancelled() => {
                break Some((CloseCode::Away, "the orchestrator is stopping; reconnect, to another replica if there is one"));
            }
            message = subscription.next() => match message {
                Some(FeedMessage::Frame(frame)) => {
                    if session.text(frame).await.is_err() {
                        return;
                    }
                    subscription.record_sent();
                }
                Some(FeedMessage::Ping) if awaiting_pong => {
                    subscription.record_unresponsive();
                    break Some((CloseCode::Policy, "no answer to the last ping"));
                }
                Some(FeedMessage::Ping) => {
                    awaiting_pong = true;
                    if session.ping(b"orchestrator").await.is_err() {
                        return;
                    }
                }
                None if subscription.overflowed() => {
                    break Some((CloseCode::Again, "too slow: the client fell too far behind the feed; reconnect"));
                }
                None => break None,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                // The feeds are one-way; anything a client writes is ignored.
                Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Continuation(_) | Message::Nop)) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
        }
    };
    match end {
        Some((code, reason)) => close(session, code, reason).await,
        None => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(None)).await;
        }
    }
}

/// Closes with a code and a reason, without waiting long on a client that no longer reads.
async fn close(session: Session, code: CloseCode, reason: &str) {
    let reason = CloseReason {
        code,
        description: Some(reason.to_owned()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(Some(reason))).await;
}

/// Connections per feed and per caller, messages sent, clients dropped.
#[utoipa::path(
    get,
    path = "/ws/status",
    tag = "feeds",
    responses((status = 200, description = "The feeds' figures", body = FeedStatus)),
)]
pub(crate) async fn status(
    Authenticated(caller): Authenticated,
    app: web::Data<AppState>,
) -> Result<Udc<FeedStatus>, ApiError> {
    if !caller.can(Permission::Read) {
        return Err(forbidden("reading the feed status needs the read permission"));
    }
    Ok(Udc::ok(feed_status(app.feeds.status())))
}

/// The feeds' figures as `GET /ws/status` answers them.
pub(crate) fn feed_status(status: orchestrator_app::FeedStatus) -> FeedStatus {
    FeedStatus {
        connections: status
            .connections
            .into_iter()
            .map(|(feed, count)| (kind_of(feed), count))
            .collect(),
        total_connections: status.total_connections,
        connections_per_caller: status.connections_per_caller,
        messages_sent: status.messages_sent,
        dropped_slow_clients: status.dropped_slow_clients,
        dropped_unresponsive_clients: status.dropped_unresponsive_clients,
    }
}

fn kind_of(feed: Feed) -> FeedKind {
    match feed {
        Feed::Tasks => FeedKind::Tasks,
        Feed::Droplets => FeedKind::Droplets,
    }
}

fn forbidden(message: &str) -> ApiError {
    ApiError::App(AppError::Forbidden(message.to_owned()))
}
