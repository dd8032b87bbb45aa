//! `ApiError`: the one place that turns failures into status codes and the
//! error body of API.md, `{"error":{"code","message","details"}}`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use orchestrator_app::AppError;
use serde_json::{Value, json};

/// Seconds a client should wait before retrying when the store is down.
pub const RETRY_AFTER_SECONDS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many requests: at most {limit} a minute; retry in {retry_after} s")]
    RateLimited { retry_after: u64, limit: u32 },
    #[error("no endpoint at this path")]
    RouteNotFound,
    #[error("this endpoint takes {allow} only")]
    MethodNotAllowed { allow: &'static str },
    /// A fault of ours, never of the client's request.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every `error.code` an answer may carry.
pub const ERROR_CODES: &[&str] = &[
    "not_found",
    "forbidden",
    "invalid_transition",
    "conflict",
    "stale_attempt",
    "validation_failed",
    "idempotency_key_reused",
    "store_unavailable",
    "droplet_unreachable",
    "droplet_timeout",
    "rate_limited",
    "unauthorized",
    "malformed_json",
    "invalid_path",
    "invalid_query",
    "payload_too_large",
    "unsupported_media_type",
    "method_not_allowed",
    "internal_error",
];

/// The error body of a response, kept on it so that the envelope layer can
/// re-wrap it for authenticated endpoints.
#[derive(Debug, Clone)]
pub struct ErrorBody(pub Value);

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::App(AppError::NotFound { .. } | AppError::UnknownName { .. })
            | ApiError::RouteNotFound => "not_found",
            ApiError::App(AppError::Forbidden(_)) => "forbidden",
            ApiError::App(AppError::InvalidTransition { .. }) => "invalid_transition",
            ApiError::App(AppError::Conflict(_)) => "conflict",
            ApiError::App(AppError::StaleAttempt { .. }) => "stale_attempt",
            ApiError::App(AppError::Validation(_)) | ApiError::InvalidBody(_) => "validation_failed",
            ApiError::App(AppError::IdempotencyKeyReused(_)) => "idempotency_key_reused",
            ApiError::App(AppError::Unavailable(_)) => "store_unavailable",
            ApiError::App(AppError::DropletUnreachable(_)) => "droplet_unreachable",
            ApiError::App(AppError::DropletTimedOut(_)) => "droplet_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::MalformedBody(_) => "malformed_json",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn details(&self) -> Value {
        match self {
            ApiError::App(AppError::NotFound { entity, id }) => json!({ "entity": entity, "id": id }),
            ApiError::App(AppError::UnknownName { entity, name }) => json!({ "entity": entity, "id": name }),
            ApiError::App(AppError::InvalidTransition { current, .. }) => {
                json!({ "current_status": current })
            }
            ApiError::App(AppError::StaleAttempt { current, attempt, .. }) => {
                json!({ "current_status": current, "attempt": attempt })
            }
            ApiError::App(AppError::Validation(v)) => json!({ "field": v.field }),
            ApiError::PayloadTooLarge { limit } => json!({ "limit_bytes": limit }),
            ApiError::RateLimited { retry_after, limit } => {
                json!({ "retry_after_seconds": retry_after, "limit_per_minute": limit })
            }
            ApiError::App(AppError::Unavailable(_)) => json!({ "retry_after_seconds": RETRY_AFTER_SECONDS }),
            _ => Value::Null,
        }
    }

    fn message(&self) -> String {
        match self {
            // The store's own words may name hosts or credentials; keep them in the log.
            ApiError::App(AppError::Unavailable(_)) => "the task store is unavailable; retry shortly".into(),
            ApiError::Internal(_) => "an internal error occurred".into(),
            other => other.to_string(),
        }
    }

    pub fn body(&self) -> Value {
        json!({ "error": { "code": self.code(), "message": self.message(), "details": self.details() } })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::App(AppError::NotFound { .. } | AppError::UnknownName { .. })
            | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::App(AppError::Forbidden(_)) => StatusCode::FORBIDDEN,
            ApiError::App(
                AppError::InvalidTransition { .. } | AppError::Conflict(_) | AppError::StaleAttempt { .. },
            ) => StatusCode::CONFLICT,
            ApiError::App(AppError::Validation(_) | AppError::IdempotencyKeyReused(_))
            | ApiError::InvalidBody(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::App(AppError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::App(AppError::DropletUnreachable(_)) => StatusCode::BAD_GATEWAY,
            ApiError::App(AppError::DropletTimedOut(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MalformedBody(_) | ApiError::InvalidPath(_) | ApiError::InvalidQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::App(AppError::Unavailable(why)) | ApiError::Internal(why) = self {
            tracing::error!(code = self.code(), cause = %why, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::App(AppError::Unavailable(_)) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
            }
            ApiError::RateLimited { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            _ => {}
        }
        let body = self.body();
        let mut response = response.json(&body);
        response.extensions_mut().insert(ErrorBody(body));
        response
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_domain::{TaskStatus, ValidationError};

    use super::*;

    /// One error of each kind the server can answer with.
    fn every_error() -> Vec<ApiError> {
        let text = || "x".to_owned();
        vec![
            ApiError::App(AppError::NotFound {
                entity: "task",
                id: 1,
            }),
            ApiError::App(AppError::UnknownName {
                entity: "job",
                name: text(),
            }),
            ApiError::App(AppError::Forbidden(text())),
            ApiError::App(AppError::InvalidTransition {
                current: TaskStatus::Pending,
                message: text(),
            }),
            ApiError::App(AppError::Conflict(text())),
            ApiError::App(AppError::StaleAttempt {
                current: TaskStatus::InProgress,
                attempt: 2,
                message: text(),
            }),
            ApiError::App(AppError::Validation(ValidationError::new("f", "m"))),
            ApiError::App(AppError::IdempotencyKeyReused(text())),
            ApiError::App(AppError::Unavailable(text())),
            ApiError::App(AppError::DropletUnreachable(text())),
            ApiError::App(AppError::DropletTimedOut(text())),
            ApiError::Unauthorized(text()),
            ApiError::MalformedBody(text()),
            ApiError::InvalidBody(text()),
            ApiError::InvalidPath(text()),
            ApiError::InvalidQuery(text()),
            ApiError::UnsupportedMediaType(text()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::RateLimited {
                retry_after: 1,
                limit: 1,
            },
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::Internal(text()),
        ]
    }

    #[test]
    fn the_documented_codes_are_exactly_the_codes_answered() {
        let answered: std::collections::BTreeSet<&str> = every_error().iter().map(ApiError::code).collect();
        let documented: std::collections::BTreeSet<&str> = ERROR_CODES.iter().copied().collect();
        assert_eq!(answered, documented);
    }
}
