//! `/concurrency-limits`: how many tasks with one `concurrency_key` may be
//! assigned or running at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A key's limit and how many of its tasks are assigned or running now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConcurrencyLimitBody {
    pub key: String,
    /// At most this many tasks with the key are assigned or running at
    /// once; 0 holds them all.
    pub max_running: u32,
    /// Tasks with the key assigned or running now (it may exceed a limit
    /// lowered while they ran).
    pub running: u32,
    pub updated_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The body of `PUT /concurrency-limits/{key}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetConcurrencyLimit {
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100000))]
    pub max_running: i64,
}

/// The answer about one key: `GET` and `PUT /concurrency-limits/{key}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConcurrencyLimitReply {
    pub limit: ConcurrencyLimitBody,
}

/// The answer to `GET /concurrency-limits`: every limit, by key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConcurrencyLimitList {
    pub limits: Vec<ConcurrencyLimitBody>,
}

/// The answer to `DELETE /concurrency-limits/{key}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConcurrencyLimitDeleted {
    pub key: String,
    pub deleted: bool,
}
