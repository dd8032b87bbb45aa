//! Management use cases (admin only): the scheduler's jobs and the
//! emergency stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_domain::{Caller, Permission};

use crate::authz::require;
use crate::scheduler::{HEALTH_MONITOR, HEARTBEAT_CLEANUP, TASK_RETENTION, TASK_ROUTER};
use crate::{AppResult, JobStatus, Recovery, RecoverySettings, Scheduler};

/// The settings that take effect without a restart (`reload-config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tunables {
    pub router_interval: Duration,
    pub heartbeat_check_interval: Duration,
    pub heartbeat_cleanup_interval: Duration,
    pub task_retention_interval: Duration,
    pub recovery: RecoverySettings,
}

#[derive(Debug, Clone)]
pub struct ManagementService {
    scheduler: Arc<Scheduler>,
    recovery: Arc<Recovery>,
    current: Arc<Mutex<Tunables>>,
}

impl ManagementService {
    pub fn new(scheduler: Arc<Scheduler>, recovery: Arc<Recovery>, current: Tunables) -> Self {
        ManagementService {
            scheduler,
            recovery,
            current: Arc::new(Mutex::new(current)),
        }
    }

    /// The run-time settings in force.
    pub fn tunables(&self) -> Tunables {
        *self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `next`; returns the names of the variables whose value changed.
    pub fn reload(&self, caller: &Caller, next: Tunables) -> AppResult<Vec<&'static str>> {
        require(caller, Permission::Admin)?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let (before, after) = (current.recovery, next.recovery);
        let checks: [(&'static str, bool); 12] = [
            ("ROUTER_INTERVAL", current.router_interval != next.router_interval),
            (
                "HEARTBEAT_CHECK_INTERVAL",
                current.heartbeat_check_interval != next.heartbeat_check_interval,
            ),
            (
                "HEARTBEAT_CLEANUP_INTERVAL",
                current.heartbeat_cleanup_interval != next.heartbeat_cleanup_interval,
            ),
            (
                "TASK_RETENTION_INTERVAL",
                current.task_retention_interval != next.task_retention_interval,
            ),
            (
                "HEARTBEAT_TIMEOUT",
                before.heartbeat_timeout != after.heartbeat_timeout,
            ),
            ("ASSIGNMENT_ACK_TIMEOUT", before.ack_timeout != after.ack_timeout),
            ("ENABLE_AUTO_RECOVERY", before.enabled != after.enabled),
            (
                "RETRY_BACKOFF_BASE_SECONDS",
                before.retry.base != after.retry.base,
            ),
            ("RETRY_BACKOFF_MAX_SECONDS", before.retry.max != after.retry.max),
            (
                "DEADLINE_RISK_FLOOR_SECONDS",
                before.deadline_risk_floor != after.deadline_risk_floor,
            ),
            ("TASK_RUN_TIMEOUT", before.run_timeout != after.run_timeout),
            ("MAX_REQUEUES", before.max_requeues != after.max_requeues),
        ];
        self.scheduler.set_interval(TASK_ROUTER, next.router_interval);
        self.scheduler
            .set_interval(HEALTH_MONITOR, next.heartbeat_check_interval);
        self.scheduler
            .set_interval(HEARTBEAT_CLEANUP, next.heartbeat_cleanup_interval);
        self.scheduler
            .set_interval(TASK_RETENTION, next.task_retention_interval);
        self.recovery.set_settings(next.recovery);
        *current = next;
        let changed: Vec<&'static str> = checks.into_iter().filter(|(_, c)| *c).map(|(n, _)| n).collect();
        tracing::warn!(by = %caller.subject, ?changed, "configuration reloaded");
        Ok(changed)
    }

    /// Every management endpoint is for admins.
    pub fn authorize(&self, caller: &Caller) -> AppResult<()> {
        require(caller, Permission::Admin)
    }

    pub fn jobs(&self, caller: &Caller) -> AppResult<Vec<JobStatus>> {
        require(caller, Permission::Admin)?;
        Ok(self.scheduler.jobs())
    }

    /// The jobs' states, for the system health any reader may see.
    pub fn job_states(&self) -> Vec<JobStatus> {
        self.scheduler.jobs()
    }

    pub async fn pause(&self, caller: &Caller, id: &str) -> AppResult<JobStatus> {
        require(caller, Permission::Admin)?;
        let status = self.scheduler.pause(id).await?;
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
    pub async fn emergency_stop(&self, caller: &Caller) -> AppResult<Vec<JobStatus>> {
        require(caller, Permission::Admin)?;
        let jobs = self.scheduler.pause_all().await;
        tracing::error!(by = %caller.subject, "emergency stop: routing and every job paused");
        Ok(jobs)
    }
}
