//! Which droplet a service of the mesh is. Droplets built from the mesh's
//! guides name themselves by the Registry's id for them (`service_id`) or
//! by their name, in their heartbeats and their Registry tokens; the synced
//! directory maps those to droplets (a name only as the directory lists it,
//! never as a droplet named itself). A service the store does not know yet
//! (it registered with the Registry after the last sync) makes the directory
//! be copied again, at most once every [`UNKNOWN_REFRESH_MIN_INTERVAL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orchestrator_domain::{DropletId, ServiceRef};

use crate::{AppResult, Ports, RegistrySync};

/// How long a service found is remembered without asking the store again:
/// also how long a service id the directory moved to another droplet may
/// still name the old one here.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(10);
/// Unknown services make the directory be copied again at most this often,
/// and a service still unknown after that is not looked for again sooner.
pub const UNKNOWN_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct ServiceDirectory {
    ports: Ports,
    registry: Option<Arc<RegistrySync>>,
    found: Mutex<HashMap<ServiceRef, (DropletId, Instant)>>,
    /// Services found to be no droplet, and when.
    unknown: Mutex<HashMap<Vec<ServiceRef>, Instant>>,
}

impl std::fmt::Debug for ServiceDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDirectory")
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

impl ServiceDirectory {
    /// Without a Registry, only droplets the store knows by their service
    /// id or name are found.
    pub fn new(ports: Ports, registry: Option<Arc<RegistrySync>>) -> Arc<Self> {
        Arc::new(ServiceDirectory {
            ports,
            registry,
            found: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
        })
    }

    /// The droplet `names` name. The Registry's ids come first, and a name
    /// (which a droplet registering itself chooses) counts only when no id
    /// finds one, even after the directory is asked again: a name never
    /// wins over an id the directory has not been copied with yet.
    pub async fn droplet_of(&self, names: &[ServiceRef]) -> AppResult<Option<DropletId>> {
        let (ids, words): (Vec<ServiceRef>, Vec<ServiceRef>) = names
            .iter()
            .cloned()
            .partition(|n| matches!(n, ServiceRef::Id(_)));
        let first = if ids.is_empty() { &words } else { &ids };
        if let Some(id) = self.known(first).await? {
            return Ok(Some(id));
        }
        if self.recently_unknown(names) {
            return Ok(None);
        }
        if let Some(registry) = &self.registry {
            registry
                .refresh_for_unknown_service(UNKNOWN_REFRESH_MIN_INTERVAL)
                .await;
        }
        for group in [&ids, &words] {
            if let Some(id) = self.look_up(group).await? {
                return Ok(Some(id));
            }
        }
        self.lock_unknown().insert(names.to_vec(), Instant::now());
        Ok(None)
    }

    /// Found in memory, else in the store.
    async fn known(&self, names: &[ServiceRef]) -> AppResult<Option<DropletId>> {
        match names.iter().find_map(|name| self.remembered(name)) {
            Some(id) => Ok(Some(id)),
            None => self.look_up(names).await,
        }
    }

    fn recently_unknown(&self, names: &[ServiceRef]) -> bool {
        let mut unknown = self.lock_unknown();
        unknown.retain(|_, at| at.elapsed() < UNKNOWN_REFRESH_MIN_INTERVAL);
        unknown.contains_key(names)
    }

    fn lock_unknown(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<ServiceRef>, Instant>> {
        self.unknown.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the services found (`POST /management/cache/clear`).
    pub fn forget(&self) {
        self.found.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.lock_unknown().clear();
    }

    async fn look_up(&self, names: &[ServiceRef]) -> AppResult<Option<DropletId>> {
        for name in names {
            if let Some(id) = self.ports.droplets.find_droplet_by_service(name).await? {
                self.found
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.clone(), (id, Instant::now()));
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn remembered(&self, name: &ServiceRef) -> Option<DropletId> {
        let found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found
            .get(name)
            .filter(|(_, at)| at.elapsed() < REMEMBERED_FOR)
            .map(|(id, _)| *id)
    }
}
