//! `ApiError`: the one place that turns failures into status codes and the
//! error body of API.md, `{"error":{"code","message","details"}}`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use orchestrator_api::error::{ErrorBody, ErrorCode, ErrorDetails};
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
    #[error("the orchestrator already holds {limit} feed connections, the most it allows; retry shortly")]
    TooManyConnections { limit: usize },
    #[error("no endpoint at this path")]
    RouteNotFound,
    #[error("this endpoint takes {allow} only")]
    MethodNotAllowed { allow: &'static str },
    /// A fault of ours, never of the client's request.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::App(AppError::NotFound { .. } | AppError::UnknownName { .. })
            | ApiError::RouteNotFound => ErrorCode::NotFound,
            ApiError::App(AppError::Forbidden(_)) => ErrorCode::Forbidden,
            ApiError::App(AppError::InvalidTransition { .. }) => ErrorCode::InvalidTransition,
            ApiError::App(AppError::Conflict(_)) => ErrorCode::Conflict,
            ApiError::App(AppError::StaleAttempt { .. }) => ErrorCode::StaleAttempt,
            ApiError::App(AppError::Validation(_)) | ApiError::InvalidBody(_) => ErrorCode::ValidationFailed,
            ApiError::App(AppError::IdempotencyKeyReused(_)) => ErrorCode::IdempotencyKeyReused,
            ApiError::App(AppError::Unavailable(_)) => ErrorCode::StoreUnavailable,
            ApiError::App(AppError::DropletUnreachable(_)) => ErrorCode::DropletUnreachable,
            ApiError::App(AppError::DropletTimedOut(_)) => ErrorCode::DropletTimeout,
            ApiError::App(AppError::DropletEndpointRefused(_)) => ErrorCode::DropletEndpointRefused,
            ApiError::App(AppError::DropletReplyTooLarge(_)) => ErrorCode::DropletReplyTooLarge,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::TooManyConnections { .. } => ErrorCode::TooManyConnections,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::MalformedBody(_) => ErrorCode::MalformedJson,
            ApiError::InvalidPath(_) => ErrorCode::InvalidPath,
            ApiError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::Internal(_) => ErrorCode::InternalError,
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
            ApiError::TooManyConnections { limit } => {
                json!({ "retry_after_seconds": RETRY_AFTER_SECONDS, "limit": limit })
            }
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

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetails {
                code: self.code(),
                message: self.message(),
                details: self.details(),
            },
        }
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
            ApiError::App(AppError::Unavailable(_)) | ApiError::TooManyConnections { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::App(
                AppError::DropletUnreachable(_)
                | AppError::DropletEndpointRefused(_)
                | AppError::DropletReplyTooLarge(_),
            ) => StatusCode::BAD_GATEWAY,
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
            tracing::error!(code = %self.code(), cause = %why, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::App(AppError::Unavailable(_)) | ApiError::TooManyConnections { .. } => {
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
        // Kept for `envelope_errors`, which wraps it on authenticated endpoints.
        response.extensions_mut().insert(body);
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
            ApiError::App(AppError::DropletEndpointRefused(text())),
            ApiError::App(AppError::DropletReplyTooLarge(text())),
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
            ApiError::TooManyConnections { limit: 1 },
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::Internal(text()),
        ]
    }

    #[test]
    fn the_documented_codes_are_exactly_the_codes_answered() {
        let answered: std::collections::HashSet<ErrorCode> =
            every_error().iter().map(ApiError::code).collect();
        let documented: std::collections::HashSet<ErrorCode> = ErrorCode::KNOWN.iter().cloned().collect();
        assert_eq!(answered, documented);
    }
}
