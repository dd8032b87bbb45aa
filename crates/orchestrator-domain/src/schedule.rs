//! Cron schedules: a task template fired at the times of a cron expression
//! read in a time zone. The rules live here: what a valid schedule is,
//! its next fire times, which fire time is due at a moment (and so what is
//! caught up after a stop), and whether an unfinished previous task makes
//! a fire skip.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::error::bounded_text;
use crate::{NewTask, Task, TaskDraft, TaskId, ValidationError};

/// Longest schedule name; names are also path segments.
pub const MAX_SCHEDULE_NAME_CHARS: usize = 100;
/// How many of its next fire times an answer about a schedule lists.
pub const NEXT_RUNS: usize = 5;

/// What a fire does while the task of the previous fire is unfinished.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Creates no task for this fire time; the next fire tries again.
    Skip,
    /// Creates the task all the same.
    #[default]
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }
}

impl std::str::FromStr for Overlap {
    type Err = ValidationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "skip" => Ok(Overlap::Skip),
            "allow" => Ok(Overlap::Allow),
            other => Err(ValidationError::new(
                "overlap",
                format!("overlap must be skip or allow, got {other}"),
            )),
        }
    }
}

/// What a schedule does with fire times it missed (the orchestrator was
/// down): a fire time is missed when it is dealt with more than
/// [`MISSED_AFTER`] after it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// The last fire time missed fires, at once; the earlier ones do not.
    #[default]
    Last,
    /// No missed fire time fires; the next one on time does.
    None,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Last => "last",
            CatchUp::None => "none",
        }
    }
}

impl std::str::FromStr for CatchUp {
    type Err = ValidationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "last" => Ok(CatchUp::Last),
            "none" => Ok(CatchUp::None),
            other => Err(ValidationError::new(
                "catch_up",
                format!("catch_up must be last or none, got {other}"),
            )),
        }
    }
}

/// How late a fire time may be dealt with and still count as on time.
pub const MISSED_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A schedule as a client sends it (`POST /schedules`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDraft {
    /// Letters, digits, `-`, `_` and `.`, starting with a letter or a
    /// digit; it names the schedule in paths.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"))]
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first.
    pub cron: String,
    /// An IANA time zone, such as `Europe/Paris`; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The task each fire creates: the body of `POST /tasks` without a
    /// fixed time (no `run_at` nor `deadline`; `delay_seconds` delays each
    /// fire's task).
    pub task: TaskDraft,
    /// `allow` (the default) or `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// `last` (the default) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
}

/// A cron expression and the time zone it is read in, both valid.
#[derive(Debug, Clone)]
pub struct CronSpec {
    expression: String,
    timezone: Tz,
    cron: Cron,
}

impl PartialEq for CronSpec {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl CronSpec {
    /// Reads `expression` (5 fields, or 6 with seconds first) in
    /// `timezone` (UTC when `None`).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, ValidationError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|e| ValidationError::new("cron", format!("cron is not a valid expression: {e}")))?;
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ValidationError::new(
                    "timezone",
                    format!("timezone must be an IANA time zone such as Europe/Paris, got {name}"),
                )
            })?,
        };
        Ok(Self {
            expression: expression.trim().to_owned(),
            timezone,
            cron,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> &str {
        self.timezone.name()
    }

    /// The first fire time strictly after `after`, if any comes.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.timezone), false)
            .ok()
            .map(|at| at.with_timezone(&Utc))
    }

    /// The last fire time at or before `at`, if one ever was.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.timezone), true)
            .ok()
            .map(|at| at.with_timezone(&Utc))
    }

    /// The next `n` fire times after `after`.
    pub fn next_runs(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.cron
            .iter_after(after.with_timezone(&self.timezone))
            .take(n)
            .map(|at| at.with_timezone(&Utc))
            .collect()
    }
}

/// A valid schedule, as it is stored first.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    pub name: String,
    pub spec: CronSpec,
    pub template: TaskDraft,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
}

impl NewSchedule {
    /// Validates a draft: its name, expression and time zone, and its
    /// task as `POST /tasks` would at `now` (errors name `task.<field>`).
    pub fn parse(draft: ScheduleDraft, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        let name = schedule_name(&draft.name)?;
        let spec = CronSpec::parse(&draft.cron, draft.timezone.as_deref())?;
        let template = valid_template(draft.task, now)?;
        Ok(Self {
            name,
            spec,
            template,
            overlap: draft.overlap.unwrap_or_default(),
            catch_up: draft.catch_up.unwrap_or_default(),
        })
    }
}

/// A schedule's name: 1 to 100 letters, digits, `-`, `_` or `.`, the
/// first a letter or a digit (so that no name is a path's `.` or `..`).
pub fn schedule_name(name: &str) -> Result<String, ValidationError> {
    let name = bounded_text("name", name, MAX_SCHEDULE_NAME_CHARS)?;
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !starts_well
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ValidationError::new(
            "name",
            "name must start with a letter or a digit and hold only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(name)
}

/// A task template a schedule may fire: a valid `POST /tasks` body with no
/// fixed time, neither `run_at` (each fire has its own time) nor
/// `deadline` (it would pass, and every later fire would make an invalid
/// task); so a template valid now stays valid at every fire.
pub fn valid_template(template: TaskDraft, now: DateTime<Utc>) -> Result<TaskDraft, ValidationError> {
    if template.run_at.is_some() {
        return Err(ValidationError::new(
            "task.run_at",
            "a schedule's task takes no run_at: each fire runs at its own time (delay_seconds delays it)",
        ));
    }
    if template.deadline.is_some() {
        return Err(ValidationError::new(
            "task.deadline",
            "a schedule's task takes no fixed deadline: it would pass, and every later fire would fail",
        ));
    }
    NewTask::parse(template.clone(), now)
        .map_err(|e| ValidationError::new(format!("task.{}", e.field), e.message))?;
    Ok(template)
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub template: TaskDraft,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub paused: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last fire time dealt with (fired or skipped); fire times up to
    /// it are never fired again.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The task of the last fire that made one.
    pub last_task_id: Option<TaskId>,
    pub fires: u64,
    pub skips: u64,
}

impl Schedule {
    /// Its expression and time zone; both were valid when stored.
    pub fn spec(&self) -> Result<CronSpec, ValidationError> {
        CronSpec::parse(&self.cron, Some(&self.timezone))
    }

    /// The fire time due at `now`, if any: the last fire time at or before
    /// `now` that is after every fire time dealt with (and after the
    /// schedule was made or last changed). Only the last one: fire times
    /// missed while nothing ran are not fired one by one when the
    /// orchestrator comes back, the latest stands for them all.
    pub fn due(&self, spec: &CronSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.paused {
            return None;
        }
        let since = self.last_fire_at.unwrap_or(self.updated_at).max(self.updated_at);
        spec.last_at_or_before(now).filter(|at| *at > since)
    }

    /// When it fires next after `now`: `None` when paused or never again.
    pub fn next_fire_at(&self, spec: &CronSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.paused {
            return None;
        }
        let since = self.last_fire_at.map_or(now, |last| last.max(now));
        spec.next_after(since.max(self.updated_at))
    }

    /// Whether the fire time `at`, dealt with at `now`, was missed and is
    /// not caught up (`catch_up: none`): it is then dealt with as a skip.
    pub fn lets_pass(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.catch_up == CatchUp::None && now - at > MISSED_AFTER
    }

    /// Whether the fire at hand skips, given the task of the previous fire
    /// as it is now (`None` when there is none, or it is gone).
    pub fn skips_for(&self, previous: Option<&Task>, now: DateTime<Utc>) -> bool {
        self.overlap == Overlap::Skip && previous.is_some_and(|task| !task.is_finished(now))
    }

    /// The task a fire at `at` creates: the template, as submitted then.
    pub fn task_for(&self, at: DateTime<Utc>) -> Result<NewTask, ValidationError> {
        NewTask::parse(self.template.clone(), at)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::TaskStatus;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("a valid time")
    }

    fn draft(cron: &str, timezone: Option<&str>) -> ScheduleDraft {
        ScheduleDraft {
            name: "nightly-report".into(),
            cron: cron.into(),
            timezone: timezone.map(str::to_owned),
            task: TaskDraft {
                task_type: "report".into(),
                ..TaskDraft::default()
            },
            overlap: None,
            catch_up: None,
        }
    }

    fn schedule(cron: &str, timezone: &str, made_at: DateTime<Utc>) -> Schedule {
        Schedule {
            name: "s".into(),
            cron: cron.into(),
            timezone: timezone.into(),
            template: draft(cron, None).task,
            overlap: Overlap::Allow,
            catch_up: CatchUp::Last,
            paused: false,
            created_by: None,
            created_at: made_at,
            updated_at: made_at,
            last_fire_at: None,
            last_task_id: None,
            fires: 0,
            skips: 0,
        }
    }

    #[test]
    fn five_fields_or_six_with_seconds_first_are_read_in_their_time_zone() {
        let monday_nine = CronSpec::parse("0 9 * * 1", Some("Europe/Paris")).expect("valid");
        // Monday 30 March 2026, 09:00 in Paris (summer time, UTC+2).
        assert_eq!(
            monday_nine.next_after(utc(2026, 3, 28, 0, 0, 0)),
            Some(utc(2026, 3, 30, 7, 0, 0))
        );
        let every_ten_seconds = CronSpec::parse("*/10 * * * * *", None).expect("valid");
        assert_eq!(every_ten_seconds.timezone(), "UTC");
        assert_eq!(
            every_ten_seconds.next_runs(utc(2026, 1, 1, 0, 0, 5), NEXT_RUNS),
            [10, 20, 30, 40, 50].map(|s| utc(2026, 1, 1, 0, 0, s))
        );
    }

    #[test]
    fn a_time_the_clock_skips_fires_at_the_first_time_after_it() {
        // 02:30 does not exist in Paris on 29 March 2026 (02:00 becomes 03:00).
        let spec = CronSpec::parse("30 2 * * *", Some("Europe/Paris")).expect("valid");
        let runs = spec.next_runs(utc(2026, 3, 28, 0, 0, 0), 3);
        assert_eq!(runs[0], utc(2026, 3, 28, 1, 30, 0), "02:30 at UTC+1");
        assert_eq!(runs[2], utc(2026, 3, 30, 0, 30, 0), "02:30 at UTC+2");
        assert!(runs[1] > runs[0] && runs[1] < runs[2], "{runs:?}");
    }

    #[test]
    fn a_bad_schedule_is_refused_naming_the_field() {
        let now = utc(2026, 1, 1, 0, 0, 0);
        let refused = |draft: ScheduleDraft| NewSchedule::parse(draft, now).expect_err("refused").field;
        assert_eq!(refused(draft("61 * * * *", None)), "cron");
        assert_eq!(refused(draft("* * * *", None)), "cron");
        assert_eq!(refused(draft("0 0 0 * * * 2030", None)), "cron", "no year field");
        assert_eq!(refused(draft("0 9 * * *", Some("Mars/Olympus"))), "timezone");
        let named = |name: &str| ScheduleDraft {
            name: name.into(),
            ..draft("0 9 * * *", None)
        };
        assert_eq!(refused(named("a/b")), "name");
        assert_eq!(refused(named("..")), "name", "a path segment of its own");
        assert_eq!(refused(named("")), "name");
        let with_task = |task: TaskDraft| ScheduleDraft {
            task,
            ..draft("0 9 * * *", None)
        };
        let untyped = TaskDraft::default();
        assert_eq!(refused(with_task(untyped)), "task.task_type");
        let fixed = TaskDraft {
            task_type: "t".into(),
            run_at: Some(now),
            ..TaskDraft::default()
        };
        assert_eq!(refused(with_task(fixed)), "task.run_at");
        let due_once = TaskDraft {
            task_type: "t".into(),
            deadline: Some(utc(2026, 6, 1, 0, 0, 0)),
            ..TaskDraft::default()
        };
        assert_eq!(refused(with_task(due_once)), "task.deadline");
        let made = NewSchedule::parse(draft("0 9 * * *", Some("Asia/Tokyo")), now).expect("valid");
        assert_eq!(
            (made.spec.timezone(), made.overlap),
            ("Asia/Tokyo", Overlap::Allow)
        );
    }

    #[test]
    fn after_a_stop_only_the_last_fire_time_missed_is_due() {
        let made = utc(2026, 1, 1, 0, 0, 30);
        let mut every_minute = schedule("* * * * *", "UTC", made);
        let spec = every_minute.spec().expect("valid");
        assert_eq!(
            every_minute.due(&spec, utc(2026, 1, 1, 0, 0, 59)),
            None,
            "not yet"
        );
        // Down from 00:00:30 to 00:05:10: five minutes passed, one fire.
        assert_eq!(
            every_minute.due(&spec, utc(2026, 1, 1, 0, 5, 10)),
            Some(utc(2026, 1, 1, 0, 5, 0))
        );
        every_minute.last_fire_at = Some(utc(2026, 1, 1, 0, 5, 0));
        assert_eq!(
            every_minute.due(&spec, utc(2026, 1, 1, 0, 5, 59)),
            None,
            "dealt with"
        );
        assert_eq!(
            every_minute.next_fire_at(&spec, utc(2026, 1, 1, 0, 5, 10)),
            Some(utc(2026, 1, 1, 0, 6, 0))
        );
        every_minute.paused = true;
        assert_eq!(every_minute.due(&spec, utc(2026, 1, 1, 0, 9, 0)), None);
        assert_eq!(every_minute.next_fire_at(&spec, utc(2026, 1, 1, 0, 9, 0)), None);
        // Resumed at 00:09:30: what was missed while paused is not fired.
        every_minute.paused = false;
        every_minute.updated_at = utc(2026, 1, 1, 0, 9, 30);
        assert_eq!(every_minute.due(&spec, utc(2026, 1, 1, 0, 9, 40)), None);
        assert_eq!(
            every_minute.due(&spec, utc(2026, 1, 1, 0, 10, 0)),
            Some(utc(2026, 1, 1, 0, 10, 0))
        );
    }

    #[test]
    fn a_missed_fire_time_passes_only_when_told_not_to_catch_up() {
        let mut schedule = schedule("* * * * *", "UTC", at_min(0));
        assert!(!schedule.lets_pass(at_min(5), at_min(30)), "last: caught up");
        schedule.catch_up = CatchUp::None;
        assert!(schedule.lets_pass(at_min(5), at_min(30)), "missed");
        assert!(
            !schedule.lets_pass(at_min(5), at_min(6)),
            "a minute late is on time"
        );
    }

    fn at_min(minutes: u32) -> DateTime<Utc> {
        utc(2026, 1, 1, 0, minutes, 0)
    }

    #[test]
    fn a_fire_skips_only_when_asked_to_and_the_previous_task_is_unfinished() {
        let now = utc(2026, 1, 1, 0, 0, 0);
        let mut skipping = schedule("* * * * *", "UTC", now);
        let task = |status: TaskStatus| Task {
            status,
            ..NewTask::parse(skipping.template.clone(), now)
                .expect("valid")
                .into_task(1, uuid::Uuid::nil(), None, now)
        };
        assert!(
            !skipping.skips_for(Some(&task(TaskStatus::InProgress)), now),
            "allow"
        );
        skipping.overlap = Overlap::Skip;
        assert!(skipping.skips_for(Some(&task(TaskStatus::InProgress)), now));
        assert!(skipping.skips_for(Some(&task(TaskStatus::Pending)), now));
        assert!(!skipping.skips_for(Some(&task(TaskStatus::Completed)), now));
        assert!(!skipping.skips_for(None, now), "no previous task");
    }
}
