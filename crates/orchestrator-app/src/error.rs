//! The use cases' error: what went wrong, in words a client can act on.

use orchestrator_domain::{TaskStatus, TransitionError, ValidationError};
use orchestrator_ports::StoreError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppError {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: i64 },
    /// Something addressed by name, such as a scheduler job, does not exist.
    #[error("{entity} '{name}' not found")]
    UnknownName { entity: &'static str, name: String },
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The state machine refuses the move from the task's current status.
    #[error("{message}")]
    InvalidTransition { current: TaskStatus, message: String },
    #[error("{0}")]
    Conflict(String),
    /// A droplet reported on an assignment that is no longer the task's.
    #[error("{message}")]
    StaleAttempt {
        current: TaskStatus,
        attempt: u32,
        message: String,
    },
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// An `Idempotency-Key` used before for another request.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A droplet a message was for could not be reached.
    #[error("{0}")]
    DropletUnreachable(String),
    /// A droplet a message was for did not answer in time.
    #[error("{0}")]
    DropletTimedOut(String),
    /// A droplet a message was for has an endpoint the orchestrator may not call.
    #[error("{0}")]
    DropletEndpointRefused(String),
    /// A droplet a message was for answered with more than is read.
    #[error("{0}")]
    DropletReplyTooLarge(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity, id } => AppError::NotFound { entity, id },
            StoreError::UnknownName { entity, name } => AppError::UnknownName { entity, name },
            StoreError::Conflict(message) => AppError::Conflict(message),
            unavailable @ (StoreError::DropletUnavailable { .. } | StoreError::ConcurrencyLimited { .. }) => {
                AppError::Conflict(unavailable.to_string())
            }
            StoreError::Invalid(invalid) => AppError::Validation(invalid),
            StoreError::Unavailable(why) => AppError::Unavailable(why),
        }
    }
}

impl AppError {
    pub(crate) fn transition(current: TaskStatus, err: TransitionError) -> Self {
        AppError::InvalidTransition {
            current,
            message: format!("{err} (the task is {current})"),
        }
    }
}
