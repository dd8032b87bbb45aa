//! Cron schedules: their use cases (`/schedules`) and the service that
//! fires them. Every replica runs the service; a fire is a compare-and-set
//! in the store, so each fire time makes one task whichever replica gets
//! there first, and none after a restart fires it again.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator_domain::{
    Caller, CatchUp, DomainEvent, NEXT_RUNS, NewSchedule, Overlap, Permission, Schedule, ScheduleDraft,
    TaskDraft, ValidationError, schedule::valid_template,
};
use orchestrator_ports::{ChangeRecord, Fire, FiredTask, ScheduleDefinition, ScheduleStore, StoreError};
use tokio::sync::Notify;

use crate::authz::require;
use crate::{AppResult, Ports, Services};

/// How often the firing service reads the schedules again even when none
/// is due: changes made on another replica reach it within this.
const RESCAN: Duration = Duration::from_secs(10);

/// A schedule and its next fire times ([`NEXT_RUNS`] of them; none while
/// paused).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleView {
    pub schedule: Schedule,
    pub next_runs: Vec<DateTime<Utc>>,
}

/// A change of a schedule's definition: what is given replaces what was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulePatch {
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub task: Option<TaskDraft>,
    pub overlap: Option<Overlap>,
    pub catch_up: Option<CatchUp>,
}

/// The use cases of `/schedules`, and the service that fires them.
#[derive(Clone)]
pub struct ScheduleService {
    ports: Ports,
    schedules: Arc<dyn ScheduleStore>,
    /// Wakes the firing service when a schedule changed here.
    changed: Arc<Notify>,
}

impl std::fmt::Debug for ScheduleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScheduleService")
    }
}

impl ScheduleService {
    pub fn new(ports: Ports, schedules: Arc<dyn ScheduleStore>) -> Self {
        Self {
            ports,
            schedules,
            changed: Arc::default(),
        }
    }

    fn view(&self, schedule: Schedule) -> AppResult<ScheduleView> {
        let spec = schedule.spec()?;
        let now = self.ports.clock.now();
        let next_runs = match schedule.next_fire_at(&spec, now) {
            Some(first) => std::iter::once(first)
                .chain(spec.next_runs(first, NEXT_RUNS - 1))
                .collect(),
            None => Vec::new(),
        };
        Ok(ScheduleView { schedule, next_runs })
    }

    /// A new schedule (`write`); its first fire is its first fire time
    /// after now.
    pub async fn create(&self, caller: &Caller, draft: ScheduleDraft) -> AppResult<ScheduleView> {
        require(caller, Permission::Write)?;
        let now = self.ports.clock.now();
        let new = NewSchedule::parse(draft, now)?;
        let stored = self
            .schedules
            .create_schedule(new, Some(caller.subject.clone()), now)
            .await?;
        self.changed.notify_one();
        self.view(stored)
    }

    pub async fn list(&self, caller: &Caller) -> AppResult<Vec<ScheduleView>> {
        require(caller, Permission::Read)?;
        let all = self.schedules.list_schedules().await?;
        all.into_iter().map(|s| self.view(s)).collect()
    }

    pub async fn get(&self, caller: &Caller, name: &str) -> AppResult<ScheduleView> {
        require(caller, Permission::Read)?;
        self.view(self.schedules.get_schedule(name).await?)
    }

    /// Changes a schedule's definition (`write`): fire times from now on
    /// follow it; none missed before is fired.
    pub async fn update(&self, caller: &Caller, name: &str, patch: SchedulePatch) -> AppResult<ScheduleView> {
        require(caller, Permission::Write)?;
        let current = self.schedules.get_schedule(name).await?;
        let now = self.ports.clock.now();
        let cron = patch.cron.unwrap_or(current.cron);
        let timezone = patch.timezone.unwrap_or(current.timezone);
        let spec = orchestrator_domain::CronSpec::parse(&cron, Some(&timezone))?;
        let template = match patch.task {
            Some(task) => valid_template(task, now)?,
            None => current.template,
        };
        let definition = ScheduleDefinition {
            cron: spec.expression().to_owned(),
            timezone: spec.timezone().to_owned(),
            template,
            overlap: patch.overlap.unwrap_or(current.overlap),
            catch_up: patch.catch_up.unwrap_or(current.catch_up),
            paused: current.paused,
        };
        self.write(name, definition, now).await
    }

    /// Pauses (`write`): no fire until resumed, and none of the fire times
    /// missed meanwhile.
    pub async fn set_paused(&self, caller: &Caller, name: &str, paused: bool) -> AppResult<ScheduleView> {
        require(caller, Permission::Write)?;
        let current = self.schedules.get_schedule(name).await?;
        let definition = ScheduleDefinition {
            cron: current.cron,
            timezone: current.timezone,
            template: current.template,
            overlap: current.overlap,
            catch_up: current.catch_up,
            paused,
        };
        self.write(name, definition, self.ports.clock.now()).await
    }

    async fn write(
        &self,
        name: &str,
        definition: ScheduleDefinition,
        at: DateTime<Utc>,
    ) -> AppResult<ScheduleView> {
        let stored = self.schedules.update_schedule(name, definition, at).await?;
        self.changed.notify_one();
        self.view(stored)
    }

    /// Deletes a schedule (`write`); the tasks it made stay.
    pub async fn delete(&self, caller: &Caller, name: &str) -> AppResult<()> {
        require(caller, Permission::Write)?;
        self.schedules.delete_schedule(name).await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Fires what is due, then sleeps until the next fire time (or a
    /// change here, or [`RESCAN`]), as the service `schedules: fire when due`.
    pub fn start(&self, services: &Services) {
        let service = self.clone();
        services.spawn("schedules: fire when due", async move {
            loop {
                let wait = service.fire_due().await;
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = service.changed.notified() => {}
                }
            }
        });
    }

    /// Fires every schedule due now; returns how long until the next one
    /// is (at most [`RESCAN`]).
    pub async fn fire_due(&self) -> Duration {
        let schedules = match self.schedules.list_schedules().await {
            Ok(schedules) => schedules,
            Err(err) => {
                tracing::warn!(error = %err, "schedules unreadable; asking again shortly");
                return Duration::from_secs(1);
            }
        };
        let now = self.ports.clock.now();
        let mut next = now + chrono::TimeDelta::from_std(RESCAN).unwrap_or_default();
        for schedule in schedules {
            let Ok(spec) = schedule.spec() else { continue };
            if let Some(at) = schedule.due(&spec, now) {
                self.fire(&schedule, at, now).await;
            }
            if let Some(at) = schedule.next_fire_at(&spec, now) {
                next = next.min(at);
            }
        }
        (next - self.ports.clock.now()).to_std().unwrap_or_default()
    }

    /// Deals with `schedule`'s fire time `at`: the task, or a skip when the
    /// previous task is unfinished and the schedule says so.
    async fn fire(&self, schedule: &Schedule, at: DateTime<Utc>, now: DateTime<Utc>) {
        let previous = match schedule.last_task_id {
            Some(id) => self.ports.tasks.get_task(id).await.ok(),
            None => None,
        };
        let task = if schedule.lets_pass(at, now) {
            tracing::info!(schedule = %schedule.name, %at, "missed fire time let pass (catch_up: none)");
            None
        } else if schedule.skips_for(previous.as_ref(), now) {
            None
        } else {
            match self.fired_task(schedule, at, now) {
                Ok(task) => Some(task),
                // Not expected: a template holds no fixed time, so one valid
                // when written stays valid (`valid_template`).
                Err(err) => {
                    tracing::warn!(schedule = %schedule.name, error = %err, "the schedule's task is not valid; this fire skips");
                    None
                }
            }
        };
        let fire = Fire {
            schedule: schedule.name.clone(),
            expected_last_fire: schedule.last_fire_at,
            at,
            task,
        };
        match self.schedules.fire_schedule(fire).await {
            Ok(Some(task)) => self.ports.events.publish(DomainEvent::TaskCreated(task)).await,
            Ok(None) => {
                tracing::info!(schedule = %schedule.name, %at, "fire skipped: the previous task is unfinished")
            }
            Err(StoreError::Conflict(_) | StoreError::UnknownName { .. }) => {}
            Err(err) => {
                tracing::warn!(schedule = %schedule.name, error = %err, "fire failed; the next pass tries again")
            }
        }
    }

    fn fired_task(
        &self,
        schedule: &Schedule,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<FiredTask, ValidationError> {
        Ok(FiredTask {
            task: schedule.task_for(at)?,
            trace_id: uuid::Uuid::new_v4(),
            record: ChangeRecord {
                changed_by: schedule.created_by.clone(),
                reason: Some(format!(
                    "fired by schedule {} for {}",
                    schedule.name,
                    at.to_rfc3339()
                )),
                metadata: Some(serde_json::json!({ "schedule": schedule.name, "fire_at": at })),
            },
            created_at: now,
        })
    }
}
