//! `/workflows`: tasks submitted together, some waiting for others.

use std::collections::HashMap;

use actix_web::{middleware::from_fn, web};
use orchestrator_api::workflows::{
    WorkflowBody, WorkflowCreated, WorkflowList, WorkflowQuery, WorkflowReply, WorkflowSubmission,
    WorkflowTaskId, WorkflowTaskState,
};
use orchestrator_app::WorkflowView;
use orchestrator_domain::{TaskId, ValidationError, WorkflowDraft, WorkflowId, WorkflowTaskDraft};

use crate::auth::Authenticated;
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, not_found, resource};
use crate::startup::AppState;

/// Where every route of this module lives.
const SCOPE: &str = "/workflows";
/// How many `GET /workflows` lists unless told.
const DEFAULT_LISTED: u32 = 20;

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
            .service(resource(SCOPE, "/{workflow_id}").get(documented!(get)).build())
            .service(
                resource(SCOPE, "/{workflow_id}/cancel")
                    .post(documented!(cancel))
                    .build(),
            )
            .default_service(web::to(not_found)),
    );
}

/// The submission as the domain reads it, each task named by its place.
fn draft(submission: WorkflowSubmission) -> Result<WorkflowDraft, ValidationError> {
    let tasks = submission
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, task)| WorkflowTaskDraft::from_json(task, &format!("tasks[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(WorkflowDraft {
        name: submission.name,
        tasks,
    })
}

fn body(view: WorkflowView) -> WorkflowBody {
    let workflow = view.workflow;
    let keys: HashMap<TaskId, String> = workflow
        .members
        .iter()
        .map(|m| (m.task.id, m.key.clone()))
        .collect();
    let tasks = workflow
        .members
        .into_iter()
        .map(|m| WorkflowTaskState {
            depends_on: m
                .depends_on
                .iter()
                .map(|id| keys.get(id).cloned().unwrap_or_else(|| id.to_string()))
                .collect(),
            key: m.key,
            on_dependency_failure: m.on_dependency_failure,
            waiting: m.waiting,
            task: m.task,
        })
        .collect();
    WorkflowBody {
        id: workflow.id,
        name: workflow.name,
        created_by: workflow.created_by,
        created_at: workflow.created_at,
        state: view.state,
        tasks,
    }
}

/// Submits a workflow (`write`): its tasks in one commit, each with
/// `depends_on` waiting (pending, reason `waiting_for`) until those
/// completed, then routed with their results in `parent_results`. A
/// dependency that fails for good or is cancelled cancels its dependants,
/// or lets them run all the same with `on_dependency_failure: run_anyway`.
/// A cycle, an unknown key or more than 100 tasks is 422 naming the task.
#[utoipa::path(
    post,
    path = "/workflows",
    tag = "workflows",
    request_body = WorkflowSubmission,
    responses((status = 201, description = "Created, the tasks in dependency order", body = WorkflowCreated)),
)]
pub(crate) async fn create(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    Body(submission): Body<WorkflowSubmission>,
) -> Result<Udc<WorkflowCreated>, ApiError> {
    let draft = draft(submission).map_err(orchestrator_app::AppError::from)?;
    let view = app.workflows.create(&caller, draft).await?;
    Ok(Udc::created(WorkflowCreated {
        workflow_id: view.workflow.id,
        tasks: view
            .workflow
            .members
            .into_iter()
            .map(|m| WorkflowTaskId {
                key: m.key,
                task_id: m.task.id,
            })
            .collect(),
    }))
}

/// The newest workflows, newest first, each with its tasks' states.
#[utoipa::path(
    get,
    path = "/workflows",
    tag = "workflows",
    params(WorkflowQuery),
    responses((status = 200, description = "The workflows", body = WorkflowList)),
)]
pub(crate) async fn list(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    query: web::Query<WorkflowQuery>,
) -> Result<Udc<WorkflowList>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LISTED);
    if !(1..=orchestrator_app::workflows::MAX_LISTED).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be 1 to {}, got {limit}",
            orchestrator_app::workflows::MAX_LISTED
        )));
    }
    let workflows = app.workflows.list(&caller, limit).await?;
    Ok(Udc::ok(WorkflowList {
        workflows: workflows.into_iter().map(body).collect(),
    }))
}

/// One workflow: its state and each task's, in dependency order.
#[utoipa::path(
    get,
    path = "/workflows/{workflow_id}",
    tag = "workflows",
    params(("workflow_id" = i64, Path, description = "The workflow's id")),
    responses((status = 200, description = "The workflow", body = WorkflowReply)),
)]
pub(crate) async fn get(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<WorkflowId>,
) -> Result<Udc<WorkflowReply>, ApiError> {
    let view = app.workflows.get(&caller, id.into_inner()).await?;
    Ok(Udc::ok(WorkflowReply { workflow: body(view) }))
}

/// Cancels what has not finished of a workflow (its creator or an admin):
/// its waiting and queued tasks are cancelled, its running ones asked to
/// stop (as `POST /tasks/{id}/cancel-request`); finished ones stay.
#[utoipa::path(
    post,
    path = "/workflows/{workflow_id}/cancel",
    tag = "workflows",
    params(("workflow_id" = i64, Path, description = "The workflow's id")),
    responses((status = 200, description = "Cancelled; running tasks asked to stop", body = WorkflowReply)),
)]
pub(crate) async fn cancel(
    app: web::Data<AppState>,
    Authenticated(caller): Authenticated,
    id: web::Path<WorkflowId>,
) -> Result<Udc<WorkflowReply>, ApiError> {
    let view = app.workflows.cancel(&caller, id.into_inner()).await?;
    Ok(Udc::ok(WorkflowReply { workflow: body(view) }))
}
