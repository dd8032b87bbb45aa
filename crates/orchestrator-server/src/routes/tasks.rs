//! `/tasks`: create, list, get with history, update status, cancel.

use actix_web::{CustomizeResponder, HttpRequest, Responder as _, middleware::from_fn, web};
use orchestrator_api::tasks::{Cancelled, TaskCreated};
use orchestrator_app::TaskView;
use orchestrator_app::tasks::{CreationRequest, PendingReason, StatusChange, TaskListing, cancelled_at};
use orchestrator_domain::{HistoryEntry, Priority, Task, TaskDraft, TaskId, TaskStatus, ValidationError};
use orchestrator_ports::TaskFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{not_found, resource};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/tasks")
            .wrap(from_fn(envelope_errors))
            .service(
                resource("", "GET, POST")
                    .route(web::post().to(create))
                    .route(web::get().to(list)),
            )
            .service(resource("/batch", "POST").route(web::post().to(create_batch)))
            .service(
                resource("/{task_id}", "GET, PATCH, DELETE")
                    .route(web::get().to(get))
                    .route(web::patch().to(update_status))
                    .route(web::delete().to(cancel)),
            )
            .service(resource("/{task_id}/cancel-request", "POST").route(web::post().to(request_cancel)))
            .service(resource("/{task_id}/retry", "POST").route(web::post().to(retry)))
            .default_service(web::to(not_found)),
    );
}

/// A task as the API shows it: every stored field, the name of its droplet
/// and, on `GET /tasks/{id}`, its history.
#[derive(Debug, Serialize, ToSchema)]
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

/// Submits a task; the router assigns it at once when a capable droplet
/// has room.
#[utoipa::path(
    post,
    path = "/tasks",
    tag = "tasks",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Makes the request happen once: the same caller and key within 24 hours get the first request's tasks again (marked `Idempotent-Replayed: true`) and create nothing; the same key with another body is 422 `idempotency_key_reused`")),
    request_body = TaskDraft,
    responses((status = 201, description = "Created", body = TaskCreated)),
)]
pub(crate) async fn create(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(draft): Body<TaskDraft>,
) -> Result<CustomizeResponder<Udc<TaskCreated>>, ApiError> {
    let Some(key) = idempotency_key(&req)? else {
        let task = app.tasks.create(&caller, draft).await?;
        return Ok(Udc::created(created_reply(&app, &task)).customize());
    };
    let creation = app
        .tasks
        .create_once(&caller, CreationRequest::Task, vec![draft], &key)
        .await?;
    let task = creation
        .tasks
        .first()
        .ok_or_else(|| ApiError::Internal("a creation under a key made no task".into()))?;
    Ok(replayed(
        Udc::created(created_reply(&app, task)),
        creation.replayed,
    ))
}

/// The request's `Idempotency-Key`, if it has one.
pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        ApiError::App(
            ValidationError::new(
                "Idempotency-Key",
                "must be visible ASCII characters, such as a UUID",
            )
            .into(),
        )
    })?;
    Ok(Some(key.to_owned()))
}

/// Marks the answer to a request repeated under its `Idempotency-Key`.
pub(crate) fn replayed<T: Serialize>(answer: Udc<T>, replayed: bool) -> CustomizeResponder<Udc<T>> {
    let answer = answer.customize();
    if replayed {
        answer.insert_header((IDEMPOTENT_REPLAYED, "true"))
    } else {
        answer
    }
}

/// The request header that makes a creation happen once.
pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set to `true` on the answer to a repeated request: nothing was created.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Tasks submitted together (`POST /tasks/batch`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskBatch {
    /// From 1 to 1,000 tasks, each as `POST /tasks` takes it.
    #[schema(min_items = 1, max_items = 1000)]
    tasks: Vec<TaskDraft>,
}

/// The tasks of a batch, created, in the order they were sent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchCreated {
    tasks: Vec<TaskCreated>,
}

/// Submits up to 1,000 tasks in one commit: every task is checked first,
/// and if any is invalid none is created (422 naming it by its index).
#[utoipa::path(
    post,
    path = "/tasks/batch",
    tag = "tasks",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Makes the request happen once: the same caller and key within 24 hours get the first request's tasks again (marked `Idempotent-Replayed: true`) and create nothing; the same key with another body is 422 `idempotency_key_reused`")),
    request_body = TaskBatch,
    responses((status = 201, description = "All created, in the order sent", body = BatchCreated)),
)]
pub(crate) async fn create_batch(
    req: HttpRequest,
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(batch): Body<TaskBatch>,
) -> Result<CustomizeResponder<Udc<BatchCreated>>, ApiError> {
    let (tasks, again) = match idempotency_key(&req)? {
        None => (app.tasks.create_batch(&caller, batch.tasks).await?, false),
        Some(key) => {
            let creation = app
                .tasks
                .create_once(&caller, CreationRequest::Batch, batch.tasks, &key)
                .await?;
            (creation.tasks, creation.replayed)
        }
    };
    let answer = Udc::created(BatchCreated {
        tasks: tasks.iter().map(|task| created_reply(&app, task)).collect(),
    });
    Ok(replayed(answer, again))
}

pub(crate) fn created_reply(app: &AppState, task: &Task) -> TaskCreated {
    TaskCreated {
        task_id: task.id,
        trace_id: task.trace_id,
        status: task.status,
        created_at: task.created_at,
        estimated_assignment_seconds: app.tasks.estimated_assignment_seconds(task),
    }
}

/// Query parameters of `GET /tasks`; numbers are checked by the use case.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    task_type: Option<String>,
    /// 1 (most urgent) to 10.
    #[param(minimum = 1, maximum = 10)]
    priority_min: Option<i64>,
    #[param(minimum = 1, maximum = 10)]
    priority_max: Option<i64>,
    assigned_droplet_id: Option<i64>,
    /// Tasks that require this capability.
    capability: Option<String>,
    /// Part of the title (any case), or a whole trace id.
    search: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0)]
    offset: Option<i64>,
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
            required_capability: self
                .capability
                .as_deref()
                .map(orchestrator_domain::Capability::new)
                .transpose()
                .map_err(app_err)?,
            search: self.search.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
            limit: self.limit.unwrap_or(orchestrator_app::tasks::DEFAULT_PAGE_SIZE),
            offset: u64::try_from(self.offset.unwrap_or(0)).map_err(|_| {
                ApiError::InvalidQuery("invalid query parameters: offset must be zero or more".into())
            })?,
        })
    }
}

/// One page of `GET /tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskPage {
    tasks: Vec<TaskBody>,
    /// Tasks that match the filter, on every page.
    total: u64,
    limit: u32,
    offset: u64,
    has_more: bool,
}

/// Lists tasks, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/tasks",
    tag = "tasks",
    params(ListQuery),
    responses((status = 200, description = "A page of tasks", body = TaskPage)),
)]
pub(crate) async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<ListQuery>,
) -> Result<Udc<TaskPage>, ApiError> {
    let listing: TaskListing = app.tasks.list(&caller, query.into_inner().into_filter()?).await?;
    let has_more = listing.has_more();
    let tasks: Vec<TaskBody> = listing
        .tasks
        .into_iter()
        .map(|v| TaskBody::new(v, None))
        .collect();
    Ok(Udc::ok(TaskPage {
        tasks,
        total: listing.total,
        limit: listing.limit,
        offset: listing.offset,
        has_more,
    }))
}

/// One task (`GET /tasks/{id}`, `PATCH`, `cancel-request`, `task_status`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskReply {
    task: TaskBody,
}

/// A task with its full history and, while it is pending, why it waits.
#[utoipa::path(
    get,
    path = "/tasks/{task_id}",
    tag = "tasks",
    params(("task_id" = i64, Path, description = "The task's id")),
    responses((status = 200, description = "The task, its state_history and routing", body = TaskReply)),
)]
pub(crate) async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
) -> Result<Udc<TaskReply>, ApiError> {
    let details = app.tasks.get(&caller, id.into_inner()).await?;
    Ok(Udc::ok(task_reply(details)))
}

/// A task with its history (`GET /tasks/{id}`, `task_status` query).
pub(crate) fn task_reply(details: orchestrator_app::TaskDetails) -> TaskReply {
    let mut body = TaskBody::new(details.view, Some(details.history));
    body.routing = details.routing;
    TaskReply { task: body }
}

/// A droplet's report on its task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusPatch {
    /// `in_progress`, then `completed` or `failed` (an admin may also move
    /// tasks as the state machine allows).
    status: TaskStatus,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_message: Option<String>,
    /// The assignment the report is about (the task's `attempt` when the
    /// droplet received it); a report about another is refused with 409
    /// `stale_attempt`.
    #[serde(default)]
    attempt: Option<u32>,
}

/// Moves a task along the state machine.
#[utoipa::path(
    patch,
    path = "/tasks/{task_id}",
    tag = "tasks",
    params(("task_id" = i64, Path, description = "The task's id")),
    request_body = StatusPatch,
    responses((status = 200, description = "The task after the move", body = TaskReply)),
)]
pub(crate) async fn update_status(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
    Body(patch): Body<StatusPatch>,
) -> Result<Udc<TaskReply>, ApiError> {
    let change = StatusChange {
        status: patch.status,
        result: patch.result,
        error_message: patch.error_message,
        attempt: patch.attempt,
    };
    let view = app.tasks.update_status(&caller, id.into_inner(), change).await?;
    Ok(Udc::ok(TaskReply {
        task: TaskBody::new(view, None),
    }))
}

/// Cancels a `pending` or `assigned` task. A running task answers 409: ask
/// its droplet to stop with `POST /tasks/{id}/cancel-request`.
#[utoipa::path(
    delete,
    path = "/tasks/{task_id}",
    tag = "tasks",
    params(("task_id" = i64, Path, description = "The task's id")),
    responses((status = 200, description = "Cancelled", body = Cancelled)),
)]
pub(crate) async fn cancel(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
) -> Result<Udc<Cancelled>, ApiError> {
    let task = app.tasks.cancel(&caller, id.into_inner()).await?;
    Ok(Udc::ok(cancelled_reply(&task)))
}

/// Asks the droplet running an `in_progress` task to stop it: recorded in
/// the task (`cancel_requested_at`) and its history, pushed to the droplet
/// as `task_cancel_requested` and sent on `/ws/tasks`. The droplet then
/// fails the task (never retried) or finishes it. Asking again changes
/// nothing.
#[utoipa::path(
    post,
    path = "/tasks/{task_id}/cancel-request",
    tag = "tasks",
    params(("task_id" = i64, Path, description = "The task's id")),
    responses((status = 200, description = "The task, with cancel_requested_at", body = TaskReply)),
)]
pub(crate) async fn request_cancel(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
) -> Result<Udc<TaskReply>, ApiError> {
    let view = app.tasks.request_cancel(&caller, id.into_inner()).await?;
    Ok(Udc::ok(TaskReply {
        task: TaskBody::new(view, None),
    }))
}

/// The body of `POST /tasks/{id}/retry`; it may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryRequest {
    /// Why, for the task's history (at most 500 characters).
    #[serde(default)]
    reason: Option<String>,
}

/// Gives a `failed` task that will not be retried automatically (its
/// retries spent, or stopped on request) one more attempt: back to
/// `pending` and routed at once. Its creator (`write`) or an admin may;
/// the history row names who and why. Any other status is 409.
#[utoipa::path(
    post,
    path = "/tasks/{task_id}/retry",
    tag = "tasks",
    params(("task_id" = i64, Path, description = "The task's id")),
    request_body(content = RetryRequest, description = "Optional; an empty body is allowed"),
    responses((status = 200, description = "The task, pending again", body = TaskReply)),
)]
pub(crate) async fn retry(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
    Body(request): Body<RetryRequest>,
) -> Result<Udc<TaskReply>, ApiError> {
    let view = app.tasks.retry(&caller, id.into_inner(), request.reason).await?;
    Ok(Udc::ok(TaskReply {
        task: TaskBody::new(view, None),
    }))
}

pub(crate) fn cancelled_reply(task: &Task) -> Cancelled {
    Cancelled {
        task_id: task.id,
        status: task.status,
        cancelled_at: cancelled_at(task),
    }
}
