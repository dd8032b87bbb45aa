//! The worker runtime: a droplet in a dozen lines.
//!
//! ```rust,no_run
//! use orchestrator_client::{Client, Worker};
//! use orchestrator_domain::RegistrationDraft;
//!
//! # async fn run() -> Result<(), orchestrator_client::ClientError> {
//! let client = Client::new("http://localhost:8000")?.with_token("eyJ…");
//! let me = RegistrationDraft {
//!     droplet_id: 21,
//!     name: "echo".into(),
//!     endpoint: "http://echo:8021".into(),
//!     ..RegistrationDraft::default()
//! };
//! Worker::builder(client, me)
//!     .capability("echo", |task| async move { Ok(task.payload) })
//!     .run(std::future::pending::<()>()) // or a shutdown signal
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! It registers the droplet (with the capabilities it has handlers for),
//! heartbeats on the interval the orchestrator gives, receives its
//! assignments by [`Delivery`] (pull, the `/ws/tasks` feed, or push to a
//! small built-in `/message` endpoint; the latter two with a slow pull to
//! catch what a dropped connection missed), runs each handler with a
//! concurrency limit, and reports
//! `in_progress`, then `completed` with the handler's value or `failed` with
//! its error. A handler that panics fails its task with the panic message;
//! the worker goes on. With push or feed delivery, a cancel request for a
//! running task stops its handler and fails it with [`STOPPED_ON_REQUEST`]. On shutdown it takes no more work, lets running
//! handlers finish within the grace period, and fails the rest as handed
//! back, so that the orchestrator retries them elsewhere.

mod push;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_domain::{DropletId, HeartbeatReport, RegistrationDraft, Task, TaskStatus};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};

use crate::{Client, ClientError, FeedFilter, FeedKind, ProgressReport, StatusUpdate, TaskQuery, TaskRecord};

/// What a handler gives back: the task's result, or why it failed.
pub type HandlerResult = Result<Value, String>;
type Handler = Arc<dyn Fn(Task) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// The error message of a task handed back at shutdown.
pub const HANDED_BACK: &str = "the worker shut down before finishing; handed back to be retried";

/// The error message of a task stopped because its creator or an admin asked.
pub const STOPPED_ON_REQUEST: &str = "stopped: a cancel was requested while it ran";

/// What a delivery (push or feed) tells the worker's loop.
#[derive(Debug)]
enum Notice {
    Assigned(Task),
    CancelRequested(Task),
}

/// How a run of the worker went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub completed: u64,
    pub failed: u64,
    pub handed_back: u64,
    /// Stopped mid-run because a cancel was requested (push or feed delivery).
    pub stopped_on_request: u64,
}

/// How the worker learns of the tasks assigned to it (API.md, "Work delivery").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Asks for its assigned tasks every poll interval (default 250 ms).
    #[default]
    Pull,
    /// Follows `/ws/tasks` for its own `task_assigned` events, reconnecting
    /// when cut; pulls every poll interval (default 5 s) for what it missed.
    Feed,
    /// Serves `POST /message` on `listen` for the orchestrator's pushes (the
    /// droplet's registered `endpoint` must reach it); pulls every poll
    /// interval (default 5 s) for what a failed push missed.
    Push { listen: SocketAddr },
}

impl Delivery {
    fn default_poll_interval(self) -> Duration {
        match self {
            Delivery::Pull => Duration::from_millis(250),
            Delivery::Feed | Delivery::Push { .. } => Duration::from_secs(5),
        }
    }
}

/// How many delivered assignments may wait for the worker's loop.
const ASSIGNMENT_QUEUE: usize = 256;

/// How long to wait before following the feed again after it was cut.
const FEED_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// A worker for the droplet `me`, calling the orchestrator with `client`
    /// (whose token must be the droplet's).
    pub fn builder(client: Client, me: RegistrationDraft) -> WorkerBuilder {
        WorkerBuilder {
            client,
            me,
            handlers: HashMap::new(),
            concurrency: 4,
            delivery: Delivery::Pull,
            poll_interval: None,
            shutdown_grace: Duration::from_secs(30),
            progress_interval: Duration::from_secs(30),
        }
    }
}

pub struct WorkerBuilder {
    client: Client,
    me: RegistrationDraft,
    handlers: HashMap<String, Handler>,
    concurrency: usize,
    delivery: Delivery,
    poll_interval: Option<Duration>,
    shutdown_grace: Duration,
    progress_interval: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("droplet_id", &self.me.droplet_id)
            .field("capabilities", &self.handlers.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl WorkerBuilder {
    /// Runs `handler` for tasks that require `capability`.
    pub fn capability<F, Fut>(mut self, capability: &str, handler: F) -> Self
    where
        F: Fn(Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |task| Box::pin(handler(task)));
        self.handlers.insert(capability.to_owned(), handler);
        self
    }

    /// At most this many handlers at once (default 4); also the droplet's
    /// `max_concurrent_tasks`.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How assignments reach the worker (default [`Delivery::Pull`]).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// How often assigned tasks are pulled (default 250 ms when pulling,
    /// 5 s as the safety net of the feed and of push).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// How long running handlers may go on after shutdown (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// While a handler runs, the worker reports progress this often (default
    /// 30 s), or three times per `timeout_seconds` when the task's own is
    /// shorter, so that a long but healthy run is not timed out. Set it
    /// below the server's `TASK_RUN_TIMEOUT` when that is under a minute.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// Registers, then works until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport, ClientError> {
        let mut me = self.me.clone();
        me.capabilities.extend(self.handlers.keys().cloned());
        me.capabilities.sort();
        me.capabilities.dedup();
        me.max_concurrent_tasks = Some(i64::try_from(self.concurrency).unwrap_or(i64::MAX));
        // Listening before registering: the first push may follow at once.
        let listener = match self.delivery {
            Delivery::Push { listen } => Some(bind(listen).await?),
            Delivery::Pull | Delivery::Feed => None,
        };
        let registered = self.client.register(&me).await?;
        let beat_every = Duration::from_secs(registered.heartbeat_interval_seconds.clamp(1, 30));
        // Dropped with the run, as when the process dies: the beats stop.
        let _heartbeats = AbortOnDrop(tokio::spawn(heartbeat(
            self.client.clone(),
            me.droplet_id,
            beat_every,
        )));
        let (assignments, mut delivered) = mpsc::channel(ASSIGNMENT_QUEUE);
        let _delivery = match listener {
            Some(listener) => {
                let identity = push::Identity {
                    droplet_id: me.droplet_id,
                    name: me.name.clone(),
                    endpoint: me.endpoint.clone(),
                };
                Some(AbortOnDrop(tokio::spawn(push::serve(
                    listener,
                    identity,
                    assignments,
                ))))
            }
            None if self.delivery == Delivery::Feed => Some(AbortOnDrop(tokio::spawn(follow_feed(
                self.client.clone(),
                me.droplet_id,
                assignments,
            )))),
            None => None,
        };
        let running = Running {
            client: self.client,
            droplet_id: me.droplet_id,
            handlers: Arc::new(self.handlers),
            slots: Arc::new(Semaphore::new(self.concurrency)),
            in_hand: Arc::new(Mutex::new(HashSet::new())),
            missed: Arc::new(AtomicBool::new(false)),
            aborts: Arc::default(),
            report: Arc::new(Mutex::new(WorkerReport::default())),
            progress_every: self.progress_interval,
            stop_reports: Arc::default(),
        };
        let mut jobs = JoinSet::new();
        tokio::pin!(shutdown);
        let poll_every = self
            .poll_interval
            .unwrap_or_else(|| self.delivery.default_poll_interval());
        let mut ticks = tokio::time::interval(poll_every);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => running.pull(&mut jobs).await,
                Some(notice) = delivered.recv() => match notice {
                    Notice::Assigned(task) => running.start(task, &mut jobs),
                    Notice::CancelRequested(task) => running.stop_on_request(&task),
                },
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {
                    // A slot is free: take at once what was turned away for lack of one.
                    if running.missed.swap(false, Ordering::Relaxed) {
                        running.pull(&mut jobs).await;
                    }
                }
            }
        }
        running.wind_down(jobs, self.shutdown_grace).await;
        let report = *running.report.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(report)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, ClientError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ClientError::Listen {
            address: listen.to_string(),
            message: e.to_string(),
        })
}

/// Sends this droplet's `task_assigned` events to the worker's loop, following
/// the feed again whenever it is cut, until the worker stops.
async fn follow_feed(client: Client, droplet_id: DropletId, notices: mpsc::Sender<Notice>) {
    let filter = FeedFilter {
        droplet_id: Some(droplet_id),
        ..FeedFilter::default()
    };
    // Said once per outage, not once per retry.
    let mut cut = false;
    loop {
        match client.subscribe(FeedKind::Tasks, &filter).await {
            Ok(mut feed) => {
                if std::mem::take(&mut cut) {
                    eprintln!("orchestrator-client: following /ws/tasks again");
                }
                while let Some(Ok(event)) = feed.next().await {
                    if let Some(notice) = notice_of(&event, droplet_id)
                        && notices.send(notice).await.is_err()
                    {
                        return;
                    }
                }
            }
            Err(err) if !cut => {
                cut = true;
                eprintln!("orchestrator-client: following /ws/tasks failed, retrying every second: {err}");
            }
            Err(_) => {}
        }
        tokio::time::sleep(FEED_RETRY).await;
    }
}

/// This droplet's assignment or cancel request, from a feed event.
fn notice_of(event: &crate::FeedEvent, droplet_id: DropletId) -> Option<Notice> {
    let task = event
        .task()
        .filter(|t| t.assigned_droplet_id == Some(droplet_id))?;
    match event.event.as_str() {
        "task_assigned" if task.status == TaskStatus::Assigned => Some(Notice::Assigned(task)),
        "task_cancel_requested" => Some(Notice::CancelRequested(task)),
        _ => None,
    }
}

/// Tells the orchestrator every `every` that task `id` is still being run,
/// until dropped: a run that reports progress is not timed out.
async fn keep_reporting_progress(client: Client, id: i64, attempt: u32, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let report = ProgressReport {
        attempt,
        progress: None,
        message: None,
    };
    loop {
        ticks.tick().await;
        if let Err(err) = client.report_progress(id, &report).await {
            // 409: the task moved on (taken back, or it just finished).
            if err.status() == Some(409) {
                return;
            }
            eprintln!("orchestrator-client: progress report of task {id} failed: {err}");
        }
    }
}

async fn heartbeat(client: Client, droplet_id: DropletId, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if let Err(err) = client.heartbeat(droplet_id, &HeartbeatReport::default()).await {
            eprintln!("orchestrator-client: heartbeat of droplet {droplet_id} failed: {err}");
        }
    }
}

#[derive(Clone)]
struct Running {
    client: Client,
    droplet_id: DropletId,
    handlers: Arc<HashMap<String, Handler>>,
    slots: Arc<Semaphore>,
    /// Tasks this worker is running, so that a pull does not start them twice.
    in_hand: Arc<Mutex<HashSet<i64>>>,
    /// An assignment was turned away for want of a free slot.
    missed: Arc<AtomicBool>,
    /// How to stop each running task's job, for a cancel request.
    aborts: Arc<Mutex<HashMap<i64, AbortHandle>>>,
    report: Arc<Mutex<WorkerReport>>,
    progress_every: Duration,
    /// Reports of tasks stopped on request, still on their way: the run
    /// waits for them before it answers its report.
    stop_reports: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Running {
    /// Starts the assigned tasks there are free slots for.
    async fn pull(&self, jobs: &mut JoinSet<()>) {
        let free = self.slots.available_permits();
        if free == 0 {
            return;
        }
        let query = TaskQuery::default()
            .with_droplet(self.droplet_id)
            .with_status(TaskStatus::Assigned)
            .with_limit(u32::try_from(free).unwrap_or(u32::MAX));
        let page = match self.client.list_tasks(&query).await {
            Ok(page) => page,
            Err(err) => {
                eprintln!("orchestrator-client: pulling tasks failed: {err}");
                return;
            }
        };
        for record in page.tasks {
            self.start(record.task, jobs);
        }
    }

    /// Runs `task` if it is not in hand already and a slot is free.
    fn start(&self, task: Task, jobs: &mut JoinSet<()>) {
        if self.hands().contains(&task.id) {
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.missed.store(true, Ordering::Relaxed);
            return;
        };
        self.hands().insert(task.id);
        let (running, id) = (self.clone(), task.id);
        // Held while spawning, so that a job that ends at once cannot
        // remove its entry before it is made.
        let mut aborts = self.lock_aborts();
        let abort = jobs.spawn(async move {
            running.work(task).await;
            running.lock_aborts().remove(&id);
            drop(permit);
        });
        aborts.insert(id, abort);
    }

    fn lock_aborts(&self) -> std::sync::MutexGuard<'_, HashMap<i64, AbortHandle>> {
        self.aborts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the handler of `task` if it runs here, and reports the task
    /// failed with [`STOPPED_ON_REQUEST`] (the orchestrator does not retry it).
    fn stop_on_request(&self, task: &Task) {
        let Some(abort) = self.lock_aborts().remove(&task.id) else {
            return;
        };
        abort.abort();
        self.hands().remove(&task.id);
        let (running, id, attempt) = (self.clone(), task.id, task.attempt);
        let reporting = tokio::spawn(async move {
            let update = StatusUpdate::failed(attempt, STOPPED_ON_REQUEST);
            // A handler that finished first has already reported: 409, nothing to do.
            if running.client.update_status(id, &update).await.is_ok() {
                running.count(|r| r.stopped_on_request += 1);
            }
        });
        self.stop_reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reporting);
    }

    fn hands(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.in_hand.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, outcome: impl FnOnce(&mut WorkerReport)) {
        outcome(&mut self.report.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Starts, runs and reports one task. The task run is the one the
    /// orchestrator returns on start, not the notice that announced it.
    async fn work(&self, notice: Task) {
        let (id, attempt) = (notice.id, notice.attempt);
        let task = match self.report(id, &StatusUpdate::started(attempt)).await {
            Ok(record) => record.task,
            Err(err) => {
                // A notice that arrives after the task moved on is refused with 409: expected.
                if err.status() != Some(409) {
                    eprintln!("orchestrator-client: could not start task {id}: {err}");
                }
                self.hands().remove(&id);
                return;
            }
        };
        let every = self.progress_every_for(&task);
        let _progress = AbortOnDrop(tokio::spawn(keep_reporting_progress(
            self.client.clone(),
            id,
            attempt,
            every,
        )));
        let update = match self.run_handler(task).await {
            Ok(result) => StatusUpdate::completed(attempt, result),
            Err(message) => StatusUpdate::failed(attempt, message),
        };
        let completed = update.status == TaskStatus::Completed;
        match self.report(id, &update).await {
            Ok(_) if completed => self.count(|r| r.completed += 1),
            Ok(_) => self.count(|r| r.failed += 1),
            Err(err) => eprintln!("orchestrator-client: could not report task {id}: {err}"),
        }
        self.hands().remove(&id);
    }

    /// How often to report progress on `task`: the worker's interval, or a
    /// third of the task's own timeout when that is shorter.
    fn progress_every_for(&self, task: &Task) -> Duration {
        match task.timeout_seconds.filter(|t| *t > 0) {
            Some(timeout) => self
                .progress_every
                .min(Duration::from_secs(u64::from(timeout)) / 3)
                .max(Duration::from_millis(100)),
            None => self.progress_every,
        }
    }

    /// Sends a report, and sends it again while its outcome is unknown (no
    /// answer, or a 5xx): the orchestrator answers a repeated report with
    /// the task as it is, and never applies it twice.
    async fn report(&self, id: i64, update: &StatusUpdate) -> Result<TaskRecord, ClientError> {
        let mut wait = Duration::from_millis(200);
        for _ in 1..REPORT_TRIES {
            match self.client.update_status(id, update).await {
                Err(err) if err.outcome_unknown() => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                answered => return answered,
            }
        }
        self.client.update_status(id, update).await
    }

    /// The handler's outcome; a panic is a failure with its message.
    async fn run_handler(&self, task: Task) -> HandlerResult {
        let capability = task.required_capability.as_ref().map(|c| c.as_str().to_owned());
        let handler = capability
            .as_deref()
            .and_then(|c| self.handlers.get(c))
            .or_else(|| {
                (self.handlers.len() == 1)
                    .then(|| self.handlers.values().next())
                    .flatten()
            })
            .cloned()
            .ok_or_else(|| format!("this worker has no handler for {capability:?}"))?;
        match tokio::spawn(handler(task)).await {
            Ok(outcome) => outcome,
            Err(err) if err.is_panic() => Err(format!(
                "the handler panicked: {}",
                panic_message(err.into_panic())
            )),
            Err(err) => Err(format!("the handler was stopped: {err}")),
        }
    }

    /// Lets running handlers finish within `grace`, then hands back the rest.
    async fn wind_down(&self, mut jobs: JoinSet<()>, grace: Duration) {
        let stopping: Vec<_> = self
            .stop_reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for report in stopping {
            let _ = report.await;
        }
        let finished = tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} }).await;
        if finished.is_ok() {
            return;
        }
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}
        let left: Vec<i64> = self.hands().drain().collect();
        for id in left {
            let Ok(record) = self.client.get_task(id).await else {
                continue;
            };
            let update = StatusUpdate::failed(record.task.attempt, HANDED_BACK);
            if self.client.update_status(id, &update).await.is_ok() {
                self.count(|r| r.handed_back += 1);
            }
        }
    }
}

/// Times a report is sent before its error is taken as the answer (about
/// 20 s of waiting in all).
const REPORT_TRIES: u32 = 8;

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            status,
            code: "c".into(),
            message: "m".into(),
            details: Value::Null,
        }
    }

    #[test]
    fn only_a_report_without_a_telling_answer_is_sent_again() {
        let lost = ClientError::Transport {
            url: "u".into(),
            message: "connection reset".into(),
        };
        assert!(lost.outcome_unknown());
        assert!(api(503).outcome_unknown() && api(502).outcome_unknown());
        for refused in [409, 403, 404, 422] {
            assert!(!api(refused).outcome_unknown(), "{refused} is an answer");
        }
    }
}
