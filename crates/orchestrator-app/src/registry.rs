//! Joining the mesh through the Registry (droplet #3), when `REGISTRY_URL`
//! is set: this orchestrator registers itself (retrying with backoff, off
//! the start path), the droplet directory is copied into the store every
//! `REGISTRY_SYNC_INTERVAL` so that routing keeps working while the Registry
//! is down, and the Registry's token-signing key is fetched and cached.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orchestrator_domain::{DomainEvent, DropletRegistration, RegistrationDraft, RetryPolicy};
use orchestrator_ports::{RegistryClient, RegistryError, ServiceRegistration, SigningKey};

use crate::{AppError, AppResult, Ports, Services};

/// The key is fetched again at most this often, however many tokens fail.
pub const KEY_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Backoff between registration attempts: 1 s, doubling, at most a minute.
const REGISTRATION_BACKOFF: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// What `/dependencies` says of the Registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryHealth {
    /// `unknown` before the first call, then `connected` or `disconnected` after each.
    pub status: &'static str,
    pub last_check: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The Registry's id for this orchestrator, once registered.
    pub service_id: Option<i64>,
    /// Droplets in the last directory copied.
    pub directory_size: Option<usize>,
}

struct CachedKey {
    key: Option<SigningKey>,
    /// When the key was last asked for, successfully or not.
    last_attempt: Option<Instant>,
}

pub struct RegistrySync {
    ports: Ports,
    client: Arc<dyn RegistryClient>,
    me: ServiceRegistration,
    key_refresh: Duration,
    health: Mutex<RegistryHealth>,
    key: tokio::sync::Mutex<CachedKey>,
    /// When an unknown service last made the directory be copied again.
    unknown_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RegistrySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySync")
            .field("health", &self.health())
            .finish()
    }
}

impl RegistrySync {
    pub fn new(ports: Ports, client: Arc<dyn RegistryClient>, me: ServiceRegistration) -> Arc<Self> {
        Self::with_key_refresh(ports, client, me, KEY_REFRESH_MIN_INTERVAL)
    }

    /// As `new`, with another minimum interval between key fetches.
    pub fn with_key_refresh(
        ports: Ports,
        client: Arc<dyn RegistryClient>,
        me: ServiceRegistration,
        key_refresh: Duration,
    ) -> Arc<Self> {
        Arc::new(RegistrySync {
            ports,
            client,
            me,
            key_refresh,
            health: Mutex::new(RegistryHealth {
                status: "unknown",
                ..RegistryHealth::default()
            }),
            key: tokio::sync::Mutex::new(CachedKey {
                key: None,
                last_attempt: None,
            }),
            unknown_refresh: tokio::sync::Mutex::new(None),
        })
    }

    pub fn health(&self) -> RegistryHealth {
        self.lock_health().clone()
    }

    fn lock_health(&self) -> MutexGuard<'_, RegistryHealth> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how a call to the Registry went.
    fn checked<T>(&self, outcome: &Result<T, RegistryError>) {
        let mut health = self.lock_health();
        health.last_check = Some(self.ports.clock.now());
        match outcome {
            Ok(_) => {
                health.status = "connected";
                health.last_error = None;
            }
            Err(err) => {
                health.status = "disconnected";
                health.last_error = Some(err.0.clone());
            }
        }
    }

    /// Registers this orchestrator, then fetches the signing key and the
    /// directory, retrying registration with backoff until it succeeds.
    /// Runs as a service: the server serves meanwhile.
    pub fn start(self: &Arc<Self>, services: &Services) {
        let sync = Arc::clone(self);
        services.spawn("registry: registration", async move {
            sync.signing_key(false).await;
            if let Err(err) = sync.sync_directory().await {
                tracing::warn!(error = %err, "could not copy the Registry's directory; the next sync retries");
            }
            let mut attempt = 0;
            while let Err(err) = sync.register().await {
                let delay = REGISTRATION_BACKOFF.delay(attempt, rand::random::<f64>());
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "registration with the Registry failed");
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
            }
        })
    }

    async fn register(&self) -> Result<(), RegistryError> {
        let outcome = self.client.register(&self.me).await;
        self.checked(&outcome);
        let registered = outcome?;
        self.lock_health().service_id = Some(registered.service_id);
        tracing::info!(service_id = registered.service_id, "registered with the Registry");
        Ok(())
    }

    /// Copies the directory into the store: new droplets appear `inactive`
    /// until they beat; known ones get their name, endpoint and
    /// capabilities; each keeps the Registry's id for its service. Returns
    /// how many entries were copied.
    pub async fn sync_directory(&self) -> AppResult<usize> {
        let outcome = self.client.directory().await;
        self.checked(&outcome);
        let entries = outcome.map_err(|e| AppError::Unavailable(e.0))?;
        let now = self.ports.clock.now();
        let mut copied = 0;
        // The directory lists this orchestrator too; it is no droplet to route to.
        for entry in entries.into_iter().filter(|e| e.droplet_id != self.me.droplet_id) {
            let draft = RegistrationDraft {
                droplet_id: entry.droplet_id,
                name: entry.name,
                steward: entry.steward,
                endpoint: entry.endpoint,
                capabilities: entry.capabilities,
                max_concurrent_tasks: None,
                resume: None,
            };
            let registration = match DropletRegistration::parse(draft) {
                Ok(registration) => registration,
                Err(err) => {
                    tracing::warn!(droplet_id = entry.droplet_id, error = %err, "skipping a directory entry");
                    continue;
                }
            };
            let change = self
                .ports
                .droplets
                .sync_droplet(registration, entry.service_id, now)
                .await?;
            if change.previous_status.is_none() {
                self.ports
                    .events
                    .publish(DomainEvent::DropletRegistered(change.droplet))
                    .await;
            }
            copied += 1;
        }
        self.lock_health().directory_size = Some(copied);
        Ok(copied)
    }

    /// Copies the directory again because a service it may list is not in
    /// the store, unless that was done less than `min_interval` ago.
    /// Callers that arrive while a copy is under way wait for it, then look
    /// again; so a burst of unknown services costs one call to the Registry.
    pub async fn refresh_for_unknown_service(&self, min_interval: Duration) {
        let mut last = self.unknown_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(err) = self.sync_directory().await {
            tracing::warn!(error = %err, "could not copy the Registry's directory to find a service");
        }
    }

    /// Forgets the cached signing key; the next RS256 token fetches it again.
    pub async fn clear_key_cache(&self) {
        let mut cached = self.key.lock().await;
        cached.key = None;
        cached.last_attempt = None;
    }

    /// The Registry's signing key. With `refresh`, or when none is cached,
    /// it is fetched again, unless it was fetched less than the refresh
    /// interval ago; a failed fetch keeps the cached key.
    pub async fn signing_key(&self, refresh: bool) -> Option<SigningKey> {
        let mut cached = self.key.lock().await;
        let recent = cached
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.key_refresh);
        if (cached.key.is_some() && !refresh) || recent {
            return cached.key.clone();
        }
        cached.last_attempt = Some(Instant::now());
        let outcome = self.client.signing_key().await;
        self.checked(&outcome);
        match outcome {
            Ok(key) => cached.key = Some(key),
            Err(err) => tracing::warn!(error = %err, "could not fetch the Registry's signing key"),
        }
        cached.key.clone()
    }
}
