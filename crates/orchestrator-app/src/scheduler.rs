//! The scheduler of the periodic jobs (spec section 6, ids of API.md).
//!
//! Each job runs every `interval`; a run that fails is logged and recorded
//! in `last_error`, and the job runs again next time. Jobs that must run
//! on one replica only ask the `LeaderElection` port before each run.
//! Pausing a job stops its runs (and, for the router, its event-driven
//! passes too) until it is resumed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrator_ports::{Clock, LeaderElection};
use tokio::sync::Notify;

use crate::jobs::JobSpec;
use crate::{AppError, AppResult, Services};

/// A periodic job.
#[async_trait]
pub trait Job: Send + Sync {
    /// What it is: its id, whether only the leader runs it, its setting.
    fn spec(&self) -> &'static JobSpec;
    fn id(&self) -> &'static str {
        self.spec().id
    }
    /// True when only the leader replica may run it.
    fn leader_only(&self) -> bool {
        self.spec().leader_only
    }
    async fn run(&self) -> AppResult<()>;
    /// Told when the job is paused or resumed, for jobs that also act outside their runs.
    fn set_paused(&self, _paused: bool) {}
    /// Waits until work started before a pause has finished.
    async fn quiesce(&self) {}
    /// Why the job never runs in this process, when it cannot (a job whose
    /// service is not configured). It is listed and can be paused all the same.
    fn idle_reason(&self) -> Option<String> {
        None
    }
}

/// A job's state (the server shows it as the API's `JobStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub id: &'static str,
    pub interval_seconds: u64,
    pub paused: bool,
    /// False on a replica that waits for the leader to go (leader-only jobs).
    pub leader: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub runs: u64,
    /// Runs that ended in an error.
    pub failures: u64,
    /// Set when the job never runs in this process, and says why.
    pub idle_reason: Option<String>,
}

struct Entry {
    job: Arc<dyn Job>,
    /// Changeable at run time (`reload-config`); read before each wait.
    interval: Mutex<Duration>,
    status: Mutex<JobStatus>,
    resumed: Notify,
}

pub struct Scheduler {
    entries: Vec<Arc<Entry>>,
    leader: Arc<dyn LeaderElection>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("jobs", &self.jobs()).finish()
    }
}

impl Scheduler {
    pub fn new(leader: Arc<dyn LeaderElection>, clock: Arc<dyn Clock>) -> Self {
        Scheduler {
            entries: Vec::new(),
            leader,
            clock,
        }
    }

    pub fn add(&mut self, job: Arc<dyn Job>, interval: Duration) {
        let status = JobStatus {
            id: job.id(),
            interval_seconds: interval.as_secs(),
            paused: false,
            leader: !job.leader_only(),
            last_run_at: None,
            next_run_at: None,
            last_error: None,
            runs: 0,
            failures: 0,
            idle_reason: job.idle_reason(),
        };
        self.entries.push(Arc::new(Entry {
            job,
            interval: Mutex::new(interval),
            status: Mutex::new(status),
            resumed: Notify::new(),
        }));
    }

    /// Runs every job that can run here, each as a service (`job: ID`).
    pub fn start(self: &Arc<Self>, services: &Services) {
        for entry in self.entries.iter().filter(|e| e.status().idle_reason.is_none()) {
            let (scheduler, entry) = (Arc::clone(self), Arc::clone(entry));
            let name = format!("job: {}", entry.status().id);
            services.spawn(name, async move { scheduler.drive(&entry).await });
        }
    }

    async fn drive(&self, entry: &Entry) {
        // The first run is at once, then one every interval (as it stands
        // when the wait starts) after the start of the previous run.
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::time::sleep_until(next).await;
            next = tokio::time::Instant::now() + entry.interval();
            while entry.status().paused {
                entry.resumed.notified().await;
            }
            let leader = !entry.job.leader_only() || self.leader.is_leader().await;
            let outcome = if leader { Some(entry.job.run().await) } else { None };
            self.record(entry, leader, outcome);
        }
    }

    fn record(&self, entry: &Entry, leader: bool, outcome: Option<AppResult<()>>) {
        let now = self.clock.now();
        let mut status = entry.status();
        status.leader = leader;
        status.next_run_at = Some(now + chrono::Duration::from_std(entry.interval()).unwrap_or_default());
        if let Some(outcome) = outcome {
            status.last_run_at = Some(now);
            status.runs += 1;
            status.failures += u64::from(outcome.is_err());
            status.last_error = outcome.err().map(|err| {
                tracing::warn!(job = status.id, error = %err, "job failed; it runs again next time");
                err.to_string()
            });
        }
    }

    pub fn jobs(&self) -> Vec<JobStatus> {
        self.entries.iter().map(|e| e.status().clone()).collect()
    }

    /// Pauses a job; returns once any of its work in flight has finished.
    pub async fn pause(&self, id: &str) -> AppResult<JobStatus> {
        let status = self.set_paused(id, true)?;
        if let Some(entry) = self.entries.iter().find(|e| e.job.id() == id) {
            entry.job.quiesce().await;
        }
        Ok(status)
    }

    pub fn resume(&self, id: &str) -> AppResult<JobStatus> {
        self.set_paused(id, false)
    }

    /// Changes a job's interval from its next wait on; false for an unknown id.
    pub fn set_interval(&self, id: &str, interval: Duration) -> bool {
        let Some(entry) = self.entries.iter().find(|e| e.job.id() == id) else {
            return false;
        };
        *entry.interval.lock().unwrap_or_else(|p| p.into_inner()) = interval;
        entry.status().interval_seconds = interval.as_secs();
        true
    }

    /// Pauses every job at once (emergency stop); returns their states.
    pub async fn pause_all(&self) -> Vec<JobStatus> {
        let statuses: Vec<JobStatus> = self.entries.iter().map(|e| e.set_paused(true)).collect();
        for entry in &self.entries {
            entry.job.quiesce().await;
        }
        statuses
    }

    fn set_paused(&self, id: &str, paused: bool) -> AppResult<JobStatus> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.job.id() == id)
            .ok_or_else(|| AppError::UnknownName {
                entity: "job",
                name: id.to_owned(),
            })?;
        Ok(entry.set_paused(paused))
    }
}

impl Entry {
    fn interval(&self) -> Duration {
        *self.interval.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self) -> std::sync::MutexGuard<'_, JobStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_paused(&self, paused: bool) -> JobStatus {
        self.job.set_paused(paused);
        let status = {
            let mut status = self.status();
            status.paused = paused;
            status.clone()
        };
        if !paused {
            self.resumed.notify_one();
        }
        status
    }
}
