//! The UDC envelope (API.md, "Envelope"): request bodies bare or wrapped,
//! responses of authenticated endpoints wrapped, errors included, and the
//! `X-Trace-Id` every response carries.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, Responder, web};
use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::CallerSubject;
use crate::error::{ApiError, ErrorBody};

pub const UDC_VERSION: &str = "1.0";
pub const TRACE_HEADER: HeaderName = HeaderName::from_static("x-trace-id");

/// The trace id of the request being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub Uuid);

/// The `source` of envelopes this orchestrator sends, such as `droplet-10`.
#[derive(Debug, Clone)]
pub struct Source(pub String);

/// The largest request body accepted (`MAX_BODY_BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Gives every request a trace id (the caller's `X-Trace-Id` when it is a
/// UUID), echoes it on the response and logs one line per request.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let incoming = req
        .headers()
        .get(&TRACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok());
    req.extensions_mut()
        .insert(TraceId(incoming.unwrap_or_else(Uuid::new_v4)));
    let (method, path) = (req.method().clone(), req.path().to_owned());
    // Every line logged while serving the request carries its trace id. The
    // path has no query string: a feed's `?token=` is never logged.
    let span = tracing::info_span!("request", trace_id = %trace_of(req.request()), %method, path);
    let mut res = next.call(req).instrument(span.clone()).await?;
    let trace = trace_of(res.request());
    if let Ok(value) = HeaderValue::from_str(&trace.to_string()) {
        res.headers_mut().insert(TRACE_HEADER, value);
    }
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    crate::telemetry::record_request(
        method.as_str(),
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    span.in_scope(|| {
        // The envelope of the body may have named another trace id than the header.
        tracing::info!(
            trace_id = %trace,
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request served"
        );
    });
    Ok(res)
}

fn trace_of(req: &HttpRequest) -> Uuid {
    req.extensions().get::<TraceId>().map_or_else(Uuid::nil, |t| t.0)
}

fn target_of(req: &HttpRequest) -> String {
    req.extensions()
        .get::<CallerSubject>()
        .map_or_else(|| "anonymous".to_owned(), |s| s.0.clone())
}

fn envelope(req: &HttpRequest, message_type: &str, payload: Value) -> Value {
    let source = req
        .app_data::<web::Data<Source>>()
        .map_or_else(String::new, |s| s.0.clone());
    json!({
        "udc_version": UDC_VERSION,
        "trace_id": trace_of(req),
        "source": source,
        "target": target_of(req),
        "message_type": message_type,
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "payload": payload,
    })
}

/// Wraps error bodies of authenticated endpoints in an envelope with
/// `message_type` `"error"`, keeping status and headers.
pub async fn envelope_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(ErrorBody(body)) = res.response().extensions().get::<ErrorBody>().cloned() else {
        return Ok(res.map_into_left_body());
    };
    let (req, old) = res.into_parts();
    let mut new = HttpResponse::build(old.status());
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.append_header((name.clone(), value.clone()));
        }
    }
    let wrapped = new.json(envelope(&req, "error", body));
    Ok(ServiceResponse::new(req, wrapped).map_into_right_body())
}

/// A successful response of an authenticated endpoint, sent in an envelope.
#[derive(Debug)]
pub struct Udc<T> {
    status: StatusCode,
    payload: T,
}

impl<T: Serialize> Udc<T> {
    pub fn ok(payload: T) -> Self {
        Udc {
            status: StatusCode::OK,
            payload,
        }
    }

    pub fn created(payload: T) -> Self {
        Udc {
            status: StatusCode::CREATED,
            payload,
        }
    }
}

impl<T: Serialize> Responder for Udc<T> {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        match serde_json::to_value(&self.payload) {
            Ok(payload) => HttpResponse::build(self.status).json(envelope(req, "response", payload)),
            Err(e) => actix_web::ResponseError::error_response(&ApiError::Internal(e.to_string())),
        }
    }
}

/// A JSON request body, bare or wrapped in an envelope, within `MAX_BODY_BYTES`.
/// An empty body reads as `{}`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = read_body(req, payload);
        let req = req.clone();
        Box::pin(async move { parse_body(&req, &bytes.await?).map(Body) })
    }
}

/// A JSON request body as it came, an envelope left whole (`POST /message`).
#[derive(Debug)]
pub struct RawBody(pub Value);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = read_body(req, payload);
        Box::pin(async move { json_of(&bytes.await?).map(RawBody) })
    }
}

/// The body's bytes, refusing more than `MAX_BODY_BYTES`.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<web::BytesMut, ApiError>> {
    let limit = req.app_data::<web::Data<BodyLimit>>().map_or(1_048_576, |l| l.0);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let mut bytes = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::MalformedBody(format!("could not read the body: {e}")))?;
            if bytes.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    })
}

/// The body as JSON; an empty body reads as `{}`.
fn json_of(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedBody(format!("the request body is not valid JSON: {e}")))
}

fn parse_body<T: DeserializeOwned>(req: &HttpRequest, bytes: &[u8]) -> Result<T, ApiError> {
    let value = unwrap_envelope(req, json_of(bytes)?);
    serde_json::from_value(value).map_err(|e| ApiError::InvalidBody(format!("invalid request body: {e}")))
}

/// An object with `udc_version` and `payload` is an envelope: its payload is
/// the body and its trace id becomes the request's.
fn unwrap_envelope(req: &HttpRequest, value: Value) -> Value {
    match value {
        Value::Object(mut map) if map.contains_key("udc_version") && map.contains_key("payload") => {
            let trace = map
                .get("trace_id")
                .and_then(Value::as_str)
                .and_then(|t| Uuid::parse_str(t).ok());
            if let Some(trace) = trace {
                req.extensions_mut().insert(TraceId(trace));
            }
            map.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}
