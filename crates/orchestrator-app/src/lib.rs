#![doc = include_str!("../README.md")]

mod authz;
pub mod concurrency;
pub mod delivery;
pub mod directory;
pub mod droplets;
pub mod error;
pub mod feeds;
pub mod jobs;
pub mod management;
pub mod messaging;
pub mod metrics;
pub mod recovery;
pub mod registry;
mod rescues;
pub use rescues::limit_capability_labels;
pub mod public;
pub mod router;
pub mod scheduler;
pub mod schedules;
pub mod services;
pub mod tasks;
pub mod workflows;

use std::sync::Arc;

use orchestrator_ports::{Clock, DropletStore, EventBus, TaskStore};

pub use concurrency::ConcurrencyService;
pub use delivery::Delivery;
pub use directory::ServiceDirectory;
pub use droplets::DropletService;
pub use error::{AppError, AppResult};
pub use feeds::{
    Feed, FeedError, FeedFilter, FeedHub, FeedMessage, FeedSettings, FeedStatus, FrameText, Subscription,
    feed_owner,
};
pub use management::{ManagementService, Tunables};
pub use messaging::{BroadcastOutcome, MessageRequest, MessagingService, Reached};
pub use metrics::{DropletHealth, MetricsService, Performance, SeriesPoint, Summary, TimeRange};
pub use public::{PeerState, PublicService, Readiness, StatusSnapshot};
pub use recovery::{Recovery, RecoveryReport, RecoverySettings};
pub use registry::{RegistryHealth, RegistrySync};
pub use router::Router;
pub use scheduler::{JobStatus, Scheduler};
pub use schedules::{SchedulePatch, ScheduleService, ScheduleView};
pub use services::Services;
pub use tasks::{TaskDetails, TaskService, TaskView};
pub use workflows::{WorkflowService, WorkflowView};

/// The adapters every use case is built over.
#[derive(Clone)]
pub struct Ports {
    pub tasks: Arc<dyn TaskStore>,
    pub droplets: Arc<dyn DropletStore>,
    pub events: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ports")
    }
}
