//! The operator's commands (`tasks`, `droplets`, `schedules`, `watch`): a client of a
//! running orchestrator, through `orchestrator-client`. Tables for people,
//! `--json` (one JSON document, or one line per event) for scripts.

mod render;

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use orchestrator_client::{Client, ClientError, DropletQuery, FeedFilter, FeedKind, TaskQuery};
use orchestrator_domain::{
    CatchUp, DropletId, DropletStatus, Overlap, ScheduleDraft, TaskDraft, TaskId, TaskStatus,
};
use serde::Serialize;
use serde_json::Value;

/// Where the orchestrator is and who is calling; shared by every client command.
#[derive(Debug, Args)]
pub struct Connection {
    /// The orchestrator's base URL.
    #[arg(
        long,
        global = true,
        env = "ORCHESTRATOR_URL",
        default_value = "http://localhost:8000"
    )]
    pub url: String,
    /// A bearer token (see `orchestrator token`, or POST /token in development).
    #[arg(long, global = true, env = "ORCHESTRATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Submit a task.
    Create(Box<CreateTask>),
    /// List tasks, newest first.
    List(ListTasks),
    /// Show a task with its history.
    Get { id: TaskId },
    /// Cancel a task that is not running; `--running` asks its droplet to stop it.
    Cancel {
        id: TaskId,
        /// Ask the droplet running the task to stop it (POST /tasks/{id}/cancel-request).
        #[arg(long)]
        running: bool,
    },
    /// Give a failed task whose retries are spent one more attempt.
    Retry {
        id: TaskId,
        /// Why, for the task's history.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateTask {
    /// The task's type, such as `verify`.
    #[arg(long = "type")]
    task_type: String,
    /// A title for people (default: the type).
    #[arg(long)]
    title: Option<String>,
    /// What the task is for, for people.
    #[arg(long)]
    description: Option<String>,
    /// The capability a droplet needs to take it.
    #[arg(long)]
    capability: Option<String>,
    /// 1 (most urgent) to 10 (least); default 5.
    #[arg(long)]
    priority: Option<i64>,
    /// How many times a failure is retried; default 3.
    #[arg(long)]
    max_retries: Option<i64>,
    /// RFC 3339, such as 2030-01-01T00:00:00Z.
    #[arg(long)]
    deadline: Option<DateTime<Utc>>,
    /// When to run it (RFC 3339): it waits pending until then.
    #[arg(long, conflicts_with = "delay_seconds")]
    run_at: Option<DateTime<Utc>>,
    /// Run it this many seconds from now, instead of at once.
    #[arg(long)]
    delay_seconds: Option<i64>,
    /// Seconds a run may go without progress before it fails; 0 for no
    /// limit; the server's TASK_RUN_TIMEOUT when absent.
    #[arg(long)]
    timeout_seconds: Option<i64>,
    /// At most the key's limit of tasks with this key run at once.
    #[arg(long)]
    concurrency_key: Option<String>,
    /// The payload, a JSON document.
    #[arg(long, value_parser = parse_json)]
    payload: Option<Value>,
}

#[derive(Debug, Args)]
pub struct ListTasks {
    #[arg(long)]
    status: Option<TaskStatus>,
    #[arg(long = "type")]
    task_type: Option<String>,
    /// Only the tasks assigned to this droplet.
    #[arg(long)]
    droplet: Option<DropletId>,
    /// At most this many (the server caps it).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long, default_value_t = 0)]
    offset: u64,
}

#[derive(Debug, Subcommand)]
pub enum DropletsCommand {
    /// List the registered droplets.
    List {
        /// Only droplets in this status: active, inactive or error.
        #[arg(long)]
        status: Option<DropletStatus>,
        /// Only droplets offering this capability.
        #[arg(long)]
        capability: Option<String>,
    },
    /// Show one droplet.
    Get { id: DropletId },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List the schedules with their next fire time.
    List,
    /// Show a schedule with its next five fire times.
    Get { name: String },
    /// Make a schedule that submits a task at each fire time.
    Create(Box<CreateSchedule>),
    /// Fire nothing until resumed.
    Pause { name: String },
    /// Fire again from the next fire time on.
    Resume { name: String },
    /// Delete a schedule; the tasks it made stay.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CreateSchedule {
    /// Letters, digits, '-', '_' and '.'.
    #[arg(long)]
    name: String,
    /// Five fields (minute hour day month weekday), or six with seconds first.
    #[arg(long)]
    cron: String,
    /// An IANA time zone such as Europe/Paris; UTC when absent.
    #[arg(long)]
    timezone: Option<String>,
    /// `skip` a fire while the previous task is unfinished, or `allow` it (the default).
    #[arg(long)]
    overlap: Option<String>,
    /// What a fire time missed while the orchestrator was down does:
    /// `last` (the last one fires at once, the default) or `none`.
    #[arg(long)]
    catch_up: Option<String>,
    /// The task each fire submits: its type.
    #[arg(long = "type")]
    task_type: String,
    /// The capability a droplet needs to take it.
    #[arg(long)]
    capability: Option<String>,
    /// 1 (most urgent) to 10 (least); default 5.
    #[arg(long)]
    priority: Option<i64>,
    /// The payload, a JSON document.
    #[arg(long, value_parser = parse_json)]
    payload: Option<Value>,
}

#[derive(Debug, Args)]
pub struct FeedOptions {
    /// Follow the droplet feed instead of the task feed.
    #[arg(long)]
    droplets: bool,
    #[arg(long = "type")]
    task_type: Option<String>,
    #[arg(long)]
    capability: Option<String>,
    /// Only the events of this droplet's tasks (or of the droplet itself).
    #[arg(long)]
    droplet: Option<DropletId>,
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// The commands that call a running orchestrator.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit, list, show and cancel tasks.
    Tasks {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// List and show the registered droplets.
    Droplets {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: DropletsCommand,
    },
    /// List, show, make, pause, resume and delete cron schedules.
    Schedules {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: SchedulesCommand,
    },
    /// Check a running orchestrator: exits 0 when it answers `active`
    /// (a container's HEALTHCHECK needs nothing else).
    Health {
        #[command(flatten)]
        connection: Connection,
    },
    /// Check that a running orchestrator can take work: exits 0 when
    /// `/readyz` answers `ready` (store up, migrations current, not
    /// stopping), else prints why and exits 1.
    Ready {
        #[command(flatten)]
        connection: Connection,
    },
    /// Follow the live task feed (or `--droplets`), one line per event.
    Watch {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        watch: FeedOptions,
    },
}

impl ClientCommand {
    fn connection(&self) -> &Connection {
        match self {
            ClientCommand::Tasks { connection, .. }
            | ClientCommand::Droplets { connection, .. }
            | ClientCommand::Schedules { connection, .. }
            | ClientCommand::Health { connection }
            | ClientCommand::Ready { connection }
            | ClientCommand::Watch { connection, .. } => connection,
        }
    }
}

/// Runs one client command, writing to `out`; errors are for the caller to print.
pub async fn run(command: ClientCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let connection = command.connection();
    let mut client = Client::new(&connection.url)?;
    if let Some(token) = connection.token.as_deref().filter(|t| !t.trim().is_empty()) {
        client = client.with_token(token.trim());
    }
    let output = Output {
        json: connection.json,
    };
    match command {
        ClientCommand::Tasks { command, .. } => tasks(&client, command, output, out).await,
        ClientCommand::Droplets { command, .. } => droplets(&client, command, output, out).await,
        ClientCommand::Schedules { command, .. } => schedules(&client, command, output, out).await,
        ClientCommand::Health { .. } => health(&client, output, out).await,
        ClientCommand::Ready { .. } => ready(&client, output, out).await,
        ClientCommand::Watch { watch, .. } => follow(&client, watch, output, out).await,
    }
}

#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    /// The JSON of `value`, or the table `render` makes of it.
    fn show<T: Serialize>(
        self,
        out: &mut impl Write,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        } else {
            write!(out, "{}", render(value))?;
        }
        Ok(())
    }
}

async fn tasks(
    client: &Client,
    command: TasksCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        TasksCommand::Create(create) => {
            let created = client.create_task(&create.into_draft()).await?;
            output.show(out, &created, render::created)
        }
        TasksCommand::List(list) => {
            let page = client.list_tasks(&list.into_query()).await?;
            output.show(out, &page, render::task_page)
        }
        TasksCommand::Get { id } => {
            let task = client.get_task(id).await?;
            output.show(out, &task, render::task)
        }
        TasksCommand::Cancel { id, running: false } => {
            let cancelled = client.cancel_task(id).await.map_err(hint_running)?;
            output.show(out, &cancelled, render::cancelled)
        }
        TasksCommand::Cancel { id, running: true } => {
            let task = client.request_cancel(id).await?;
            output.show(out, &task, render::cancel_requested)
        }
        TasksCommand::Retry { id, reason } => {
            let task = client.retry_task(id, reason.as_deref()).await?;
            output.show(out, &task, render::retried)
        }
    }
}

/// A running task cannot be cancelled outright; say how to ask for it.
fn hint_running(err: ClientError) -> anyhow::Error {
    match &err {
        ClientError::Api { status: 409, .. } => {
            anyhow::anyhow!("{err}\n(to ask the droplet running it to stop, add --running)")
        }
        _ => err.into(),
    }
}

async fn schedules(
    client: &Client,
    command: SchedulesCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let schedule = match command {
        SchedulesCommand::List => {
            let all = client.schedules().await?;
            return output.show(out, &all, |s| render::schedules(s));
        }
        SchedulesCommand::Delete { name } => {
            let deleted = client.delete_schedule(&name).await?;
            return output.show(out, &deleted, |d| render::schedule_deleted(&d.name));
        }
        SchedulesCommand::Get { name } => client.schedule(&name).await?,
        SchedulesCommand::Create(create) => client.create_schedule(&create.into_draft()?).await?,
        SchedulesCommand::Pause { name } => client.pause_schedule(&name).await?,
        SchedulesCommand::Resume { name } => client.resume_schedule(&name).await?,
    };
    output.show(out, &schedule, render::schedule)
}

impl CreateSchedule {
    fn into_draft(self) -> anyhow::Result<ScheduleDraft> {
        let overlap = self
            .overlap
            .as_deref()
            .map(str::parse::<Overlap>)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let catch_up = self
            .catch_up
            .as_deref()
            .map(str::parse::<CatchUp>)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(ScheduleDraft {
            name: self.name,
            cron: self.cron,
            timezone: self.timezone,
            task: TaskDraft {
                task_type: self.task_type,
                required_capability: self.capability,
                priority: self.priority,
                payload: self.payload,
                ..TaskDraft::default()
            },
            overlap,
            catch_up,
        })
    }
}

async fn droplets(
    client: &Client,
    command: DropletsCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        DropletsCommand::List { status, capability } => {
            let query = DropletQuery {
                status: status.map(|s| s.as_str().to_owned()),
                capability,
            };
            let droplets = client.list_droplets(&query).await?;
            output.show(out, &droplets, |d| render::droplets(d))
        }
        DropletsCommand::Get { id } => {
            let droplet = client.get_droplet(id).await?;
            output.show(out, &droplet, render::droplet)
        }
    }
}

async fn health(client: &Client, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let health = client.health().await?;
    output.show(out, &health, |h| format!("{} ({}): {}\n", h.name, h.id, h.status))?;
    if health.status != "active" {
        anyhow::bail!("the orchestrator is {}: {}", health.status, health.message);
    }
    Ok(())
}

async fn ready(client: &Client, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let readiness = client.readiness().await?;
    output.show(out, &readiness, |r| format!("{}\n", r.status))?;
    if !readiness.is_ready() {
        anyhow::bail!("the orchestrator is not ready: {}", readiness.reasons.join("; "));
    }
    Ok(())
}

/// One line per event until the server closes the feed.
async fn follow(
    client: &Client,
    watch: FeedOptions,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let kind = if watch.droplets {
        FeedKind::Droplets
    } else {
        FeedKind::Tasks
    };
    let filter = FeedFilter {
        task_type: watch.task_type,
        capability: watch.capability,
        droplet_id: watch.droplet,
        ..FeedFilter::default()
    };
    let mut feed = client.subscribe(kind, &filter).await?;
    while let Some(event) = feed.next().await {
        let event = event?;
        if output.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            writeln!(out, "{}", render::event_line(&event))?;
        }
        out.flush()?;
    }
    Ok(())
}

impl CreateTask {
    fn into_draft(self) -> TaskDraft {
        TaskDraft {
            title: self.title,
            task_type: self.task_type,
            description: self.description,
            required_capability: self.capability,
            priority: self.priority,
            max_retries: self.max_retries,
            deadline: self.deadline,
            run_at: self.run_at,
            delay_seconds: self.delay_seconds,
            timeout_seconds: self.timeout_seconds,
            concurrency_key: self.concurrency_key,
            payload: self.payload,
        }
    }
}

impl ListTasks {
    fn into_query(self) -> TaskQuery {
        TaskQuery {
            status: self.status.map(|s| s.as_str().to_owned()),
            task_type: self.task_type,
            assigned_droplet_id: self.droplet,
            ..TaskQuery::default()
        }
        .with_limit(self.limit)
        .with_offset(self.offset)
    }
}
