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
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use orchestrator_api::envelope::Envelope;
pub use orchestrator_api::envelope::UDC_VERSION;
use orchestrator_api::error::ErrorBody;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::CallerSubject;
use crate::error::ApiError;
use crate::startup::AppState;

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
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let _in_flight = state.as_ref().map(|s| s.stopping.enter());
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
    span.in_scope(|| tracing::debug!("request received"));
    let mut res = next.call(req).instrument(span.clone()).await?;
    if state.is_some_and(|s| s.stopping.has_begun()) {
        // Tells keep-alive clients to reconnect elsewhere, not to wait on this replica.
        res.response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
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

/// The envelope of an answer to `req`, from this orchestrator to the caller.
fn envelope(req: &HttpRequest, message_type: &str, payload: Value) -> Envelope {
    let source = req
        .app_data::<web::Data<Source>>()
        .map_or_else(String::new, |s| s.0.clone());
    Envelope::wrap(trace_of(req), source, target_of(req), message_type, payload)
}

/// Wraps error bodies of authenticated endpoints in an envelope with
/// `message_type` `"error"`, keeping status and headers.
pub async fn envelope_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(body) = res.response().extensions().get::<ErrorBody>().cloned() else {
        return Ok(res.map_into_left_body());
    };
    let body = serde_json::to_value(body).unwrap_or(Value::Null);
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

/// True when a body declared as `content_type` may be read as JSON: no type
/// at all, `application/json`, or a `+json` type.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body's bytes, refusing more than `MAX_BODY_BYTES` and bodies of
/// another type than JSON (415).
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<web::BytesMut, ApiError>> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
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
        if !bytes.is_empty() && !is_json(content_type.as_deref()) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body is declared as {}; send JSON (Content-Type: application/json)",
                content_type.unwrap_or_default()
            )));
        }
        Ok(bytes)
    })
}

/// The body as JSON; an empty body reads as `{}`. An object that names a
/// key twice is refused: which of the two values was meant is a guess.
fn json_of(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    StrictJson::deserialize(&mut deserializer)
        .and_then(|StrictJson(value)| deserializer.end().map(|()| value))
        .map_err(|e| ApiError::MalformedBody(format!("the request body is not valid JSON: {e}")))
}

/// JSON read like `serde_json::Value`, except that a duplicate key is an error.
struct StrictJson(Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key \"{key}\" appears twice"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn parse_body<T: DeserializeOwned>(req: &HttpRequest, bytes: &[u8]) -> Result<T, ApiError> {
    let (body, trace) = parse_request_body(bytes)?;
    if let Some(trace) = trace {
        req.extensions_mut().insert(TraceId(trace));
    }
    Ok(body)
}

/// Reads a request body as `T`: a strict JSON object (see [`json_of`]),
/// bare or wrapped in an envelope, whose trace id is returned. Every failure is a
/// client error (400 or 422). Public for the fuzz target of `fuzz/`.
pub fn parse_request_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Option<Uuid>), ApiError> {
    let (value, trace) = orchestrator_api::envelope::open(json_of(bytes)?);
    // serde would read a struct from an array of its fields in order; a
    // body is an object with named fields, nothing else.
    if !value.is_object() {
        return Err(ApiError::InvalidBody(
            "invalid request body: expected a JSON object".into(),
        ));
    }
    let body = serde_json::from_value(value)
        .map_err(|e| ApiError::InvalidBody(format!("invalid request body: {e}")))?;
    Ok((body, trace))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::{is_json, json_of};

    /// Any JSON value (objects have distinct keys by construction).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1.0e300..1.0e300_f64).prop_map(Value::from),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        /// Round trip: a client's numbers come back exactly as sent.
        fn strict_parsing_reads_back_what_was_written(value in json_value()) {
            let text = serde_json::to_vec(&value).expect("serialise");
            prop_assert_eq!(json_of(&text).expect("valid JSON parses"), value);
        }

        #[test]
        fn any_bytes_give_a_value_or_a_malformed_body_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            match json_of(&bytes) {
                // A blank body reads as {}; anything else it accepts is JSON,
                // read as serde_json reads it.
                Ok(value) if bytes.iter().all(u8::is_ascii_whitespace) => prop_assert_eq!(value, serde_json::json!({})),
                Ok(value) => prop_assert_eq!(serde_json::from_slice::<Value>(&bytes).ok(), Some(value)),
                Err(err) => prop_assert!(matches!(err, crate::error::ApiError::MalformedBody(_)), "{err:?}"),
            }
        }

        #[test]
        fn a_repeated_key_is_refused_wherever_it_is(key in "[a-z]{1,6}", depth in 0_usize..5) {
            let mut body = format!(r#"{{"{key}":1,"{key}":2}}"#);
            for _ in 0..depth {
                body = format!(r#"{{"outer":[{body}]}}"#);
            }
            prop_assert!(json_of(body.as_bytes()).is_err());
        }
    }

    #[test]
    fn only_json_media_types_are_read() {
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/problem+json"),
        ] {
            assert!(is_json(ok), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json+x",
        ] {
            assert!(!is_json(Some(bad)), "{bad}");
        }
    }
}
