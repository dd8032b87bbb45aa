//! `/tasks`: create, list, get with history, update status, cancel.

use actix_web::{CustomizeResponder, HttpRequest, Responder as _, middleware::from_fn, web};
use orchestrator_api::tasks::{
    BatchCreated, Cancelled, PendingReason, ProgressReport, RetryRequest, StatusPatch, TaskBatch, TaskBody,
    TaskCreated, TaskPage, TaskQuery, TaskReply, page_cursor as api_page_cursor, read_page_cursor,
};
use orchestrator_app::TaskView;
use orchestrator_app::tasks::{self as use_case, CreationRequest, StatusChange, TaskListing, cancelled_at};
use orchestrator_domain::{
    Caller, HistoryEntry, Priority, Task, TaskDraft, TaskId, TaskStatus, ValidationError,
};
use orchestrator_ports::{PageCursor, TaskFilter, TaskKey};
use serde::Serialize;

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// Where every route of this module lives.
const SCOPE: &str = "/tasks";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(SCOPE)
            .wrap(from_fn(envelope_errors))
            .service(
                resource(SCOPE, "")
                    .post(documented!(create))
                    .get(documented!(list))
                    .build(),
            )
            .service(resource(SCOPE, "/batch").post(documented!(create_batch)).build())
            .service(
                resource(SCOPE, "/{task_id}")
                    .get(documented!(get))
                    .patch(documented!(update_status))
                    .delete(documented!(cancel))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{task_id}/cancel-request")
                    .post(documented!(request_cancel))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{task_id}/retry")
                    .post(documented!(retry))
                    .build(),
            )
            .service(
                resource(SCOPE, "/{task_id}/progress")
                    .post(documented!(report_progress))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

fn task_body(view: TaskView, history: Option<Vec<HistoryEntry>>) -> TaskBody {
    TaskBody {
        task: view.task,
        assigned_droplet_name: view.assigned_droplet_name,
        state_history: history,
        routing: None,
    }
}

/// A task after a change: its fields, without its history.
fn changed_task_reply(view: TaskView) -> TaskReply {
    TaskReply {
        task: task_body(view, None),
    }
}

/// Why a task waits, as the API shows it.
fn pending_reason(reason: use_case::PendingReason) -> PendingReason {
    match reason {
        use_case::PendingReason::Scheduled { at } => PendingReason::Scheduled { at },
        use_case::PendingReason::RetryBackoff { until } => PendingReason::RetryBackoff { until },
        use_case::PendingReason::RouterPaused => PendingReason::RouterPaused,
        use_case::PendingReason::NoActiveDropletWithCapability { capability } => {
            PendingReason::NoActiveDropletWithCapability { capability }
        }
        use_case::PendingReason::AllCapableDropletsFull { capability, droplets } => {
            PendingReason::AllCapableDropletsFull { capability, droplets }
        }
        use_case::PendingReason::Routable => PendingReason::Routable,
        use_case::PendingReason::WaitingFor {
            workflow_id,
            task_ids,
        } => PendingReason::WaitingFor {
            workflow_id,
            task_ids,
        },
        use_case::PendingReason::ConcurrencyLimited {
            key,
            running,
            max_running,
        } => PendingReason::ConcurrencyLimited {
            key,
            running,
            max_running,
        },
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
    let key = idempotency_key(&req)?;
    let (task, again) = create_one(&app, &caller, CreationRequest::Task, draft, key.as_deref()).await?;
    Ok(replayed(Udc::created(created_reply(&app, &task)), again))
}

/// Creates one task, once per `key` when the request has one; true when
/// the key had made it already (nothing new was created).
pub(crate) async fn create_one(
    app: &AppState,
    caller: &Caller,
    request: CreationRequest,
    draft: TaskDraft,
    key: Option<&str>,
) -> Result<(Task, bool), ApiError> {
    let Some(key) = key else {
        return Ok((app.tasks.create(caller, draft).await?, false));
    };
    let creation = app.tasks.create_once(caller, request, vec![draft], key).await?;
    let task = creation
        .tasks
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("a creation under a key made no task".into()))?;
    Ok((task, creation.replayed))
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
        run_at: task.run_at,
    }
}

/// Reads the query of `GET /tasks`; numbers are checked by the use case.
fn task_filter(query: TaskQuery) -> Result<TaskFilter, ApiError> {
    let priority = |p: Option<i64>, field: &str| {
        p.map(|v| Priority::new(v).map_err(|e| ValidationError::new(field, e.message)))
            .transpose()
    };
    let app_err = |e: ValidationError| ApiError::App(e.into());
    Ok(TaskFilter {
        status: query
            .status
            .as_deref()
            .map(str::parse::<TaskStatus>)
            .transpose()
            .map_err(app_err)?,
        task_type: query.task_type,
        priority_min: priority(query.priority_min, "priority_min").map_err(app_err)?,
        priority_max: priority(query.priority_max, "priority_max").map_err(app_err)?,
        assigned_droplet_id: query.assigned_droplet_id,
        required_capability: query
            .capability
            .as_deref()
            .map(orchestrator_domain::Capability::new)
            .transpose()
            .map_err(app_err)?,
        search: query
            .search
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        limit: query.limit.unwrap_or(use_case::DEFAULT_PAGE_SIZE),
        offset: u64::try_from(query.offset.unwrap_or(0)).map_err(|_| {
            ApiError::InvalidQuery("invalid query parameters: offset must be zero or more".into())
        })?,
        cursor: page_cursor(query.after.as_deref(), query.before.as_deref()).map_err(app_err)?,
    })
}

/// The page a query's `after` or `before` names (not both).
fn page_cursor(after: Option<&str>, before: Option<&str>) -> Result<Option<PageCursor>, ValidationError> {
    let key = |field: &str, cursor: &str| {
        read_page_cursor(cursor)
            .map(|(created_at, id)| TaskKey { created_at, id })
            .ok_or_else(|| {
                ValidationError::new(
                    field,
                    format!("{field} must be a page's next_cursor or previous_cursor, got {cursor:?}"),
                )
            })
    };
    match (after, before) {
        (Some(_), Some(_)) => Err(ValidationError::new(
            "after",
            "after and before cannot be combined: a page starts after one task or ends before one",
        )),
        (Some(cursor), None) => Ok(Some(PageCursor::After(key("after", cursor)?))),
        (None, Some(cursor)) => Ok(Some(PageCursor::Before(key("before", cursor)?))),
        (None, None) => Ok(None),
    }
}

/// Lists tasks, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/tasks",
    tag = "tasks",
    params(TaskQuery),
    responses((status = 200, description = "A page of tasks", body = TaskPage)),
)]
pub(crate) async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<TaskQuery>,
) -> Result<Udc<TaskPage>, ApiError> {
    let listing: TaskListing = app.tasks.list(&caller, task_filter(query.into_inner())?).await?;
    let has_more = listing.has_more();
    let cursor = |key: Option<TaskKey>| key.map(|k| api_page_cursor(k.created_at, k.id));
    let (next_cursor, previous_cursor) = (cursor(listing.next()), cursor(listing.previous()));
    let tasks: Vec<TaskBody> = listing.tasks.into_iter().map(|v| task_body(v, None)).collect();
    Ok(Udc::ok(TaskPage {
        tasks,
        total: listing.total,
        limit: listing.limit,
        offset: listing.offset,
        has_more,
        next_cursor,
        previous_cursor,
    }))
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
    let mut body = task_body(details.view, Some(details.history));
    body.routing = details.routing.map(pending_reason);
    TaskReply { task: body }
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
    Ok(Udc::ok(changed_task_reply(view)))
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
    Ok(Udc::ok(changed_task_reply(view)))
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
    Ok(Udc::ok(changed_task_reply(view)))
}

/// The droplet running an `in_progress` task reports how far it is
/// (`progress` 0-100, `message`) on its current `attempt`. Kept on the task
/// (no history row), sent on `/ws/tasks` as `task_progress`, and it
/// restarts the clock of the run's timeout (`timeout_seconds`, else
/// `TASK_RUN_TIMEOUT`). Only the task's holder may report; another attempt
/// is 409 `stale_attempt`, a task not running is 409 `invalid_transition`.
#[utoipa::path(
    post,
    path = "/tasks/{task_id}/progress",
    tag = "tasks",
    params(("task_id" = i64, Path, description = "The task's id")),
    request_body = ProgressReport,
    responses((status = 200, description = "The task, with its progress", body = TaskReply)),
)]
pub(crate) async fn report_progress(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<TaskId>,
    Body(report): Body<ProgressReport>,
) -> Result<Udc<TaskReply>, ApiError> {
    let view = app
        .tasks
        .report_progress(
            &caller,
            id.into_inner(),
            report.attempt,
            report.progress,
            report.message,
        )
        .await?;
    Ok(Udc::ok(changed_task_reply(view)))
}

pub(crate) fn cancelled_reply(task: &Task) -> Cancelled {
    Cancelled {
        task_id: task.id,
        status: task.status,
        cancelled_at: cancelled_at(task),
    }
}
