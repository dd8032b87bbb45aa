//! `/concurrency-limits`: how many tasks with one `concurrency_key` may be
//! assigned or running at once. Reading needs `read`; setting and removing
//! a limit `admin`.

pub use orchestrator_api::concurrency::{ConcurrencyLimitBody, ConcurrencyLimitDeleted};
use orchestrator_api::concurrency::{ConcurrencyLimitList, ConcurrencyLimitReply, SetConcurrencyLimit};

use crate::{Client, ClientError};

impl Client {
    /// Sets the limit of `key`: at most `max_running` of its tasks are
    /// assigned or running at once (0 holds them all).
    pub async fn set_concurrency_limit(
        &self,
        key: &str,
        max_running: u32,
    ) -> Result<ConcurrencyLimitBody, ClientError> {
        let body = SetConcurrencyLimit {
            max_running: i64::from(max_running),
        };
        let reply: ConcurrencyLimitReply = self
            .send(
                reqwest::Method::PUT,
                &format!("/concurrency-limits/{key}"),
                Some(&body),
            )
            .await?;
        Ok(reply.limit)
    }

    /// The limit of `key` and how many of its tasks run; `not_found` when
    /// it has none.
    pub async fn concurrency_limit(&self, key: &str) -> Result<ConcurrencyLimitBody, ClientError> {
        let reply: ConcurrencyLimitReply = self
            .send(
                reqwest::Method::GET,
                &format!("/concurrency-limits/{key}"),
                None::<&()>,
            )
            .await?;
        Ok(reply.limit)
    }

    /// Every limit, by key.
    pub async fn concurrency_limits(&self) -> Result<Vec<ConcurrencyLimitBody>, ClientError> {
        let reply: ConcurrencyLimitList = self
            .send(reqwest::Method::GET, "/concurrency-limits", None::<&()>)
            .await?;
        Ok(reply.limits)
    }

    /// Removes the limit of `key`: its tasks run without one.
    pub async fn delete_concurrency_limit(&self, key: &str) -> Result<ConcurrencyLimitDeleted, ClientError> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/concurrency-limits/{key}"),
            None::<&()>,
        )
        .await
    }
}
