//! The deleting jobs: each run removes everything past its retention a
//! batch at a time, however many batches that takes, and a pause stops it
//! between batches.

mod support;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use support::memory_ports;

use chrono::{DateTime, Utc};
use orchestrator_app::Ports;
use orchestrator_app::jobs::{HeartbeatCleanupJob, TaskRetentionJob};
use orchestrator_app::scheduler::Job;
use orchestrator_domain::{Actor, HeartbeatReport, Role, TaskStatus, TaskUpdate};
use orchestrator_memory::MemoryStore;
use orchestrator_ports::{ChangeRecord, Clock, DropletStore, MockTaskStore, Transition};
use orchestrator_testkit::fixtures::{at, new_task, registration};
use uuid::Uuid;

const DAY: i64 = 86_400;

struct FixedClock(DateTime<Utc>);
impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Creates a task at `at(0)` and cancels it at `at(cancelled)`.
async fn cancelled(ports: &Ports, cancelled: i64) {
    let task = ports
        .tasks
        .create_task(
            new_task("t", 5, None),
            Uuid::new_v4(),
            ChangeRecord::default(),
            at(0),
        )
        .await
        .expect("create");
    let creator = Actor::from_roles(&[Role::Creator]);
    let transition = Transition {
        expected_status: task.status,
        expected_droplet: None,
        expected_attempt: task.attempt,
        task: task
            .apply(TaskUpdate::Cancel, creator, at(cancelled))
            .expect("cancel"),
        record: ChangeRecord::default(),
    };
    ports.tasks.apply_transition(transition).await.expect("cancelled");
}

async fn count(ports: &Ports, status: TaskStatus) -> u64 {
    let counts = ports.tasks.count_tasks_by_status().await.expect("counts");
    counts.get(&status).copied().unwrap_or(0)
}

#[tokio::test]
async fn task_retention_deletes_every_task_past_the_retention_however_many_batches() {
    let ports = memory_ports(FixedClock(at(40 * DAY)));
    for _ in 0..25 {
        cancelled(&ports, 1).await;
    }
    for _ in 0..3 {
        cancelled(&ports, 20 * DAY).await;
    }
    ports
        .tasks
        .create_task(
            new_task("t", 5, None),
            Uuid::new_v4(),
            ChangeRecord::default(),
            at(0),
        )
        .await
        .expect("pending");
    let job = TaskRetentionJob::new(&ports, Duration::from_secs(30 * 86_400)).with_batch(2);
    job.run().await.expect("runs");
    assert_eq!(
        count(&ports, TaskStatus::Cancelled).await,
        3,
        "all 25 old ones went in 13 batches of 2; the recent ones stay"
    );
    assert_eq!(
        count(&ports, TaskStatus::Pending).await,
        1,
        "unfinished work stays"
    );
}

#[tokio::test]
async fn a_paused_retention_job_stops_after_the_batch_in_flight() {
    let job_slot: Arc<OnceLock<Weak<TaskRetentionJob>>> = Arc::default();
    let mut store = MockTaskStore::new();
    let mut calls = 0;
    let slot = job_slot.clone();
    store
        .expect_delete_finished_tasks()
        .times(3)
        .returning(move |_, batch| {
            calls += 1;
            if calls == 3
                && let Some(job) = slot.get().and_then(Weak::upgrade)
            {
                job.set_paused(true);
            }
            Ok(u64::from(batch))
        });
    let mut ports = memory_ports(FixedClock(at(40 * DAY)));
    ports.tasks = Arc::new(store);
    let job = Arc::new(TaskRetentionJob::new(&ports, Duration::from_secs(86_400)).with_batch(10));
    job_slot.set(Arc::downgrade(&job)).expect("set once");
    job.run().await.expect("runs");
    job.quiesce().await;
}

#[tokio::test]
async fn heartbeat_cleanup_deletes_every_old_row_however_many_batches() {
    let store = Arc::new(MemoryStore::new());
    store
        .register_droplet(registration(1, &[]), at(0))
        .await
        .expect("register");
    for secs in 1..=250 {
        store
            .record_heartbeat(1, HeartbeatReport::default(), at(secs), Duration::ZERO)
            .await
            .expect("old beat");
    }
    store
        .record_heartbeat(1, HeartbeatReport::default(), Utc::now(), Duration::ZERO)
        .await
        .expect("recent beat");
    let week = Duration::from_secs(7 * 86_400);
    let job = HeartbeatCleanupJob::new(store.clone(), week).with_batch(2);
    job.run().await.expect("runs");
    assert_eq!(
        store.heartbeat_count(1),
        1,
        "125 batches of 2 in one run, more than any cap of 100; the recent row stays"
    );
}
