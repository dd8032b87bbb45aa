//! `/tasks`: create, list, get with history, update status, cancel.

use actix_web::{middleware::from_fn, web};
use chrono::{DateTime, Utc};
use orchestrator_app::TaskView;
use orchestrator_app::tasks::{PendingReason, StatusChange, TaskListing, cancelled_at};
use orchestrator_domain::{HistoryEntry, Priority, Task, TaskDraft, TaskId, TaskStatus};
use orchestrator_ports::TaskFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{method_not_allowed, not_found};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/tasks")
            .wrap(from_fn(envelope_errors))
            .service(
                web::resource("")
                    .route(web::post().to(create))
                    .route(web::get().to(list))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/{task_id}")
                    .route(web::get().to(get))
                    .route(web::patch().to(update_status))
                    .route(web::delete().to(cancel))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/{task_id}/cancel-request")
                    .route(web::post().to(request_cancel))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found)),
    );
}

/// A task as the API shows it: every stored field, the name of its droplet
/// and, on `GET /tasks/{id}`, its history.
#[derive(Debug, Serialize)]
pub struct TaskBody {
    #[serde(flatten)]
    task: Task,
    assigned_droplet_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_history: Option<Vec<HistoryEntry>>,
    /// On `GET /tasks/{id}` of a pending task: why it is not assigned yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<PendingReason>,
}

impl TaskBody {
    fn new(view: TaskView, history: Option<Vec<HistoryEntry>>) -> Self {
        TaskBody {
            task: view.task,
            assigned_droplet_name: view.assigned_droplet_name,
            state_history: history,
            routing: None,
        }
    }
}

async fn create(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(draft): Body<TaskDraft>,
) -> Result<Udc<Value>, ApiError> {
    let task = app.tasks.create(&caller, draft).await?;
    Ok(Udc::created(created_reply(&task)))
}

/// The answer to a task's creation (`POST /tasks`, `create_task` message).
pub(crate) fn created_reply(task: &Task) -> Value {
    json!({
        "task_id": task.id,
        "trace_id": task.trace_id,
        "status": task.status,
        "created_at": task.created_at,
        // Routing is event-driven: a task is assigned as soon as a capable
        // droplet has a free slot, not on the next sweep.
        "estimated_assignment_seconds": 0,
    })
}

/// Query parameters of `GET /tasks`; numbers are checked by the use case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    task_type: Option<String>,
    priority_min: Option<i64>,
    priority_max: Option<i64>,
    assigned_droplet_id: Option<i64>,
    limit: Option<u32>,
    offset: Option<u64>,
}

impl ListQuery {
    fn into_filter(self) -> Result<TaskFilter, ApiError> {
        let priority = |p: Option<i64>, field: &str| {
            p.map(|v| {
                Priority::new(v).map_err(|e| orchestrator_domain::ValidationError::new(field, e.message))
            })
            .transpose()
        };
        let app_err = |e: orchestrator_domain::ValidationError| ApiError::App(e.into());
        Ok(TaskFilter {
            status: self
                .status
                .as_deref()
                .map(str::parse::<TaskStatus>)
                .transpose()
                .map_err(app_err)?,
            task_type: self.task_type,
            priority_min: priority(self.priority_min, "priority_min").map_err(app_err)?,
            priority_max: priority(self.priority_max, "priority_max").map_err(app_err)?,
            assigned_droplet_id: self.assigned_droplet_id,
            limit: self.limit.unwrap_or(orchestrator_app::tasks::DEFAULT_PAGE_SIZE),
            offset: self.offset.unwrap_or(0),
        })
    }
}

async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<ListQuery>,
) -> Result<Udc<Value>, ApiError> {
    let listing: TaskListing = app.tasks.list(&caller, query.into_inner().into_filter()?).await?;
    let has_more = listing.has_more();
    let tasks: Vec<TaskBody> = listing
        .tasks
        .into_iter()
        .map(|v| TaskBody::new(v, None))
        .collect();
    Ok(Udc::ok(json!({
        "tasks": tasks,
        "total": listing.total,
        "limit": listing.limit,
        "offset": listing.offset,
        "has_more": has_more,
    })))
}

async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
) -> Result<Udc<Value>, ApiError> {
    let details = app.tasks.get(&caller, id.into_inner()).await?;
    Ok(Udc::ok(task_reply(details)))
}

/// A task with its history (`GET /tasks/{id}`, `task_status` query).
pub(crate) fn task_reply(details: orchestrator_app::TaskDetails) -> Value {
    let mut body = TaskBody::new(details.view, Some(details.history));
    body.routing = details.routing;
    json!({ "task": body })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusPatch {
    status: TaskStatus,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_message: Option<String>,
    /// The assignment the report is about (the task's `attempt` when the
    /// droplet received it).
    #[serde(default)]
    attempt: Option<u32>,
}

async fn update_status(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
    Body(patch): Body<StatusPatch>,
) -> Result<Udc<Value>, ApiError> {
    let change = StatusChange {
        status: patch.status,
        result: patch.result,
        error_message: patch.error_message,
        attempt: patch.attempt,
    };
    let view = app.tasks.update_status(&caller, id.into_inner(), change).await?;
    Ok(Udc::ok(json!({ "task": TaskBody::new(view, None) })))
}

#[derive(Debug, Serialize)]
pub(crate) struct Cancelled {
    task_id: TaskId,
    status: TaskStatus,
    cancelled_at: Option<DateTime<Utc>>,
}

async fn cancel(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
) -> Result<Udc<Cancelled>, ApiError> {
    let task = app.tasks.cancel(&caller, id.into_inner()).await?;
    Ok(Udc::ok(cancelled_reply(&task)))
}

/// Asks the droplet running the task to stop it; answers with the task,
/// whose `cancel_requested_at` is set.
async fn request_cancel(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
) -> Result<Udc<Value>, ApiError> {
    let view = app.tasks.request_cancel(&caller, id.into_inner()).await?;
    Ok(Udc::ok(json!({ "task": TaskBody::new(view, None) })))
}

/// The answer to a cancel (`DELETE /tasks/{id}`, `cancel_task` message).
pub(crate) fn cancelled_reply(task: &Task) -> Cancelled {
    Cancelled {
        task_id: task.id,
        status: task.status,
        cancelled_at: cancelled_at(task),
    }
}
