//! Rows as stored, and their conversion to and from domain types. The
//! schema stores times as `TIMESTAMP` (no zone): they are UTC throughout.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types as sql;
use orchestrator_domain::{
    Capability, Droplet, DropletId, DropletStatus, HistoryEntry, Priority, Progress, Task, TaskStatus,
};
use orchestrator_ports::{StoreError, StoreResult};
use serde_json::Value;
use uuid::Uuid;

use crate::schema::{droplets, task_state_history};
use crate::views::task_view;

pub(crate) fn utc(time: NaiveDateTime) -> DateTime<Utc> {
    time.and_utc()
}

pub(crate) fn naive(time: DateTime<Utc>) -> NaiveDateTime {
    time.naive_utc()
}

/// A row that breaks the domain's rules can only come from outside the
/// orchestrator; it is reported, not served.
fn corrupt(what: &str, id: i64) -> StoreError {
    StoreError::Unavailable(format!("{what} {id} holds data the orchestrator cannot read"))
}

#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = task_view, check_for_backend(diesel::pg::Pg))]
pub(crate) struct TaskRow {
    pub id: i64,
    pub trace_id: Uuid,
    pub task_type: String,
    pub title: String,
    pub description: Option<String>,
    pub payload: Value,
    pub required_capability: Option<String>,
    pub status: String,
    pub priority: Option<i32>,
    pub created_at: Option<NaiveDateTime>,
    pub assigned_at: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub deadline: Option<NaiveDateTime>,
    pub result: Option<Value>,
    pub error_message: Option<String>,
    pub retry_count: Option<i32>,
    pub max_retries: Option<i32>,
    pub created_by: Option<String>,
    pub updated_at: Option<NaiveDateTime>,
    pub retry_after: Option<NaiveDateTime>,
    pub attempt: i32,
    pub cancel_requested_at: Option<NaiveDateTime>,
    pub timeout_seconds: Option<i32>,
    pub progress: Option<i16>,
    pub progress_message: Option<String>,
    pub progress_at: Option<NaiveDateTime>,
    pub requeues: i32,
    pub run_at: Option<NaiveDateTime>,
    pub concurrency_key: Option<String>,
}

impl TaskRow {
    /// The domain task; `droplet` is the external id of its droplet, if any.
    pub fn into_task(self, droplet: Option<i32>) -> StoreResult<Task> {
        let id = self.id;
        let created_at = self.created_at.map(utc).ok_or_else(|| corrupt("task", id))?;
        Ok(Task {
            id,
            trace_id: self.trace_id,
            task_type: self.task_type,
            title: self.title,
            description: self.description,
            payload: self.payload,
            required_capability: self
                .required_capability
                .map(|c| Capability::new(&c))
                .transpose()
                .map_err(|_| corrupt("task", id))?,
            assigned_droplet_id: droplet.map(DropletId::from),
            status: self.status.parse().map_err(|_| corrupt("task", id))?,
            priority: Priority::new(i64::from(self.priority.unwrap_or(5)))
                .map_err(|_| corrupt("task", id))?,
            created_at,
            assigned_at: self.assigned_at.map(utc),
            started_at: self.started_at.map(utc),
            completed_at: self.completed_at.map(utc),
            deadline: self.deadline.map(utc),
            result: self.result,
            error_message: self.error_message,
            retry_count: count(self.retry_count, 0),
            max_retries: count(self.max_retries, 3),
            created_by: self.created_by,
            updated_at: self.updated_at.map_or(created_at, utc),
            retry_after: self.retry_after.map(utc),
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            cancel_requested_at: self.cancel_requested_at.map(utc),
            timeout_seconds: self.timeout_seconds.and_then(|t| u32::try_from(t).ok()),
            run_at: self.run_at.map(utc),
            progress: self.progress_at.map(|at| Progress {
                percent: self.progress.and_then(|p| u8::try_from(p).ok()),
                message: self.progress_message,
                at: utc(at),
            }),
            requeues: u32::try_from(self.requeues).unwrap_or(0),
            concurrency_key: self.concurrency_key,
        })
    }
}

/// The [`LIVE_COLUMNS`](crate::sql::tasks::LIVE_COLUMNS) of a task as a
/// transition wrote them, with its id.
#[derive(Debug, QueryableByName)]
pub(crate) struct LiveRow {
    #[diesel(sql_type = sql::BigInt)]
    pub id: i64,
    #[diesel(sql_type = sql::Text)]
    status: String,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    assigned_at: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    started_at: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    completed_at: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Nullable<sql::Jsonb>)]
    result: Option<Value>,
    #[diesel(sql_type = sql::Nullable<sql::Text>)]
    error_message: Option<String>,
    #[diesel(sql_type = sql::Nullable<sql::Integer>)]
    retry_count: Option<i32>,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    updated_at: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    retry_after: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Integer)]
    attempt: i32,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    cancel_requested_at: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Nullable<sql::SmallInt>)]
    progress: Option<i16>,
    #[diesel(sql_type = sql::Nullable<sql::Text>)]
    progress_message: Option<String>,
    #[diesel(sql_type = sql::Nullable<sql::Timestamp>)]
    progress_at: Option<NaiveDateTime>,
    #[diesel(sql_type = sql::Integer)]
    requeues: i32,
}

impl LiveRow {
    /// `task` with these columns as written; the others never change after
    /// the task is created. `droplet` is the external id of its droplet.
    pub fn over(self, mut task: Task, droplet: Option<i32>) -> StoreResult<Task> {
        let id = self.id;
        task.assigned_droplet_id = droplet.map(DropletId::from);
        task.status = self.status.parse().map_err(|_| corrupt("task", id))?;
        task.assigned_at = self.assigned_at.map(utc);
        task.started_at = self.started_at.map(utc);
        task.completed_at = self.completed_at.map(utc);
        task.result = self.result;
        task.error_message = self.error_message;
        task.retry_count = count(self.retry_count, 0);
        task.updated_at = self.updated_at.map_or(task.created_at, utc);
        task.retry_after = self.retry_after.map(utc);
        task.attempt = u32::try_from(self.attempt).unwrap_or(0);
        task.cancel_requested_at = self.cancel_requested_at.map(utc);
        task.progress = self.progress_at.map(|at| Progress {
            percent: self.progress.and_then(|p| u8::try_from(p).ok()),
            message: self.progress_message,
            at: utc(at),
        });
        task.requeues = u32::try_from(self.requeues).unwrap_or(0);
        Ok(task)
    }
}

fn count(value: Option<i32>, default: u32) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(default)
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = task_state_history, check_for_backend(diesel::pg::Pg))]
pub(crate) struct HistoryRow {
    pub id: i64,
    pub task_id: i64,
    pub from_status: Option<String>,
    pub to_status: String,
    pub changed_by: Option<String>,
    pub reason: Option<String>,
    pub metadata: Option<Value>,
    pub changed_at: Option<NaiveDateTime>,
}

impl HistoryRow {
    pub fn into_entry(self) -> StoreResult<HistoryEntry> {
        let id = self.id;
        let status = |s: &str| s.parse::<TaskStatus>().map_err(|_| corrupt("history row", id));
        Ok(HistoryEntry {
            id,
            task_id: self.task_id,
            from_status: self.from_status.as_deref().map(status).transpose()?,
            to_status: status(&self.to_status)?,
            changed_by: self.changed_by,
            reason: self.reason,
            metadata: self.metadata,
            changed_at: self
                .changed_at
                .map(utc)
                .ok_or_else(|| corrupt("history row", id))?,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = task_state_history)]
pub(crate) struct NewHistoryRow {
    pub task_id: i64,
    pub from_status: Option<String>,
    pub to_status: String,
    pub changed_by: Option<String>,
    pub reason: Option<String>,
    pub metadata: Option<Value>,
    pub changed_at: Option<NaiveDateTime>,
}

#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = droplets, check_for_backend(diesel::pg::Pg))]
pub(crate) struct DropletRow {
    pub id: i64,
    pub droplet_id: i32,
    pub name: String,
    pub steward: Option<String>,
    pub endpoint: String,
    pub capabilities: Option<Value>,
    pub status: String,
    pub last_heartbeat: Option<NaiveDateTime>,
    pub registered_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
    pub max_concurrent_tasks: i32,
    pub manually_deactivated: bool,
    pub last_assigned_at: Option<NaiveDateTime>,
    pub service_id: Option<i64>,
    pub session_started_at: Option<NaiveDateTime>,
}

impl DropletRow {
    pub fn into_droplet(self) -> StoreResult<Droplet> {
        let id = self.id;
        let capabilities: Vec<Capability> = match self.capabilities {
            None => Vec::new(),
            Some(value) => serde_json::from_value(value).map_err(|_| corrupt("droplet", id))?,
        };
        let registered_at = self
            .registered_at
            .map(utc)
            .ok_or_else(|| corrupt("droplet", id))?;
        Ok(Droplet {
            droplet_id: DropletId::from(self.droplet_id),
            name: self.name,
            steward: self.steward,
            endpoint: self.endpoint,
            capabilities,
            status: self
                .status
                .parse::<DropletStatus>()
                .map_err(|_| corrupt("droplet", id))?,
            max_concurrent_tasks: u32::try_from(self.max_concurrent_tasks)
                .map_err(|_| corrupt("droplet", id))?,
            manually_deactivated: self.manually_deactivated,
            last_heartbeat: self.last_heartbeat.map(utc),
            last_assigned_at: self.last_assigned_at.map(utc),
            registered_at,
            updated_at: self.updated_at.map_or(registered_at, utc),
            service_id: self.service_id,
            session_started_at: self.session_started_at.map(utc),
        })
    }
}

/// A row of the recovery query: the task, its droplet's external id and the reason.
#[derive(Debug, QueryableByName)]
pub(crate) struct RecoveryRow {
    #[diesel(embed)]
    pub task: TaskRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub external_droplet_id: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub reason: String,
}

/// A task with its droplet's external id, as a raw statement returns it.
#[derive(Debug, QueryableByName)]
pub(crate) struct TaskWithDropletRow {
    #[diesel(embed)]
    pub task: TaskRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub external_droplet_id: Option<i32>,
}
