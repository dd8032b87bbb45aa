//! The error body every endpoint answers a failure with (inside the
//! envelope on authenticated endpoints): `{"error": {"code", "message", "details"}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of an error answer, from any endpoint.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetails,
}

/// What went wrong, in an [`ErrorBody`]. A reader takes a body without
/// `message` or `details` too: other services of the mesh may leave them out.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ErrorDetails {
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
    /// What the error is about: the field, the entity and id, the current
    /// status…; `null` when there is nothing to add.
    #[serde(default)]
    pub details: Value,
}

/// The `error.code` of an error answer.
///
/// Written as its snake_case name; a code this crate does not know (from a
/// newer server) is read as [`ErrorCode::Other`], so that an older client
/// still reads the error.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorCode {
    NotFound,
    Forbidden,
    InvalidTransition,
    Conflict,
    StaleAttempt,
    ValidationFailed,
    IdempotencyKeyReused,
    StoreUnavailable,
    DropletUnreachable,
    DropletTimeout,
    RateLimited,
    Unauthorized,
    MalformedJson,
    InvalidPath,
    InvalidQuery,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    InternalError,
    /// The orchestrator holds as many feed connections as it allows.
    TooManyConnections,
    /// The target droplet's endpoint is one the orchestrator may not call.
    DropletEndpointRefused,
    /// The target droplet answered with more than `MAX_REPLY_BYTES`.
    DropletReplyTooLarge,
    /// A code not in this list, as it came.
    Other(String),
}

impl ErrorCode {
    /// Every code the orchestrator answers with, in the order documented.
    pub const KNOWN: &[ErrorCode] = &[
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::InvalidTransition,
        ErrorCode::Conflict,
        ErrorCode::StaleAttempt,
        ErrorCode::ValidationFailed,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::StoreUnavailable,
        ErrorCode::DropletUnreachable,
        ErrorCode::DropletTimeout,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::MalformedJson,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidQuery,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InternalError,
        ErrorCode::TooManyConnections,
        ErrorCode::DropletEndpointRefused,
        ErrorCode::DropletReplyTooLarge,
    ];

    /// The code as written on the wire, such as `not_found`.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::Conflict => "conflict",
            ErrorCode::StaleAttempt => "stale_attempt",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::DropletUnreachable => "droplet_unreachable",
            ErrorCode::DropletTimeout => "droplet_timeout",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::DropletEndpointRefused => "droplet_endpoint_refused",
            ErrorCode::DropletReplyTooLarge => "droplet_reply_too_large",
            ErrorCode::Other(code) => code,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        ErrorCode::KNOWN
            .iter()
            .find(|known| known.as_str() == code)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(code.to_owned()))
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        ErrorCode::from(code.as_str())
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_known_code_reads_back_as_itself() {
        for code in ErrorCode::KNOWN {
            let written = serde_json::to_value(code).expect("serialise");
            assert_eq!(
                serde_json::from_value::<ErrorCode>(written).ok().as_ref(),
                Some(code)
            );
        }
        assert_eq!(ErrorCode::KNOWN.len(), 22);
    }

    #[test]
    fn an_unknown_code_is_kept_as_it_came() {
        let body: ErrorBody = serde_json::from_value(json!({ "error": { "code": "teapot" } })).expect("read");
        assert_eq!(body.error.code, ErrorCode::Other("teapot".into()));
        assert_eq!(
            (body.error.message.as_str(), &body.error.details),
            ("", &Value::Null)
        );
        assert_eq!(serde_json::to_value(&body.error.code).ok(), Some(json!("teapot")));
    }

    #[test]
    fn the_body_is_written_with_code_message_and_details() {
        let body = ErrorBody {
            error: ErrorDetails {
                code: ErrorCode::NotFound,
                message: "task 9 not found".into(),
                details: json!({ "entity": "task", "id": 9 }),
            },
        };
        assert_eq!(
            serde_json::to_string(&body).expect("serialise"),
            r#"{"error":{"code":"not_found","message":"task 9 not found","details":{"entity":"task","id":9}}}"#
        );
    }
}
