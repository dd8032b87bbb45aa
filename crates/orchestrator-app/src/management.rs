//! Management use cases (admin only): the scheduler's jobs and the
//! emergency stop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_domain::{Caller, Permission};

use crate::authz::require;
use crate::jobs::{self, JobSpec};
use crate::{AppResult, JobStatus, Recovery, RecoverySettings, Scheduler};

/// The settings that take effect without a restart (`reload-config`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tunables {
    /// The interval of each job a reload re-times ([`JobSpec::reloadable`]),
    /// by job id; a job missing here runs on its default.
    pub intervals: BTreeMap<&'static str, Duration>,
    pub recovery: RecoverySettings,
}

impl Tunables {
    /// The interval `job` runs on, as these settings give it.
    pub fn interval(&self, job: &JobSpec) -> Duration {
        self.intervals
            .get(job.id)
            .copied()
            .unwrap_or_else(|| job.default_interval())
    }
}

/// The jobs a reload re-times, in the scheduler's order.
fn reloadable() -> impl Iterator<Item = &'static JobSpec> {
    jobs::ALL.iter().map(|d| d.spec).filter(|s| s.reloadable)
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
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `next`; returns the names of the variables whose value changed.
    pub fn reload(&self, caller: &Caller, next: Tunables) -> AppResult<Vec<&'static str>> {
        require(caller, Permission::Admin)?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let (before, after) = (current.recovery, next.recovery);
        let mut checks: Vec<(&'static str, bool)> = reloadable()
            .map(|job| (job.interval_setting, current.interval(job) != next.interval(job)))
            .collect();
        checks.extend([
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
        ]);
        for job in reloadable() {
            self.scheduler.set_interval(job.id, next.interval(job));
        }
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
