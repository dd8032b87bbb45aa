//! The loader and what it sees: tasks submitted at a steady rate through
//! `POST /tasks`, each timed from its intended send time (so that a slow
//! server cannot hide its delay), and their completions read from
//! `/ws/tasks`. Latencies are kept per window, a window being the time
//! between two rows of the report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_bench::latency::Latencies;
use orchestrator_client::{Client, FeedFilter, FeedKind};
use orchestrator_domain::TaskDraft;
use tokio::task::JoinSet;

use crate::CAPABILITY;

/// What happened since the last row.
#[derive(Debug, Default)]
pub struct Window {
    pub submitted: u64,
    pub submit_errors: u64,
    pub completed: u64,
    /// `task_failed` events: failures (a retry may follow).
    pub failed: u64,
    /// Submit→completed of the tasks completed in the window, in ms.
    pub latencies: Latencies,
}

/// When a task was (meant to be) sent and completed, in Unix seconds,
/// as far as known: the completion may come before the answer to the
/// submission.
#[derive(Debug, Default, Clone, Copy)]
struct Ends {
    sent: Option<f64>,
    completed: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    /// The tasks of which one end is known yet.
    open: HashMap<i64, Ends>,
    window: Window,
}

impl State {
    /// Notes one end of task `id`; with both known, its latency.
    fn note(&mut self, id: i64, end: impl FnOnce(&mut Ends)) {
        let ends = self.open.entry(id).or_default();
        end(ends);
        if let Ends {
            sent: Some(sent),
            completed: Some(completed),
        } = *ends
        {
            self.window.latencies.record_ms((completed - sent) * 1e3);
            self.open.remove(&id);
        }
    }
}

/// The tasks in flight and the current window; shared by the loader, the
/// feed watcher and the sampler.
#[derive(Debug, Default)]
pub struct Tracker {
    state: Mutex<State>,
    /// How often the feed was cut and followed again.
    pub feed_cuts: AtomicU64,
}

impl Tracker {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn submitted(&self, id: i64, at: f64) {
        let mut state = self.state();
        state.window.submitted += 1;
        state.note(id, |ends| ends.sent = Some(at));
    }

    fn submit_failed(&self) {
        self.state().window.submit_errors += 1;
    }

    fn completed(&self, id: i64, at: f64) {
        let mut state = self.state();
        state.window.completed += 1;
        state.note(id, |ends| ends.completed = Some(at));
    }

    fn failed(&self) {
        self.state().window.failed += 1;
    }

    /// The window so far; a new one starts.
    pub fn take_window(&self) -> Window {
        std::mem::take(&mut self.state().window)
    }

    /// Tasks submitted and not seen completed, and the age in seconds of
    /// the oldest of them.
    pub fn outstanding(&self) -> (usize, f64) {
        let state = self.state();
        let waiting: Vec<f64> = state.open.values().filter_map(|ends| ends.sent).collect();
        let oldest = waiting.iter().copied().fold(f64::INFINITY, f64::min);
        let age = if oldest.is_finite() {
            epoch_seconds(SystemTime::now()) - oldest
        } else {
            0.0
        };
        (waiting.len(), age)
    }
}

fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn draft(n: u64) -> TaskDraft {
    TaskDraft {
        task_type: CAPABILITY.into(),
        title: Some(format!("soak {n}")),
        required_capability: Some(CAPABILITY.into()),
        ..TaskDraft::default()
    }
}

/// Submits `rate` tasks a second, each at its intended time and without
/// waiting for the one before, until aborted (with the submissions under way).
pub async fn submit(client: Client, rate: u32, tracker: std::sync::Arc<Tracker>) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let (start, wall) = (tokio::time::Instant::now(), SystemTime::now());
    let mut under_way = JoinSet::new();
    for n in 0_u64.. {
        let offset = interval.mul_f64(n as f64);
        tokio::time::sleep_until(start + offset).await;
        while under_way.try_join_next().is_some() {}
        let (client, tracker) = (client.clone(), tracker.clone());
        let intended = epoch_seconds(wall + offset);
        under_way.spawn(async move {
            match client.create_task(&draft(n)).await {
                Ok(created) => tracker.submitted(created.task_id, intended),
                Err(err) => {
                    tracker.submit_failed();
                    eprintln!("soak: POST /tasks failed: {err}");
                }
            }
        });
    }
}

/// Follows `/ws/tasks` for the soak's tasks, recording completions and
/// failures, following it again whenever it is cut, until aborted.
pub async fn watch(client: Client, tracker: std::sync::Arc<Tracker>) {
    let filter = FeedFilter {
        capability: Some(CAPABILITY.into()),
        ..FeedFilter::default()
    };
    loop {
        match client.subscribe(FeedKind::Tasks, &filter).await {
            Ok(mut feed) => {
                while let Some(Ok(event)) = feed.next().await {
                    match event.event.as_str() {
                        "task_completed" => {
                            let Some(task) = event.task() else { continue };
                            let at = task.completed_at.unwrap_or(event.timestamp);
                            tracker.completed(task.id, at.timestamp_micros() as f64 / 1e6);
                        }
                        "task_failed" => tracker.failed(),
                        _ => {}
                    }
                }
            }
            Err(err) => eprintln!("soak: following /ws/tasks failed: {err}"),
        }
        tracker.feed_cuts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
