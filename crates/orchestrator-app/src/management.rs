//! Management use cases (admin only): the scheduler's jobs and the
//! emergency stop.

use std::sync::Arc;

use orchestrator_domain::{Caller, Permission};

use crate::authz::require;
use crate::{AppResult, JobStatus, Scheduler};

#[derive(Debug, Clone)]
pub struct ManagementService {
    scheduler: Arc<Scheduler>,
}

impl ManagementService {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        ManagementService { scheduler }
    }

    /// Every management endpoint is for admins.
    pub fn authorize(&self, caller: &Caller) -> AppResult<()> {
        require(caller, Permission::Admin)
    }

    pub fn jobs(&self, caller: &Caller) -> AppResult<Vec<JobStatus>> {
        require(caller, Permission::Admin)?;
        Ok(self.scheduler.jobs())
    }

    pub fn pause(&self, caller: &Caller, id: &str) -> AppResult<JobStatus> {
        require(caller, Permission::Admin)?;
        let status = self.scheduler.pause(id)?;
        tracing::warn!(job = id, by = %caller.subject, "job paused");
        Ok(status)
    }

    pub fn resume(&self, caller: &Caller, id: &str) -> AppResult<JobStatus> {
        require(caller, Permission::Admin)?;
        let status = self.scheduler.resume(id)?;
        tracing::warn!(job = id, by = %caller.subject, "job resumed");
        Ok(status)
    }

    /// Stops routing and pauses every job at once; reads keep being served.
    /// Resuming each job (`task_router` first) undoes it.
    pub fn emergency_stop(&self, caller: &Caller) -> AppResult<Vec<JobStatus>> {
        require(caller, Permission::Admin)?;
        tracing::error!(by = %caller.subject, "emergency stop: routing and every job paused");
        Ok(self.scheduler.pause_all())
    }
}
