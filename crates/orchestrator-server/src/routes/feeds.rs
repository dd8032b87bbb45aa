//! The live feeds: `/ws/tasks` and `/ws/droplets` (WebSocket), and
//! `GET /ws/status`. A token comes as `?token=` or an `Authorization`
//! header and is checked before the upgrade (401 when bad).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, http::header, middleware::from_fn, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use futures_util::StreamExt;
use orchestrator_app::{
    AppError, Feed, FeedError, FeedFilter, FeedMessage, FeedStatus, Subscription, feed_owner,
};
use orchestrator_domain::{Caller, Capability, DropletId, Permission};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::auth::Authenticated;
use crate::envelope::{Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{not_found, resource};
use crate::startup::AppState;

/// How long a close frame may wait for a client that has stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/ws")
            .wrap(from_fn(envelope_errors))
            .service(resource("/tasks", "GET").route(web::get().to(tasks_feed)))
            .service(resource("/droplets", "GET").route(web::get().to(droplets_feed)))
            .service(resource("/status", "GET").route(web::get().to(status)))
            .default_service(web::to(not_found)),
    );
}

/// The query of a feed: the token and the optional filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// The bearer token, for clients that cannot set a header.
    token: Option<String>,
    /// Only tasks of this type.
    task_type: Option<String>,
    /// Only tasks requiring it, or droplets offering it.
    capability: Option<String>,
    /// Only tasks assigned to it, or that droplet's own events.
    droplet_id: Option<DropletId>,
}

impl FeedQuery {
    pub(crate) fn filter(&self) -> Result<FeedFilter, ApiError> {
        let capability = self
            .capability
            .as_deref()
            .map(Capability::new)
            .transpose()
            .map_err(|e| ApiError::InvalidQuery(format!("invalid capability filter: {e}")))?;
        Ok(FeedFilter {
            task_type: self.task_type.clone(),
            capability,
            droplet_id: self.droplet_id,
        })
    }
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
    let filter = query.filter()?;
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
    Ok(Udc::ok(app.feeds.status()))
}

fn forbidden(message: &str) -> ApiError {
    ApiError::App(AppError::Forbidden(message.to_owned()))
}
