#![doc = include_str!("../README.md")]

pub mod concurrency;
pub mod droplet;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod permission;
pub mod priority;
pub mod recovery;
pub mod retry;
pub mod routing;
pub mod schedule;
pub mod state_machine;
pub mod task;
pub mod workflow;

pub use concurrency::ConcurrencyLimit;
pub use droplet::{
    Capability, Droplet, DropletId, DropletRegistration, DropletStatus, HeartbeatReport, RegistrationDraft,
    ServiceHeartbeat, ServiceRef,
};
pub use endpoint::EndpointPolicy;
pub use error::{ValidationError, storable_json, storable_text};
pub use event::DomainEvent;
pub use permission::{Caller, Permission, Permissions};
pub use priority::Priority;
pub use recovery::{RecoveryLimits, RecoveryReason, RecoveryTimeouts};
pub use retry::RetryPolicy;
pub use routing::{
    Candidate, Considered, Explanation, Placement, PlacementRecord, PlacementRule, RoutingPolicy, has_room,
};
pub use schedule::{CatchUp, CronSpec, NEXT_RUNS, NewSchedule, Overlap, Schedule, ScheduleDraft};
pub use state_machine::{Actor, Role, TRANSITIONS, TransitionError, TransitionRule};
pub use task::{
    CancelRequestError, HistoryEntry, NewTask, Progress, Task, TaskDraft, TaskId, TaskStatus, TaskUpdate,
    Wait,
};
pub use workflow::{
    DependencyFailure, MAX_WORKFLOW_TASKS, NewWorkflow, NewWorkflowTask, Readiness, Settlement,
    WorkflowDraft, WorkflowId, WorkflowState, WorkflowTaskDraft,
};
