//! Concurrency limits per key (`/concurrency-limits`): reading needs
//! `read`, setting and removing a limit `admin` (a limit holds back every
//! caller's tasks of its key). The stores enforce them.

use std::sync::Arc;

use orchestrator_domain::concurrency::{parse_key, parse_max_running};
use orchestrator_domain::{Caller, Permission};
use orchestrator_ports::{ConcurrencyStore, KeyUsage};

use crate::authz::require;
use crate::{AppResult, Ports};

#[derive(Clone)]
pub struct ConcurrencyService {
    ports: Ports,
    limits: Arc<dyn ConcurrencyStore>,
    /// Woken when a limit is raised or removed, so that tasks it held run now.
    router: Option<Arc<crate::Router>>,
}

impl std::fmt::Debug for ConcurrencyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConcurrencyService")
    }
}

impl ConcurrencyService {
    pub fn new(ports: Ports, limits: Arc<dyn ConcurrencyStore>) -> Self {
        Self {
            ports,
            limits,
            router: None,
        }
    }

    pub fn with_router(mut self, router: Arc<crate::Router>) -> Self {
        self.router = Some(router);
        self
    }

    fn wake_router(&self) {
        if let Some(router) = &self.router {
            router.wake();
        }
    }

    /// Sets the limit of `key` (`admin`); it holds from the next
    /// assignment on: tasks already running above it finish.
    pub async fn set(&self, caller: &Caller, key: &str, max_running: i64) -> AppResult<KeyUsage> {
        require(caller, Permission::Admin)?;
        let key = parse_key("key", key)?;
        let max_running = parse_max_running(max_running)?;
        let usage = self
            .limits
            .set_concurrency_limit(
                &key,
                max_running,
                Some(caller.subject.clone()),
                self.ports.clock.now(),
            )
            .await?;
        // A raised limit may let waiting tasks run now.
        self.wake_router();
        Ok(usage)
    }

    pub async fn get(&self, caller: &Caller, key: &str) -> AppResult<KeyUsage> {
        require(caller, Permission::Read)?;
        Ok(self.limits.concurrency_limit(key).await?)
    }

    pub async fn list(&self, caller: &Caller) -> AppResult<Vec<KeyUsage>> {
        require(caller, Permission::Read)?;
        Ok(self.limits.concurrency_limits().await?)
    }

    /// Removes the limit of `key` (`admin`): its tasks run without one.
    pub async fn delete(&self, caller: &Caller, key: &str) -> AppResult<()> {
        require(caller, Permission::Admin)?;
        self.limits.delete_concurrency_limit(key).await?;
        self.wake_router();
        Ok(())
    }
}
