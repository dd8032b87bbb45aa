//! The built-in dashboard at `/ui` (`ENABLE_DASHBOARD`): server-rendered
//! pages over the same use cases as the API, with the caller's own
//! permissions. A read token sees everything and changes nothing: its pages
//! have no actions, and the server refuses them (403) whatever is posted.

mod assets;
mod live;
mod session;
mod views;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use maud::Markup;
use orchestrator_app::TimeRange;
use orchestrator_domain::{Capability, Priority, TaskStatus};
use orchestrator_ports::TaskFilter;
use serde::Deserialize;

use self::session::Viewer;
use self::views::{TaskAction, TaskQuery};
use crate::error::ApiError;
use crate::startup::AppState;

/// What every dashboard response carries: scripts and styles from this
/// server only (no inline ones), live updates from this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Tasks on one page of the list.
const PAGE_SIZE: u32 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/ui")
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                    // With `no-referrer` (the API's), browsers send `Origin: null`
                    // on a form: the origin check needs the real one.
                    .add((header::REFERRER_POLICY, "same-origin")),
            )
            .route("", web::get().to(overview))
            .route("/", web::get().to(overview))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/assets/{name}", web::get().to(assets::serve))
            .route("/live/tasks", web::get().to(live::tasks))
            .route("/tasks", web::get().to(tasks))
            .route("/tasks/{id}", web::get().to(task))
            .route("/tasks/{id}/{action}", web::get().to(confirm))
            .route("/tasks/{id}/{action}", web::post().to(act_on_task))
            .route("/droplets", web::get().to(droplets))
            .route("/droplets/{id}/{action}", web::post().to(act_on_droplet))
            .route("/schedules", web::get().to(schedules))
            .route("/schedules/{name}/{action}", web::post().to(act_on_schedule))
            .route("/workflows", web::get().to(workflows))
            .route("/workflows/{id}", web::get().to(workflow))
            .route("/workflows/{id}/cancel", web::post().to(cancel_workflow))
            .route("/jobs", web::get().to(jobs))
            .route("/jobs/{id}/{action}", web::post().to(act_on_job)),
    );
}

fn page(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(views::into_body(markup))
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .finish()
}

/// A failure as a page, with the status the API would answer.
fn error_page(viewer: Option<&Viewer>, err: &ApiError) -> HttpResponse {
    let status = err.status_code();
    page(status, views::error(viewer, status.as_u16(), &err.to_string()))
}

/// Runs `render` for a signed-in viewer, a failure shown as a page; sends
/// anyone else to sign in.
async fn signed_in(
    req: &HttpRequest,
    render: impl AsyncFnOnce(&Viewer) -> Result<HttpResponse, ApiError>,
) -> HttpResponse {
    let Some(viewer) = session::viewer(req).await else {
        return session::to_sign_in();
    };
    render(&viewer)
        .await
        .unwrap_or_else(|err| error_page(Some(&viewer), &err))
}

/// As [`signed_in`], for a form: also refused when sent from another site.
async fn form_of_signed_in(
    req: &HttpRequest,
    act: impl AsyncFnOnce(&Viewer) -> Result<HttpResponse, ApiError>,
) -> HttpResponse {
    if let Err(err) = session::same_origin(req) {
        return error_page(session::viewer(req).await.as_ref(), &err);
    }
    signed_in(req, act).await
}

async fn login_page(req: HttpRequest) -> HttpResponse {
    if session::viewer(&req).await.is_some() {
        return see_other("/ui");
    }
    page(StatusCode::OK, views::login(None))
}

#[derive(Debug, Deserialize)]
struct SignIn {
    token: String,
}

async fn login(req: HttpRequest, form: web::Form<SignIn>) -> HttpResponse {
    if let Err(err) = session::same_origin(&req) {
        return error_page(None, &err);
    }
    match session::sign_in(&req, &form.token).await {
        Ok(cookie) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/ui"))
            .cookie(cookie)
            .finish(),
        Err(err) => page(
            StatusCode::UNAUTHORIZED,
            views::login(Some(&format!("That token was not accepted: {err}"))),
        ),
    }
}

async fn logout(req: HttpRequest) -> HttpResponse {
    if let Err(err) = session::same_origin(&req) {
        return error_page(None, &err);
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui/login"))
        .cookie(session::sign_out())
        .finish()
}

async fn overview(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let caller = &viewer.caller;
        let summary = app.metrics.summary(caller, TimeRange::Hour).await?;
        let series = app.metrics.last_hour(caller, 12).await?;
        let rescues = app.metrics.rescues(caller, TimeRange::Day).await?;
        let data = views::Overview {
            summary: &summary,
            series: &series,
            rescues: &rescues,
        };
        Ok(page_of(views::overview(viewer, &data)))
    })
    .await
}

/// The store's filter for the list's query; a bad value is a 422 page.
fn task_filter(query: &TaskQuery) -> Result<(TaskFilter, u64), ApiError> {
    let invalid = |field: &str, message: String| {
        ApiError::App(orchestrator_domain::ValidationError::new(field, message).into())
    };
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let status = text(&query.status)
        .map(|s| s.parse::<TaskStatus>())
        .transpose()
        .map_err(|e| ApiError::App(e.into()))?;
    let droplet = text(&query.droplet)
        .map(|d| d.parse::<i64>())
        .transpose()
        .map_err(|_| invalid("droplet", "a droplet id is a number".into()))?;
    let capability = text(&query.capability)
        .map(|c| Capability::new(&c))
        .transpose()
        .map_err(|e| ApiError::App(e.into()))?;
    let (min, max) = views::priority_band(query.priority.as_deref());
    let priority = |p: u8| Priority::new(i64::from(p)).map_err(|e| ApiError::App(e.into()));
    let page = query.page.unwrap_or(1).max(1);
    let filter = TaskFilter {
        status,
        task_type: text(&query.task_type),
        priority_min: (min > 1).then(|| priority(min)).transpose()?,
        priority_max: (max < 10).then(|| priority(max)).transpose()?,
        assigned_droplet_id: droplet,
        required_capability: capability,
        search: text(&query.search),
        limit: PAGE_SIZE,
        offset: (page - 1) * u64::from(PAGE_SIZE),
        cursor: None,
    };
    Ok((filter, page))
}

async fn tasks(req: HttpRequest, app: web::Data<AppState>, query: web::Query<TaskQuery>) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let (filter, page) = task_filter(&query)?;
        let listing = app.tasks.list(&viewer.caller, filter).await?;
        Ok(page_of(views::tasks(viewer, &listing, &query, page)))
    })
    .await
}

fn page_of(markup: Markup) -> HttpResponse {
    page(StatusCode::OK, markup)
}

fn task_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::InvalidPath(format!("{raw:?} is not a task id")))
}

#[derive(Debug, Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn task(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    notice: web::Query<Notice>,
) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let details = app.tasks.get(&viewer.caller, task_id(&id)?).await?;
        let done = notice.done.as_deref().and_then(done_notice);
        Ok(page_of(views::task(viewer, &details, done)))
    })
    .await
}

fn done_notice(action: &str) -> Option<&'static str> {
    match action {
        "cancel" => Some("The task was cancelled."),
        "stop" => Some("The droplet was asked to stop the task."),
        "retry" => Some("The task goes back to the queue for another attempt."),
        _ => None,
    }
}

fn action_of(raw: &str) -> Result<TaskAction, ApiError> {
    TaskAction::parse(raw).ok_or(ApiError::RouteNotFound)
}

/// Only a caller who may change tasks is offered (or given) an action.
fn may_write(viewer: &Viewer) -> Result<(), ApiError> {
    if viewer.can_write() {
        Ok(())
    } else {
        Err(ApiError::App(orchestrator_app::AppError::Forbidden(
            "this is a read-only session: its token has no write permission".into(),
        )))
    }
}

async fn confirm(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let action = action_of(&path.1)?;
        may_write(viewer)?;
        let details = app.tasks.get(&viewer.caller, task_id(&path.0)?).await?;
        Ok(page_of(views::confirm(viewer, &details.view.task, action)))
    })
    .await
}

async fn act_on_task(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    form_of_signed_in(&req, async |viewer| {
        let action = action_of(&path.1)?;
        may_write(viewer)?;
        let id = task_id(&path.0)?;
        let caller = &viewer.caller;
        match action {
            TaskAction::Cancel => drop(app.tasks.cancel(caller, id).await?),
            TaskAction::Stop => drop(app.tasks.request_cancel(caller, id).await?),
            TaskAction::Retry => {
                let why = Some(format!("retried from the dashboard by {}", caller.subject));
                drop(app.tasks.retry(caller, id, why).await?);
            }
        }
        Ok(see_other(&format!("/ui/tasks/{id}?done={}", path.1)))
    })
    .await
}

async fn droplets(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let droplets = app.droplets.list_with_load(&viewer.caller).await?;
        Ok(page_of(views::droplets(viewer, &droplets)))
    })
    .await
}

async fn act_on_droplet(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    form_of_signed_in(&req, async |viewer| {
        let id: i64 = path
            .0
            .parse()
            .map_err(|_| ApiError::InvalidPath(format!("{:?} is not a droplet id", path.0)))?;
        match path.1.as_str() {
            "activate" => drop(app.droplets.activate(&viewer.caller, id).await?),
            "deactivate" => drop(app.droplets.deactivate(&viewer.caller, id, false).await?),
            _ => return Err(ApiError::RouteNotFound),
        }
        Ok(see_other("/ui/droplets"))
    })
    .await
}

async fn jobs(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    // As in the API (`GET /management/scheduler/jobs`), the jobs are an admin's.
    signed_in(&req, async |viewer| {
        let jobs = app.management.jobs(&viewer.caller)?;
        Ok(page_of(views::jobs(viewer, &jobs)))
    })
    .await
}

async fn schedules(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let schedules = app.schedules.list(&viewer.caller).await?;
        Ok(page_of(views::schedules(viewer, &schedules)))
    })
    .await
}

async fn act_on_schedule(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    form_of_signed_in(&req, async |viewer| {
        let (name, action) = (path.0.as_str(), path.1.as_str());
        let paused = match action {
            "pause" => true,
            "resume" => false,
            _ => return Err(ApiError::RouteNotFound),
        };
        app.schedules.set_paused(&viewer.caller, name, paused).await?;
        Ok(see_other("/ui/schedules"))
    })
    .await
}

async fn workflows(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let workflows = app.workflows.list(&viewer.caller, 50).await?;
        Ok(page_of(views::workflows(viewer, &workflows)))
    })
    .await
}

async fn workflow(req: HttpRequest, app: web::Data<AppState>, id: web::Path<i64>) -> HttpResponse {
    signed_in(&req, async |viewer| {
        let view = app.workflows.get(&viewer.caller, *id).await?;
        Ok(page_of(views::workflow(viewer, &view)))
    })
    .await
}

async fn cancel_workflow(req: HttpRequest, app: web::Data<AppState>, id: web::Path<i64>) -> HttpResponse {
    form_of_signed_in(&req, async |viewer| {
        app.workflows.cancel(&viewer.caller, *id).await?;
        Ok(see_other(&format!("/ui/workflows/{}", *id)))
    })
    .await
}

async fn act_on_job(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    form_of_signed_in(&req, async |viewer| {
        let (id, action) = (path.0.as_str(), path.1.as_str());
        match action {
            "pause" => drop(app.management.pause(&viewer.caller, id).await?),
            "resume" => drop(app.management.resume(&viewer.caller, id)?),
            _ => return Err(ApiError::RouteNotFound),
        }
        Ok(see_other("/ui/jobs"))
    })
    .await
}
