//! Concurrency limits in memory: the limits by key; what runs is counted
//! from the tasks, as PostgreSQL counts its run rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrator_domain::{ConcurrencyLimit, Task};
use orchestrator_ports::{ConcurrencyStore, KeyUsage, StoreError, StoreResult};

use super::{MemoryStore, State};

fn unknown(key: &str) -> StoreError {
    StoreError::UnknownName {
        entity: "concurrency limit",
        name: key.to_owned(),
    }
}

impl State {
    /// Tasks with `key` assigned or running.
    fn running_with(&self, key: &str) -> u32 {
        let n = self
            .tasks
            .values()
            .filter(|t| t.status.occupies_droplet() && t.concurrency_key.as_deref() == Some(key))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Why `task` may not be assigned now for its key (None: it may).
    pub(super) fn key_refusal(&self, task: &Task) -> Option<StoreError> {
        let key = task.concurrency_key.as_deref()?;
        let limit = self.limits.get(key)?;
        let running = self.running_with(key);
        (!limit.has_room(running)).then(|| StoreError::ConcurrencyLimited {
            key: key.to_owned(),
            running,
            max_running: limit.max_running,
        })
    }

    fn usage(&self, limit: &ConcurrencyLimit) -> KeyUsage {
        KeyUsage {
            running: self.running_with(&limit.key),
            limit: limit.clone(),
        }
    }
}

#[async_trait]
impl ConcurrencyStore for MemoryStore {
    async fn set_concurrency_limit(
        &self,
        key: &str,
        max_running: u32,
        by: Option<String>,
        at: DateTime<Utc>,
    ) -> StoreResult<KeyUsage> {
        let mut state = self.lock();
        let limit = ConcurrencyLimit {
            key: key.to_owned(),
            max_running,
            updated_by: by,
            updated_at: at,
        };
        state.limits.insert(key.to_owned(), limit.clone());
        Ok(state.usage(&limit))
    }

    async fn concurrency_limit(&self, key: &str) -> StoreResult<KeyUsage> {
        let state = self.lock();
        let limit = state.limits.get(key).ok_or_else(|| unknown(key))?;
        Ok(state.usage(limit))
    }

    async fn concurrency_limits(&self) -> StoreResult<Vec<KeyUsage>> {
        let state = self.lock();
        Ok(state.limits.values().map(|l| state.usage(l)).collect())
    }

    async fn delete_concurrency_limit(&self, key: &str) -> StoreResult<()> {
        self.lock()
            .limits
            .remove(key)
            .map(drop)
            .ok_or_else(|| unknown(key))
    }
}
