//! Recovery against the in-memory adapters, on the real clock with short timeouts.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::memory_ports;

use orchestrator_app::tasks::StatusChange;
use orchestrator_app::{AppError, DropletService, Recovery, RecoverySettings, Router, TaskService};
use orchestrator_domain::{
    Caller, DropletStatus, HeartbeatReport, Permission, Permissions, RegistrationDraft, RetryPolicy, Task,
    TaskDraft, TaskStatus,
};
use orchestrator_ports::SystemClock;

const TIMEOUT: Duration = Duration::from_millis(300);

struct World {
    tasks: TaskService,
    droplets: DropletService,
    router: Arc<Router>,
    recovery: Arc<Recovery>,
}

fn world(enabled: bool) -> World {
    let ports = memory_ports(SystemClock);
    let settings = RecoverySettings {
        heartbeat_timeout: TIMEOUT,
        ack_timeout: TIMEOUT,
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(200),
        },
        enabled,
        deadline_risk_floor: Duration::from_secs(60),
        run_timeout: Duration::from_secs(3600),
        max_requeues: 5,
    };
    World {
        tasks: TaskService::new(ports.clone()),
        droplets: DropletService::new(ports.clone()),
        router: Router::new(ports.clone()),
        recovery: Recovery::new(ports, settings),
    }
}

fn droplet(id: i64) -> Caller {
    Caller {
        subject: format!("droplet-{id}"),
        permissions: Permissions::new([Permission::Write]),
        droplet_id: Some(id),
    }
}

fn admin() -> Caller {
    Caller {
        subject: "admin".into(),
        permissions: Permissions::new([Permission::Admin]),
        droplet_id: None,
    }
}

impl World {
    async fn register(&self, id: i64) {
        let draft = RegistrationDraft {
            droplet_id: id,
            name: format!("d{id}"),
            endpoint: format!("http://droplet-{id}.mesh:9"),
            capabilities: vec!["x".into()],
            max_concurrent_tasks: Some(1),
            ..RegistrationDraft::default()
        };
        self.droplets
            .register(&droplet(id), draft)
            .await
            .expect("register");
    }

    async fn beat(&self, id: i64) {
        self.droplets
            .heartbeat(&droplet(id), id, HeartbeatReport::default())
            .await
            .expect("beat");
    }

    async fn submit(&self, deadline_in: Option<chrono::Duration>) -> Task {
        let draft = TaskDraft {
            task_type: "t".into(),
            title: Some("t".into()),
            required_capability: Some("x".into()),
            max_retries: Some(2),
            deadline: deadline_in.map(|d| chrono::Utc::now() + d),
            ..TaskDraft::default()
        };
        self.tasks.create(&admin(), draft).await.expect("create")
    }

    async fn task(&self, id: i64) -> Task {
        self.tasks.get(&admin(), id).await.expect("get").view.task
    }

    /// Routes until the task is assigned; a task in its backoff is not.
    async fn route_until_assigned(&self, id: i64) -> Task {
        self.router.route_pending().await.expect("route");
        self.wait_for_routed(id).await
    }

    async fn wait_for_routed(&self, id: i64) -> Task {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let task = self.task(id).await;
            if task.status == TaskStatus::Assigned {
                return task;
            }
            assert!(tokio::time::Instant::now() < deadline, "never routed: {task:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.router.route_pending().await.expect("route");
        }
    }

    async fn wait_for(&self, id: i64, status: TaskStatus) -> Task {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let task = self.task(id).await;
            if task.status == status {
                return task;
            }
            assert!(tokio::time::Instant::now() < deadline, "not {status}: {task:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// When the task last failed, and when recovery then sent it back to pending.
    async fn failed_and_retried_at(
        &self,
        id: i64,
    ) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
        let history = self.tasks.get(&admin(), id).await.expect("get").history;
        let last = |status: TaskStatus| {
            history
                .iter()
                .rev()
                .find(|h| h.to_status == status)
                .map(|h| h.changed_at)
                .expect("in the history")
        };
        (last(TaskStatus::Failed), last(TaskStatus::Pending))
    }

    async fn report(&self, by: i64, id: i64, status: TaskStatus) -> Result<Task, AppError> {
        let change = StatusChange {
            status,
            result: None,
            error_message: None,
            attempt: None,
        };
        self.tasks
            .update_status(&droplet(by), id, change)
            .await
            .map(|v| v.task)
    }
}

#[tokio::test]
async fn a_silent_droplets_work_moves_to_another_and_its_late_report_is_refused() {
    let w = world(true);
    w.register(1).await;
    let queued = w.submit(None).await;
    let running = w.submit(None).await;
    w.router.route_pending().await.expect("route");
    w.register(2).await;
    w.router.route_pending().await.expect("route");
    let on_one = if w.task(queued.id).await.assigned_droplet_id == Some(1) {
        queued.id
    } else {
        running.id
    };
    let on_two = if on_one == queued.id {
        running.id
    } else {
        queued.id
    };
    w.report(2, on_two, TaskStatus::InProgress)
        .await
        .expect("2 starts");

    // Droplet 1 stops beating; droplet 2 keeps beating.
    tokio::time::sleep(TIMEOUT + Duration::from_millis(100)).await;
    w.beat(2).await;
    let report = w.recovery.run_pass().await.expect("pass");
    assert_eq!(report.droplets_marked_inactive, 1);
    assert_eq!(
        w.droplets.get(&admin(), 1).await.expect("get").status,
        DropletStatus::Inactive
    );
    let requeued = w.task(on_one).await;
    assert_eq!(
        (requeued.status, requeued.assigned_droplet_id),
        (TaskStatus::Pending, None)
    );
    assert_eq!(
        w.task(on_two).await.status,
        TaskStatus::InProgress,
        "droplet 2 is alive"
    );

    // Droplet 2 finishes; the requeued task goes to it.
    w.report(2, on_two, TaskStatus::Completed)
        .await
        .expect("2 completes");
    w.router.route_pending().await.expect("route");
    assert_eq!(w.task(on_one).await.assigned_droplet_id, Some(2));
    let late = w.report(1, on_one, TaskStatus::InProgress).await;
    assert!(
        matches!(late, Err(AppError::StaleAttempt { attempt: 2, .. })),
        "409 for a taken task: {late:?}"
    );
    let stranger = w.report(3, on_one, TaskStatus::InProgress).await;
    assert!(
        matches!(stranger, Err(AppError::Forbidden(_))),
        "403 for one that never had it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_of_a_dead_droplet_fails_and_is_retried_at_once() {
    let w = world(true);
    // Recovery's own failure event must not earn the task a backoff.
    let services = orchestrator_app::Services::default();
    w.recovery.start(&services);
    w.register(1).await;
    let task = w.submit(None).await;
    w.router.route_pending().await.expect("route");
    w.report(1, task.id, TaskStatus::InProgress).await.expect("start");
    tokio::time::sleep(TIMEOUT + Duration::from_millis(100)).await;
    w.recovery.run_pass().await.expect("pass");
    let retried = w.task(task.id).await;
    assert_eq!((retried.status, retried.retry_count), (TaskStatus::Pending, 1));
    let retry_after = retried.retry_after.expect("routable again");
    assert!(
        retry_after <= chrono::Utc::now(),
        "a dead droplet's task is rerouted without backoff"
    );
    let history = w.tasks.get(&admin(), task.id).await.expect("get").history;
    let moves: Vec<(TaskStatus, Option<String>)> = history
        .iter()
        .map(|h| (h.to_status, h.changed_by.clone()))
        .collect();
    assert_eq!(moves[3], (TaskStatus::Failed, Some("system:recovery".into())));
    assert_eq!(moves[4], (TaskStatus::Pending, Some("system:recovery".into())));
}

#[tokio::test]
async fn an_assignment_not_started_in_time_goes_back_to_pending() {
    let w = world(true);
    w.register(1).await;
    let task = w.submit(None).await;
    w.router.route_pending().await.expect("route");
    w.beat(1).await;
    assert_eq!(w.recovery.recover_tasks().await.expect("pass"), 0, "not yet");
    tokio::time::sleep(TIMEOUT + Duration::from_millis(100)).await;
    w.beat(1).await;
    assert_eq!(w.recovery.recover_tasks().await.expect("pass"), 1);
    assert_eq!(w.task(task.id).await.status, TaskStatus::Pending);
}

#[tokio::test]
async fn a_passed_deadline_fails_the_task_without_retry() {
    let w = world(true);
    let task = w.submit(Some(chrono::Duration::milliseconds(200))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.recovery.run_pass().await.expect("pass");
    let failed = w.task(task.id).await;
    assert_eq!((failed.status, failed.retry_count), (TaskStatus::Failed, 0));
    assert!(failed.error_message.is_some_and(|m| m.contains("deadline")));
    w.recovery.run_pass().await.expect("pass");
    assert_eq!(
        w.task(task.id).await.status,
        TaskStatus::Failed,
        "no retry after a deadline"
    );
}

#[tokio::test]
async fn a_failure_reported_by_a_droplet_is_retried_after_a_backoff_until_the_budget_is_spent() {
    let w = world(true);
    let services = orchestrator_app::Services::default();
    w.recovery.start(&services);
    w.register(1).await;
    let task = w.submit(None).await;
    // Retry n waits between half and all of min(200 ms, 100 ms · 2ⁿ).
    let backoffs = [(50, 100), (100, 200)];
    for attempt in 1..=3 {
        let held = w.route_until_assigned(task.id).await;
        w.report(1, task.id, TaskStatus::InProgress).await.expect("start");
        w.report(1, task.id, TaskStatus::Failed).await.expect("fail");
        if attempt == 3 {
            break;
        }
        let retried = w.wait_for(task.id, TaskStatus::Pending).await;
        let (shortest, longest) = backoffs[attempt - 1];
        let (failed_at, retried_at) = w.failed_and_retried_at(task.id).await;
        let retry_after = retried.retry_after.expect("a backoff");
        assert!(
            retry_after - failed_at >= chrono::Duration::milliseconds(shortest)
                && retry_after - retried_at <= chrono::Duration::milliseconds(longest),
            "retry {attempt}: failed at {failed_at}, retried at {retried_at}, routable at {retry_after}"
        );
        let again = w.route_until_assigned(task.id).await;
        assert!(
            again.assigned_at.is_some_and(|at| at >= retry_after),
            "routed before its backoff ended: {again:?}"
        );
        assert!(again.attempt > held.attempt);
    }
    let spent = w.wait_for(task.id, TaskStatus::Failed).await;
    assert_eq!(spent.retry_count, 2, "two retries, then it stays failed");
    assert_eq!(
        w.router.route_pending().await.expect("route"),
        0,
        "nothing left to route"
    );
    assert_eq!(w.task(task.id).await.status, TaskStatus::Failed);
}

#[tokio::test]
async fn with_recovery_disabled_tasks_stay_where_they_are() {
    let w = world(false);
    w.register(1).await;
    let task = w.submit(None).await;
    w.router.route_pending().await.expect("route");
    tokio::time::sleep(TIMEOUT + Duration::from_millis(100)).await;
    let report = w.recovery.run_pass().await.expect("pass");
    assert_eq!((report.droplets_marked_inactive, report.tasks_moved), (1, 0));
    assert_eq!(w.task(task.id).await.status, TaskStatus::Assigned);
}
