//! Turns diesel and pool errors into port errors.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use orchestrator_domain::ValidationError;
use orchestrator_ports::StoreError;

/// The error of a store transaction: a database error, or a port error
/// decided inside it (a lost compare-and-set, a missing row).
#[derive(Debug)]
pub(crate) enum TxError {
    Db(DieselError),
    Store(StoreError),
}

impl From<DieselError> for TxError {
    fn from(err: DieselError) -> Self {
        TxError::Db(err)
    }
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        TxError::Store(err)
    }
}

impl From<TxError> for StoreError {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Db(err) => store_error(err),
            TxError::Store(err) => err,
        }
    }
}

/// Messages of PostgreSQL's data exceptions (SQLSTATE class 22): the value
/// itself cannot be stored, so the client must change it.
const DATA_EXCEPTIONS: &[&str] = &[
    "value too long",
    "unsupported unicode escape sequence",
    "invalid byte sequence",
    "out of range",
    "invalid input syntax",
];

pub(crate) fn store_error(err: DieselError) -> StoreError {
    match err {
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            match kind {
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::ForeignKeyViolation => {
                    StoreError::Conflict(message)
                }
                // Nothing the client sent was wrong; the request may be retried.
                DatabaseErrorKind::SerializationFailure => StoreError::Unavailable(message),
                DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
                    StoreError::Invalid(invalid(info.column_name().or(info.constraint_name()), &message))
                }
                DatabaseErrorKind::ClosedConnection => StoreError::Unavailable(message),
                _ if is_data_exception(&message) => {
                    StoreError::Invalid(invalid(info.column_name(), &message))
                }
                _ => StoreError::Unavailable(message),
            }
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn is_data_exception(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    DATA_EXCEPTIONS.iter().any(|m| message.contains(m))
}

fn invalid(column: Option<&str>, message: &str) -> ValidationError {
    ValidationError::new(
        column.unwrap_or("body"),
        format!("the store refused a value: {message}"),
    )
}

pub(crate) fn pool_error(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {err}"))
}
