//! The dashboard's pages, rendered on the server. Every value is escaped by
//! maud; no page has an inline script or style.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use orchestrator_app::tasks::{PendingReason, TaskDetails, TaskListing};
use orchestrator_app::{JobStatus, ScheduleView, SeriesPoint, Summary, WorkflowView};
use orchestrator_domain::{
    DependencyFailure, Droplet, DropletStatus, HistoryEntry, Task, TaskId, TaskStatus, WorkflowState,
};
use orchestrator_ports::RescueCounts;
use serde_json::Value;

use super::assets;
use super::session::Viewer;

/// The pages of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Tasks,
    Droplets,
    Schedules,
    Workflows,
    Jobs,
    None,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/ui", "Overview"),
    (Nav::Tasks, "/ui/tasks", "Tasks"),
    (Nav::Droplets, "/ui/droplets", "Droplets"),
    (Nav::Schedules, "/ui/schedules", "Schedules"),
    (Nav::Workflows, "/ui/workflows", "Workflows"),
    (Nav::Jobs, "/ui/jobs", "Jobs"),
];

pub fn layout(title: &str, viewer: Option<&Viewer>, current: Nav, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Orchestrator" }
                link rel="stylesheet" href=(assets::style_path());
                script src=(assets::script_path()) defer {}
            }
            body {
                header.top {
                    span.brand { "Orchestrator" }
                    @if let Some(viewer) = viewer {
                        nav {
                            @for (page, href, label) in NAV {
                                // The jobs page is an admin's, as the API's jobs are.
                                @if page != Nav::Jobs || viewer.is_admin() {
                                    a href=(href) class=[(page == current).then_some("current")] { (label) }
                                }
                            }
                        }
                        span.who {
                            span { (viewer.caller.subject) " · " (role(viewer)) }
                            form.inline method="post" action="/ui/logout" {
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

fn role(viewer: &Viewer) -> &'static str {
    if viewer.is_admin() {
        "admin"
    } else if viewer.can_write() {
        "write"
    } else {
        "read-only"
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        Nav::None,
        html! {
            form.login method="post" action="/ui/login" {
                h1 { "Sign in" }
                p.muted { "Paste a token: a read token gives a read-only view." }
                @if let Some(error) = error {
                    p.notice.error role="alert" { (error) }
                }
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn error(viewer: Option<&Viewer>, status: u16, message: &str) -> Markup {
    layout(
        "Error",
        viewer,
        Nav::None,
        html! {
            h1 { "Error " (status) }
            p.notice.error role="alert" { (message) }
            p { a href="/ui" { "Back to the overview" } }
        },
    )
}

/// A time as RFC 3339 in UTC; a dash when there is none.
fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "—".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn status_class(status: &str) -> String {
    format!("status status-{status}")
}

/// What the overview shows.
pub struct Overview<'a> {
    pub summary: &'a Summary,
    pub series: &'a [SeriesPoint],
    pub rescues: &'a [RescueCounts],
}

pub fn overview(viewer: &Viewer, data: &Overview<'_>) -> Markup {
    let rescued: u64 = data.rescues.iter().map(|r| r.reassignments).sum();
    let refused: u64 = data.rescues.iter().map(|r| r.stale_reports_refused).sum();
    let deadlines: u64 = data.rescues.iter().map(|r| r.deadline_failures).sum();
    let content = html! {
        h1 { "Overview" }
        h2 { "Tasks (" (data.summary.tasks_total) ")" }
        div.cards #task-counts {
            @for status in TaskStatus::ALL {
                div.card {
                    div.figure { (data.summary.tasks_by_status.get(&status).copied().unwrap_or(0)) }
                    div class=(status_class(status.as_str())) { (status.as_str()) }
                }
            }
        }
        h2 { "Droplets (" (data.summary.droplets_total) ")" }
        div.cards #droplet-counts {
            @for status in DropletStatus::ALL {
                div.card {
                    div.figure { (data.summary.droplets_by_status.get(&status).copied().unwrap_or(0)) }
                    div class=(status_class(status.as_str())) { (status.as_str()) }
                }
            }
        }
        h2 { "The last hour" }
        p.legend {
            span.created { "■ created" } span.finished { "■ finished" }
            span.wait { "— median time to assignment" }
        }
        (chart(data.series))
        h2 { "Rescues in the last 24 hours" }
        div.cards #rescues {
            div.card { div.figure { (rescued) } div.label { "reassigned from silent droplets" } }
            div.card { div.figure { (refused) } div.label { "stale reports refused" } }
            div.card { div.figure { (deadlines) } div.label { "failed at their deadline" } }
        }
    };
    layout("Overview", Some(viewer), Nav::Overview, content)
}

/// Created and finished tasks as bars, the median wait as a line.
fn chart(series: &[SeriesPoint]) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 200.0;
    const BASE: f64 = 180.0;
    let slots = series.len().max(1) as f64;
    let slot = WIDTH / slots;
    let most = series
        .iter()
        .map(|p| p.created.max(p.finished))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let longest = series
        .iter()
        .filter_map(|p| p.median_wait_seconds)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let height = |n: u64| (n as f64) / most * 150.0;
    let wait_points: Vec<String> = series
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.median_wait_seconds
                .map(|w| format!("{:.1},{:.1}", (i as f64 + 0.5) * slot, BASE - w / longest * 150.0))
        })
        .collect();
    let label = format!(
        "{} created and {} finished in the last hour; longest median wait {:.3} s",
        series.iter().map(|p| p.created).sum::<u64>(),
        series.iter().map(|p| p.finished).sum::<u64>(),
        if wait_points.is_empty() { 0.0 } else { longest }
    );
    html! {
        svg.chart #throughput-chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            title { (label) }
            line.axis x1="0" y1=(BASE) x2=(WIDTH) y2=(BASE) {}
            @for (i, point) in series.iter().enumerate() {
                @let x = i as f64 * slot;
                rect.bar-created x=(format!("{:.1}", x + slot * 0.1)) y=(format!("{:.1}", BASE - height(point.created)))
                    width=(format!("{:.1}", slot * 0.38)) height=(format!("{:.1}", height(point.created))) {}
                rect.bar-finished x=(format!("{:.1}", x + slot * 0.52)) y=(format!("{:.1}", BASE - height(point.finished)))
                    width=(format!("{:.1}", slot * 0.38)) height=(format!("{:.1}", height(point.finished))) {}
            }
            @if wait_points.len() > 1 {
                polyline.wait points=(wait_points.join(" ")) {}
            }
            text x="4" y="14" { "max " (most as u64) " tasks / 5 min" }
            @if let (Some(first), Some(last)) = (series.first(), series.last()) {
                text x="4" y="196" { (first.until.format("%H:%M")) }
                text x=(WIDTH - 40.0) y="196" { (last.until.format("%H:%M")) }
            }
        }
    }
}

/// The filters of the task list, as the query string has them.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct TaskQuery {
    pub status: Option<String>,
    pub task_type: Option<String>,
    pub capability: Option<String>,
    pub droplet: Option<String>,
    pub priority: Option<String>,
    pub search: Option<String>,
    pub page: Option<u64>,
}

impl TaskQuery {
    fn field(value: Option<&String>) -> &str {
        value.map_or("", String::as_str)
    }

    /// The query string of another page of the same list.
    pub fn page_link(&self, page: u64) -> String {
        let pairs = [
            ("status", &self.status),
            ("task_type", &self.task_type),
            ("capability", &self.capability),
            ("droplet", &self.droplet),
            ("priority", &self.priority),
            ("search", &self.search),
        ];
        let mut query = form_urlencoded(&pairs);
        query.push_str(&format!("page={page}"));
        format!("/ui/tasks?{query}")
    }

    /// Where the live rows come from: the feed, with the filters it knows.
    pub fn live_link(&self) -> String {
        let pairs = [
            ("task_type", &self.task_type),
            ("capability", &self.capability),
            ("droplet_id", &self.droplet),
        ];
        let query = form_urlencoded(&pairs);
        format!("/ui/live/tasks?{query}")
    }
}

fn form_urlencoded(pairs: &[(&str, &Option<String>)]) -> String {
    let mut query = String::new();
    for (name, value) in pairs {
        if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            query.push_str(name);
            query.push('=');
            query.push_str(&percent_encode(value.trim()));
            query.push('&');
        }
    }
    query
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn tasks(viewer: &Viewer, listing: &TaskListing, query: &TaskQuery, page: u64) -> Markup {
    let (min, max) = priority_band(query.priority.as_deref());
    let pages = listing.total.div_ceil(u64::from(listing.limit.max(1))).max(1);
    let content = html! {
        h1 { "Tasks (" (listing.total) ")" }
        form.filters method="get" action="/ui/tasks" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for status in TaskStatus::ALL {
                        option value=(status.as_str()) selected[query.status.as_deref() == Some(status.as_str())] { (status.as_str()) }
                    }
                }
            }
            label { "Type" input name="task_type" value=(TaskQuery::field(query.task_type.as_ref())); }
            label { "Capability" input name="capability" value=(TaskQuery::field(query.capability.as_ref())); }
            label { "Droplet" input name="droplet" inputmode="numeric" size="6" value=(TaskQuery::field(query.droplet.as_ref())); }
            label { "Priority" input name="priority" placeholder="1-10 or 3" size="7" value=(TaskQuery::field(query.priority.as_ref())); }
            label { "Title or trace id" input name="search" type="search" value=(TaskQuery::field(query.search.as_ref())); }
            button type="submit" { "Filter" }
            a.button.secondary href="/ui/tasks" { "Clear" }
        }
        @if page == 1 {
            div.live {
                button.secondary #live-toggle type="button" { "Pause live updates" }
                span #live-state { "connecting…" }
            }
        }
        div.scroll {
            table #tasks
                data-live=[(page == 1).then(|| query.live_link())]
                data-status=(TaskQuery::field(query.status.as_ref()))
                data-priority-min=(min) data-priority-max=(max)
                data-search=(TaskQuery::field(query.search.as_ref()))
                data-limit=(listing.limit) {
                thead { tr {
                    th { "Id" } th { "Title" } th { "Status" } th.optional { "Type" }
                    th.optional { "Capability" } th { "Priority" } th.optional { "Droplet" } th.optional { "Created" }
                } }
                tbody {
                    @for view in &listing.tasks { (task_row(&view.task)) }
                    @if listing.tasks.is_empty() {
                        tr.empty { td colspan="8" { "No task matches." } }
                    }
                }
            }
        }
        div.pager {
            @if page > 1 { a href=(query.page_link(page - 1)) rel="prev" { "← Newer" } }
            span { "Page " (page) " of " (pages) }
            @if listing.has_more() { a href=(query.page_link(page + 1)) rel="next" { "Older →" } }
        }
    };
    layout("Tasks", Some(viewer), Nav::Tasks, content)
}

/// `"3"` is priority 3 only, `"2-5"` a band; anything else all of them.
pub fn priority_band(text: Option<&str>) -> (u8, u8) {
    let parse = |s: &str| s.trim().parse::<u8>().ok().filter(|p| (1..=10).contains(p));
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => (1, 10),
        Some(text) => match text.split_once('-') {
            Some((low, high)) => (parse(low).unwrap_or(1), parse(high).unwrap_or(10)),
            None => parse(text).map_or((1, 10), |p| (p, p)),
        },
    }
}

fn task_row(task: &Task) -> Markup {
    html! {
        tr data-task-id=(task.id) {
            td { (task.id) }
            td { a href=(format!("/ui/tasks/{}", task.id)) { (task.title) } }
            td class=(status_class(task.status.as_str())) { (task.status.as_str()) }
            td.optional { (task.task_type) }
            td.optional { (task.required_capability.as_ref().map(|c| c.as_str()).unwrap_or("")) }
            td { (task.priority.value()) }
            td.optional { (task.assigned_droplet_id.map(|d| d.to_string()).unwrap_or_default()) }
            td.optional { (time(Some(task.created_at))) }
        }
    }
}

/// The actions a task page offers, each behind a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAction {
    Cancel,
    Stop,
    Retry,
}

impl TaskAction {
    pub fn parse(text: &str) -> Option<TaskAction> {
        match text {
            "cancel" => Some(TaskAction::Cancel),
            "stop" => Some(TaskAction::Stop),
            "retry" => Some(TaskAction::Retry),
            _ => None,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            TaskAction::Cancel => "cancel",
            TaskAction::Stop => "stop",
            TaskAction::Retry => "retry",
        }
    }

    fn label(self) -> &'static str {
        match self {
            TaskAction::Cancel => "Cancel the task",
            TaskAction::Stop => "Ask the droplet to stop",
            TaskAction::Retry => "Retry the task",
        }
    }

    fn question(self) -> &'static str {
        match self {
            TaskAction::Cancel => "Cancel this task? It will not run.",
            TaskAction::Stop => "Ask the droplet running this task to stop? It will not be retried.",
            TaskAction::Retry => "Run this failed task again, as a new attempt?",
        }
    }

    /// Whether the action applies to a task in this state.
    pub fn applies_to(self, task: &Task) -> bool {
        match self {
            TaskAction::Cancel => matches!(task.status, TaskStatus::Pending | TaskStatus::Assigned),
            TaskAction::Stop => task.status == TaskStatus::InProgress && task.cancel_requested_at.is_none(),
            TaskAction::Retry => task.status == TaskStatus::Failed,
        }
    }
}

const ACTIONS: [TaskAction; 3] = [TaskAction::Cancel, TaskAction::Stop, TaskAction::Retry];

pub fn task(viewer: &Viewer, details: &TaskDetails, notice: Option<&str>) -> Markup {
    let task = &details.view.task;
    let content = html! {
        p { a href="/ui/tasks" { "← Tasks" } }
        h1 { "Task " (task.id) ": " (task.title) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        @if viewer.can_write() {
            div.actions {
                @for action in ACTIONS {
                    @if action.applies_to(task) {
                        a.button.danger[action != TaskAction::Retry] href=(format!("/ui/tasks/{}/{}", task.id, action.slug())) { (action.label()) }
                    }
                }
            }
        }
        @if let Some(reason) = &details.routing {
            p.notice #waiting { "Waiting: " (pending_reason(reason)) }
        }
        dl.fields {
            dt { "Status" } dd class=(status_class(task.status.as_str())) { (task.status.as_str()) }
            dt { "Type" } dd { (task.task_type) }
            dt { "Priority" } dd { (task.priority.value()) }
            dt { "Required capability" } dd { (task.required_capability.as_ref().map(|c| c.as_str()).unwrap_or("none")) }
            dt { "Droplet" } dd {
                (task.assigned_droplet_id.map(|d| d.to_string()).unwrap_or_else(|| "none".into()))
                @if let Some(name) = &details.view.assigned_droplet_name { " (" (name) ")" }
            }
            dt { "Attempt" } dd { (task.attempt) }
            dt { "Retries" } dd { (task.retry_count) " of " (task.max_retries) }
            dt { "Trace id" } dd { code { (task.trace_id) } }
            dt { "Created by" } dd { (task.created_by.as_deref().unwrap_or("")) }
            dt { "Created" } dd { (time(Some(task.created_at))) }
            dt { "Assigned" } dd { (time(task.assigned_at)) }
            dt { "Started" } dd { (time(task.started_at)) }
            dt { "Finished" } dd { (time(task.completed_at)) }
            dt { "Deadline" } dd { (time(task.deadline)) }
            dt { "Retry after" } dd { (time(task.retry_after)) }
            dt { "Stop requested" } dd { (time(task.cancel_requested_at)) }
            dt { "Run timeout" } dd {
                @match task.timeout_seconds {
                    None => "the server's default",
                    Some(0) => "none",
                    Some(seconds) => { (seconds) " s without progress" }
                }
            }
            @if let Some(progress) = &task.progress {
                dt { "Progress" } dd #progress {
                    @if let Some(percent) = progress.percent { (percent) " % " }
                    @if let Some(message) = &progress.message { (message) " " }
                    "(" (time(Some(progress.at))) ")"
                }
            }
            @if task.requeues > 0 { dt { "Requeues" } dd { (task.requeues) } }
            @if let Some(description) = &task.description { dt { "Description" } dd { (description) } }
            @if let Some(error) = &task.error_message { dt { "Error" } dd { (error) } }
        }
        h2 { "Payload" }
        pre #payload { (pretty(&task.payload)) }
        @if let Some(result) = &task.result {
            h2 { "Result" }
            pre #result { (pretty(result)) }
        }
        h2 { "History" }
        ol.timeline #history {
            @for entry in &details.history { (history_entry(entry)) }
        }
    };
    layout(&format!("Task {}", task.id), Some(viewer), Nav::Tasks, content)
}

fn pending_reason(reason: &PendingReason) -> String {
    match reason {
        PendingReason::Scheduled { at } => format!("it is scheduled to run at {}", time(Some(*at))),
        PendingReason::RetryBackoff { until } => format!("its retry backoff ends at {}", time(Some(*until))),
        PendingReason::RouterPaused => "the task router is paused".into(),
        PendingReason::NoActiveDropletWithCapability { capability } => format!(
            "no active droplet offers {}",
            capability.as_deref().unwrap_or("any capability")
        ),
        PendingReason::AllCapableDropletsFull { droplets, .. } => {
            format!("all {droplets} capable droplets are at their capacity")
        }
        PendingReason::Routable => "a droplet can take it: the router is about to assign it".into(),
        PendingReason::WaitingFor {
            workflow_id,
            task_ids,
        } => {
            let ids: Vec<String> = task_ids.iter().map(|id| format!("#{id}")).collect();
            format!("it waits for {} of workflow {workflow_id}", ids.join(", "))
        }
        PendingReason::ConcurrencyLimited {
            key,
            running,
            max_running,
        } => format!("its concurrency key {key} has {running} of {max_running} tasks running"),
    }
}

fn history_entry(entry: &HistoryEntry) -> Markup {
    html! {
        li {
            div {
                strong { (entry.from_status.map_or("created", |s| s.as_str())) " → " (entry.to_status.as_str()) }
                @if let Some(attempt) = entry.metadata.as_ref().and_then(|m| m.get("attempt")) { " · attempt " (attempt) }
            }
            div.when { (time(Some(entry.changed_at))) " by " (entry.changed_by.as_deref().unwrap_or("the orchestrator")) }
            @if let Some(reason) = &entry.reason { div { (reason) } }
            @if let Some(metadata) = &entry.metadata {
                details {
                    summary { (if is_placement(metadata) { "Why this droplet" } else { "Details" }) }
                    pre { (pretty(metadata)) }
                }
            }
        }
    }
}

fn is_placement(metadata: &Value) -> bool {
    metadata.get("candidates").is_some() || metadata.get("placement").is_some()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub fn confirm(viewer: &Viewer, task: &Task, action: TaskAction) -> Markup {
    let content = html! {
        p { a href=(format!("/ui/tasks/{}", task.id)) { "← Task " (task.id) } }
        h1 { (action.label()) }
        p { "Task " (task.id) ", " strong { (task.title) } ", is " (task.status.as_str()) "." }
        p.notice { (action.question()) }
        form method="post" action=(format!("/ui/tasks/{}/{}", task.id, action.slug())) {
            div.actions {
                button.danger[action != TaskAction::Retry] #confirm type="submit" { "Yes: " (action.label().to_lowercase()) }
                a.button.secondary href=(format!("/ui/tasks/{}", task.id)) { "No, go back" }
            }
        }
    };
    layout(action.label(), Some(viewer), Nav::Tasks, content)
}

pub fn droplets(viewer: &Viewer, droplets: &[(Droplet, u32)]) -> Markup {
    let content = html! {
        h1 { "Droplets (" (droplets.len()) ")" }
        div.scroll {
            table #droplets {
                thead { tr {
                    th { "Id" } th { "Name" } th { "Status" } th { "Capabilities" } th { "Load" }
                    th.optional { "Last heartbeat" }
                    @if viewer.is_admin() { th { "Action" } }
                } }
                tbody {
                    @for (droplet, load) in droplets {
                        tr data-droplet-id=(droplet.droplet_id) {
                            td { (droplet.droplet_id) }
                            td { (droplet.name) }
                            td class=(status_class(droplet.status.as_str())) {
                                (droplet.status.as_str())
                                @if droplet.manually_deactivated { " (by an admin)" }
                            }
                            td { (droplet.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) }
                            td { (load) " / " (droplet.max_concurrent_tasks) }
                            td.optional { (time(droplet.last_heartbeat)) }
                            @if viewer.is_admin() {
                                td { (droplet_action(droplet)) }
                            }
                        }
                    }
                    @if droplets.is_empty() { tr { td colspan="7" { "No droplet is registered." } } }
                }
            }
        }
    };
    layout("Droplets", Some(viewer), Nav::Droplets, content)
}

fn droplet_action(droplet: &Droplet) -> Markup {
    let (verb, label) = if droplet.status == DropletStatus::Active {
        ("deactivate", "Deactivate")
    } else {
        ("activate", "Activate")
    };
    html! {
        form.inline method="post" action=(format!("/ui/droplets/{}/{verb}", droplet.droplet_id)) {
            button.secondary type="submit" { (label) }
        }
    }
}

pub fn jobs(viewer: &Viewer, jobs: &[JobStatus]) -> Markup {
    let content = html! {
        h1 { "Jobs" }
        div.scroll {
            table #jobs {
                thead { tr {
                    th { "Job" } th { "Every" } th { "State" } th { "Last run" } th { "Next run" }
                    th.optional { "Runs" } th { "Last error" }
                    @if viewer.is_admin() { th { "Action" } }
                } }
                tbody {
                    @for job in jobs {
                        tr data-job=(job.id) {
                            td { (job.id) }
                            td { (job.interval_seconds) " s" }
                            td { (job_state(job)) }
                            td { (time(job.last_run_at)) }
                            td { (time(job.next_run_at)) }
                            td.optional { (job.runs) " (" (job.failures) " failed)" }
                            td { (job.last_error.as_deref().unwrap_or("")) }
                            @if viewer.is_admin() {
                                td {
                                    form.inline method="post" action=(format!("/ui/jobs/{}/{}", job.id, if job.paused { "resume" } else { "pause" })) {
                                        button.secondary type="submit" { (if job.paused { "Resume" } else { "Pause" }) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Jobs", Some(viewer), Nav::Jobs, content)
}

/// The schedules with their next fire times; a writer may pause and
/// resume them.
pub fn schedules(viewer: &Viewer, schedules: &[ScheduleView]) -> Markup {
    let content = html! {
        h1 { "Schedules" }
        @if schedules.is_empty() {
            p.muted { "No schedule yet: POST /schedules, or orchestrator schedules create." }
        } @else {
            div.scroll {
                table #schedules {
                    thead { tr {
                        th { "Schedule" } th { "Cron" } th { "Time zone" } th { "Task type" } th { "State" }
                        th { "Next runs" } th.optional { "Fires" } th { "Last task" }
                        @if viewer.can_write() { th { "Action" } }
                    } }
                    tbody {
                        @for view in schedules {
                            (schedule_row(viewer, view))
                        }
                    }
                }
            }
        }
    };
    layout("Schedules", Some(viewer), Nav::Schedules, content)
}

fn schedule_row(viewer: &Viewer, view: &ScheduleView) -> Markup {
    let schedule = &view.schedule;
    let action = if schedule.paused { "resume" } else { "pause" };
    html! {
        tr data-schedule=(schedule.name) {
            td { (schedule.name) }
            td { code { (schedule.cron) } }
            td { (schedule.timezone) }
            td { (schedule.template.task_type) }
            td {
                @if schedule.paused { span.status.status-pending { "paused" } }
                @else { span.status.status-active { "active" } }
            }
            td.next-runs {
                @for at in &view.next_runs { (time(Some(*at))) br; }
            }
            td.optional { (schedule.fires) " (" (schedule.skips) " skipped)" }
            td {
                @if let Some(id) = schedule.last_task_id { a href=(format!("/ui/tasks/{id}")) { "#" (id) } }
            }
            @if viewer.can_write() {
                td {
                    form.inline method="post" action=(format!("/ui/schedules/{}/{action}", schedule.name)) {
                        button.secondary type="submit" { (if schedule.paused { "Resume" } else { "Pause" }) }
                    }
                }
            }
        }
    }
}

/// The newest workflows, each with its state and how its tasks stand.
pub fn workflows(viewer: &Viewer, workflows: &[WorkflowView]) -> Markup {
    let content = html! {
        h1 { "Workflows" }
        @if workflows.is_empty() {
            p.muted { "No workflow yet: POST /workflows submits one." }
        } @else {
            div.scroll {
                table #workflows {
                    thead { tr {
                        th { "Workflow" } th { "Name" } th { "State" } th { "Tasks" } th.optional { "Created" }
                    } }
                    tbody {
                        @for view in workflows {
                            @let workflow = &view.workflow;
                            tr data-workflow=(workflow.id) {
                                td { a href=(format!("/ui/workflows/{}", workflow.id)) { "#" (workflow.id) } }
                                td { (workflow.name.as_deref().unwrap_or("")) }
                                td { (workflow_state(view.state)) }
                                td { (task_tally(workflow)) }
                                td.optional { (time(Some(workflow.created_at))) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Workflows", Some(viewer), Nav::Workflows, content)
}

/// One workflow: its tasks in dependency order with their states, and
/// for a writer a button that cancels what has not finished.
pub fn workflow(viewer: &Viewer, view: &WorkflowView) -> Markup {
    let workflow = &view.workflow;
    let keys: std::collections::HashMap<TaskId, &str> = workflow
        .members
        .iter()
        .map(|m| (m.task.id, m.key.as_str()))
        .collect();
    let title = format!("Workflow {}", workflow.id);
    let content = html! {
        h1 { (title) @if let Some(name) = &workflow.name { " · " (name) } }
        p { (workflow_state(view.state)) " · created " (time(Some(workflow.created_at)))
            @if let Some(by) = &workflow.created_by { " by " (by) } }
        @if viewer.can_write() && view.state == WorkflowState::Running {
            form.inline method="post" action=(format!("/ui/workflows/{}/cancel", workflow.id)) {
                button.secondary type="submit" { "Cancel what has not finished" }
            }
        }
        div.scroll {
            table #workflow-tasks {
                thead { tr {
                    th { "Step" } th { "Task" } th { "Type" } th { "Status" } th { "Waits for" } th.optional { "If one fails" }
                } }
                tbody {
                    @for member in &workflow.members {
                        tr data-key=(member.key) {
                            td { (member.key) }
                            td { a href=(format!("/ui/tasks/{}", member.task.id)) { "#" (member.task.id) } }
                            td { (member.task.task_type) }
                            td class=(status_class(member.task.status.as_str())) {
                                (member.task.status.as_str())
                                @if member.waiting { " (waiting)" }
                            }
                            td {
                                @for (i, id) in member.depends_on.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (keys.get(id).copied().unwrap_or("?"))
                                }
                            }
                            td.optional { (dependency_policy(member.on_dependency_failure)) }
                        }
                    }
                }
            }
        }
    };
    layout(&title, Some(viewer), Nav::Workflows, content)
}

fn workflow_state(state: WorkflowState) -> Markup {
    let shown_as = match state {
        WorkflowState::Running => "in_progress",
        WorkflowState::Completed => "completed",
        WorkflowState::Failed => "failed",
        WorkflowState::Cancelled => "cancelled",
    };
    html! { span class=(status_class(shown_as)) { (state.as_str()) } }
}

fn dependency_policy(policy: DependencyFailure) -> &'static str {
    match policy {
        DependencyFailure::Cancel => "it is cancelled",
        DependencyFailure::RunAnyway => "it runs anyway",
    }
}

/// How many tasks of `workflow` have each status, as `3 completed, 1 pending`.
fn task_tally(workflow: &orchestrator_ports::StoredWorkflow) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for member in &workflow.members {
        *counts.entry(member.task.status.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(status, n)| format!("{n} {status}")).collect();
    parts.join(", ")
}

fn job_state(job: &JobStatus) -> Markup {
    html! {
        @if let Some(reason) = &job.idle_reason { span.muted title=(reason) { "idle" } }
        @else if job.paused { span.status.status-pending { "paused" } }
        @else if !job.leader { span.muted { "standby (another replica leads)" } }
        @else { span.status.status-active { "running" } }
    }
}

/// Marks a page as HTML that needs no escaping (it was rendered by maud).
pub fn into_body(markup: Markup) -> String {
    let PreEscaped(body) = markup;
    body
}
