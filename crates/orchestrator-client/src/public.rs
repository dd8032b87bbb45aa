//! The public endpoints besides `/health`: the UDC ones (`/capabilities`,
//! `/state`, `/dependencies`) and the mesh's service conventions
//! (`/readyz`, `/v1/metadata`). They need no token and answer without an
//! envelope.

pub use orchestrator_api::public::{
    Capabilities as ServerCapabilities, CustomMetrics as StateCounts, Dependencies, Dependency,
    DependencyStatus, Endpoint as ServiceEndpoint, Metadata as ServiceMetadata, Readiness, ReadinessChecks,
    State as ServerState,
};

use crate::{Client, ClientError};

impl Client {
    /// Whether the orchestrator can take work (no token needed). A 503
    /// carries the same body, so a `not_ready` answer is `Ok` too.
    pub async fn readiness(&self) -> Result<Readiness, ClientError> {
        self.public_either("/readyz").await
    }

    /// Name, version, capabilities and endpoints (no token needed).
    pub async fn metadata(&self) -> Result<ServiceMetadata, ClientError> {
        self.public("/v1/metadata").await
    }

    /// The version and features of the orchestrator (no token needed).
    pub async fn capabilities(&self) -> Result<ServerCapabilities, ClientError> {
        self.public("/capabilities").await
    }

    /// The process's figures and the task and droplet counts (no token needed).
    pub async fn state(&self) -> Result<ServerState, ClientError> {
        self.public("/state").await
    }

    /// The droplets the orchestrator relies on, and their state (no token needed).
    pub async fn dependencies(&self) -> Result<Dependencies, ClientError> {
        self.public("/dependencies").await
    }
}
