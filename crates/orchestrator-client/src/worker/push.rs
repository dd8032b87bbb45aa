//! The droplet's own small HTTP endpoint for push delivery: the
//! orchestrator `POST`s each assignment to `{endpoint}/message` (API.md,
//! "Work delivery"). `GET /health` answers too, as every droplet of the
//! mesh does.
//!
//! A pushed task is only a notice: the worker starts it with a `PATCH` that
//! the orchestrator refuses unless the task is assigned to this droplet on
//! that attempt, and runs the task the orchestrator returns, never the one
//! in the message. A forged push can therefore make the worker ask, not run.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use orchestrator_api::messages::PushedTask;
use orchestrator_domain::{DropletId, Task};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Notice;

/// The largest message accepted; an assignment is a few kilobytes.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Who answers: the droplet as `/health` describes it.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub droplet_id: DropletId,
    pub name: String,
    pub endpoint: String,
}

/// Serves the endpoint until the task is aborted; notices go to `notices`.
pub(super) async fn serve(listener: TcpListener, me: Identity, notices: mpsc::Sender<Notice>) {
    let me = Arc::new(me);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (me, notices) = (me.clone(), notices.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (me, notices) = (me.clone(), notices.clone());
                async move { Ok::<_, Infallible>(answer(request, &me, &notices).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    me: &Identity,
    notices: &mpsc::Sender<Notice>,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/message") => match read_json(request).await {
            Ok(envelope) => receive(&envelope, notices),
            Err(message) => reply(StatusCode::BAD_REQUEST, &error("invalid_json", &message)),
        },
        (&Method::GET, "/health") => reply(StatusCode::OK, &health(me)),
        (_, "/message" | "/health") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &error("method_not_allowed", "use POST /message or GET /health"),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            &error("not_found", "this droplet serves /message and /health"),
        ),
    }
}

/// Takes a `task_assignment` or a `task_cancel_requested`; acknowledges
/// other messages without acting on them.
fn receive(envelope: &Value, notices: &mpsc::Sender<Notice>) -> Response<Full<Bytes>> {
    let notice: fn(Task) -> Notice = match envelope["message_type"].as_str() {
        Some("task_assignment") => Notice::Assigned,
        Some("task_cancel_requested") => Notice::CancelRequested,
        Some(other) => {
            return reply(
                StatusCode::OK,
                &json!({ "accepted": false, "message_type": other }),
            );
        }
        None => {
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &error("validation_failed", "the envelope has no message_type"),
            );
        }
    };
    match serde_json::from_value::<PushedTask>(envelope["payload"].clone()) {
        Ok(PushedTask { task }) => {
            let id = task.id;
            // A full queue means the worker is busy: its next pull finds an
            // assignment (a cancel request is lost then; the task runs on).
            let _ = notices.try_send(notice(task));
            reply(StatusCode::ACCEPTED, &json!({ "accepted": true, "task_id": id }))
        }
        Err(e) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &error(
                "validation_failed",
                &format!("the payload is not a pushed task: {e}"),
            ),
        ),
    }
}

async fn read_json(request: Request<Incoming>) -> Result<Value, String> {
    let body = Limited::new(request.into_body(), MAX_MESSAGE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("could not read the body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))
}

/// The mesh's health shape (the spec's `GET /health`).
fn health(me: &Identity) -> Value {
    json!({
        "id": me.droplet_id,
        "name": me.name,
        "status": "active",
        "endpoint": me.endpoint,
        "updated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "message": "taking assignments",
    })
}

fn error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
