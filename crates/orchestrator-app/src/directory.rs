//! Which droplet a service of the mesh is. Droplets built from the mesh's
//! guides name themselves by the Registry's id for them (`service_id`) or
//! by their name, in their heartbeats and their Registry tokens; the synced
//! directory maps those to droplets. A service the store does not know yet
//! (it registered with the Registry after the last sync) makes the directory
//! be copied again, at most once every [`UNKNOWN_REFRESH_MIN_INTERVAL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orchestrator_domain::{DropletId, ServiceRef};

use crate::{AppResult, Ports, RegistrySync};

/// How long a service found is remembered without asking the store again.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(60);
/// Unknown services make the directory be copied again at most this often.
pub const UNKNOWN_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct ServiceDirectory {
    ports: Ports,
    registry: Option<Arc<RegistrySync>>,
    found: Mutex<HashMap<ServiceRef, (DropletId, Instant)>>,
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
        })
    }

    /// The droplet named by the first of `names` that names one, asking the
    /// Registry once when the store knows none of them.
    pub async fn droplet_of(&self, names: &[ServiceRef]) -> AppResult<Option<DropletId>> {
        if let Some(id) = names.iter().find_map(|name| self.remembered(name)) {
            return Ok(Some(id));
        }
        if let Some(id) = self.look_up(names).await? {
            return Ok(Some(id));
        }
        let Some(registry) = &self.registry else {
            return Ok(None);
        };
        registry
            .refresh_for_unknown_service(UNKNOWN_REFRESH_MIN_INTERVAL)
            .await;
        self.look_up(names).await
    }

    /// Forgets the services found (`POST /management/cache/clear`).
    pub fn forget(&self) {
        self.found.lock().unwrap_or_else(PoisonError::into_inner).clear();
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
