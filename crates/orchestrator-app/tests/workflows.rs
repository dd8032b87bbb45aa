//! Workflows' use cases over the in-memory store: a dependant waits with
//! its reason, the settling service releases it when its dependency ends
//! (and the sweep when no event said so), and cancelling a workflow stops
//! what has not finished.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::StreamExt;
use orchestrator_app::tasks::PendingReason;
use orchestrator_app::{AppError, Services, TaskService, WorkflowService};
use orchestrator_domain::{
    Actor, Caller, DomainEvent, Permission, Permissions, Role, Task, TaskStatus, TaskUpdate, WorkflowDraft,
    WorkflowState, WorkflowTaskDraft,
};
use orchestrator_memory::MemoryStore;
use orchestrator_ports::{DropletStore, TaskStore, Transition};
use orchestrator_testkit::fixtures::registration;
use serde_json::json;
use support::MovableClock;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time")
}

fn caller(subject: &str, permission: Permission) -> Caller {
    Caller {
        subject: subject.into(),
        permissions: Permissions::new([permission]),
        droplet_id: None,
    }
}

fn writer() -> Caller {
    caller("alice", Permission::Write)
}

/// `fetch`, then `report` with its results.
fn two_steps() -> WorkflowDraft {
    let tasks = [
        json!({ "key": "fetch", "task_type": "fetch" }),
        json!({ "key": "report", "task_type": "report", "depends_on": ["fetch"] }),
    ];
    WorkflowDraft {
        name: Some("daily".into()),
        tasks: tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| WorkflowTaskDraft::from_json(t, &format!("tasks[{i}]")).expect("a task"))
            .collect(),
    }
}

struct World {
    clock: MovableClock,
    store: Arc<MemoryStore>,
    ports: orchestrator_app::Ports,
    tasks: TaskService,
    workflows: WorkflowService,
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = MovableClock::at(start());
    let ports = support::memory_ports_over(store.clone(), clock.clone());
    store
        .register_droplet(registration(8, &[]), start())
        .await
        .expect("register");
    let tasks = TaskService::new(ports.clone()).with_workflows(store.clone());
    let workflows = WorkflowService::new(ports.clone(), store.clone(), tasks.clone());
    World {
        clock,
        store,
        ports,
        tasks,
        workflows,
    }
}

/// Moves `task` by `updates` as droplet 8 would, without publishing.
async fn walk(store: &MemoryStore, task: &Task, updates: &[TaskUpdate]) -> Task {
    let mut task = task.clone();
    for update in updates {
        let actor = Actor::SYSTEM.with(Role::AssignedDroplet);
        let next = task.apply(update.clone(), actor, start()).expect("allowed");
        let transition = Transition {
            expected_status: task.status,
            expected_attempt: task.attempt,
            expected_droplet: task.assigned_droplet_id,
            task: next,
            record: Default::default(),
        };
        task = store.apply_transition(transition).await.expect("applied");
    }
    task
}

fn running() -> [TaskUpdate; 2] {
    [TaskUpdate::Assign { droplet_id: 8 }, TaskUpdate::Start]
}

#[tokio::test]
async fn a_dependant_says_what_it_waits_for_and_is_released_when_it_ends() {
    let w = world().await;
    let made = w.workflows.create(&writer(), two_steps()).await.expect("created");
    assert_eq!(made.state, WorkflowState::Running);
    let [fetch, report] = [&made.workflow.members[0].task, &made.workflow.members[1].task];
    let details = w.tasks.get(&writer(), report.id).await.expect("get");
    assert_eq!(
        details.routing,
        Some(PendingReason::WaitingFor {
            workflow_id: made.workflow.id,
            task_ids: vec![fetch.id]
        })
    );

    let services = Services::default();
    let mut events = w.ports.events.subscribe();
    w.workflows.start(&services);
    let mut ran = walk(&w.store, fetch, &running()).await;
    ran = walk(
        &w.store,
        &ran,
        &[TaskUpdate::Complete {
            result: Some(json!({ "n": 1 })),
        }],
    )
    .await;
    w.ports.events.publish(DomainEvent::TaskCompleted(ran)).await;
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if let DomainEvent::TaskReleased(task) = event {
                return task;
            }
        }
        panic!("the event stream ended")
    })
    .await
    .expect("the dependant is released on its dependency's event");
    assert_eq!(released.id, report.id);
    assert_eq!(
        released.payload["parent_results"][fetch.id.to_string()],
        json!({ "n": 1 })
    );
    let details = w.tasks.get(&writer(), report.id).await.expect("get");
    assert!(
        !matches!(details.routing, Some(PendingReason::WaitingFor { .. })),
        "{details:?}"
    );
    services.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_sweep_settles_an_end_no_event_announced() {
    let w = world().await;
    let mut draft = two_steps();
    draft.tasks[0].task.max_retries = Some(1);
    let made = w.workflows.create(&writer(), draft).await.expect("created");
    let fetch = &made.workflow.members[0].task;
    let fail = TaskUpdate::Fail { error_message: None };
    let ran = walk(&w.store, fetch, &running()).await;
    let failed = walk(&w.store, &ran, std::slice::from_ref(&fail)).await;
    assert_eq!(
        w.workflows.sweep().await.expect("sweep"),
        0,
        "a failure with retries left settles nothing"
    );

    let retry = TaskUpdate::Retry { retry_after: start() };
    let again = walk(
        &w.store,
        &failed,
        &[
            retry,
            TaskUpdate::Assign { droplet_id: 8 },
            TaskUpdate::Start,
            fail,
        ],
    )
    .await;
    assert!(!again.can_retry());
    assert_eq!(w.workflows.sweep().await.expect("sweep"), 1);
    let view = w.workflows.get(&writer(), made.workflow.id).await.expect("get");
    assert_eq!(view.workflow.members[1].task.status, TaskStatus::Cancelled);
    assert_eq!(view.state, WorkflowState::Failed);
    assert_eq!(w.workflows.sweep().await.expect("sweep"), 0, "settled once");
}

#[tokio::test]
async fn cancelling_a_workflow_stops_what_has_not_finished() {
    let w = world().await;
    let made = w.workflows.create(&writer(), two_steps()).await.expect("created");
    let fetch = &made.workflow.members[0].task;
    walk(&w.store, fetch, &running()).await;

    let stranger = caller("mallory", Permission::Write);
    let refused = w.workflows.cancel(&stranger, made.workflow.id).await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");
    let reader = caller("bob", Permission::Read);
    let refused = w.workflows.create(&reader, two_steps()).await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");

    let after = w
        .workflows
        .cancel(&writer(), made.workflow.id)
        .await
        .expect("cancelled");
    let fetch = &after.workflow.members[0].task;
    let report = &after.workflow.members[1].task;
    assert_eq!(report.status, TaskStatus::Cancelled);
    assert_eq!(fetch.status, TaskStatus::InProgress);
    assert!(
        fetch.cancel_requested_at.is_some(),
        "a running task is asked to stop"
    );
    assert_eq!(after.state, WorkflowState::Running);
    let missing = w.workflows.get(&writer(), 999).await;
    assert!(matches!(missing, Err(AppError::NotFound { .. })), "{missing:?}");
}

#[tokio::test]
async fn a_waiting_task_past_its_deadline_fails_and_its_dependants_follow() {
    use orchestrator_app::{Recovery, RecoverySettings};
    use orchestrator_domain::RetryPolicy;
    let w = world().await;
    // The stores judge deadlines by their own clock (the database's, or
    // the real one in memory): a day after this test's clock is long past.
    let deadline = (start() + chrono::Duration::days(1)).to_rfc3339();
    let tasks = [
        json!({ "key": "fetch", "task_type": "fetch" }),
        json!({ "key": "report", "task_type": "report", "depends_on": ["fetch"], "deadline": deadline }),
        json!({ "key": "notify", "task_type": "notify", "depends_on": ["report"] }),
    ];
    let draft = WorkflowDraft {
        name: None,
        tasks: tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| WorkflowTaskDraft::from_json(t, &format!("tasks[{i}]")).expect("a task"))
            .collect(),
    };
    let made = w.workflows.create(&writer(), draft).await.expect("created");
    let settings = RecoverySettings {
        heartbeat_timeout: Duration::from_secs(60),
        ack_timeout: Duration::from_secs(60),
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(200),
        },
        enabled: true,
        deadline_risk_floor: Duration::from_secs(60),
        run_timeout: Duration::from_secs(3600),
        max_requeues: 5,
    };
    Recovery::new(w.ports.clone(), settings)
        .run_pass()
        .await
        .expect("recovery");
    let report = made.workflow.members[1].task.id;
    assert_eq!(
        w.store.get_task(report).await.expect("get").status,
        TaskStatus::Failed
    );
    // Past its deadline by the use cases' clock too, the failure is final.
    w.clock.set(start() + chrono::Duration::days(2));
    assert_eq!(w.workflows.settle(&[report]).await.expect("settled"), 1);
    let view = w.workflows.get(&writer(), made.workflow.id).await.expect("get");
    assert_eq!(view.workflow.members[2].task.status, TaskStatus::Cancelled);
    assert_eq!(
        view.workflow.members[0].task.status,
        TaskStatus::Pending,
        "fetch has no deadline"
    );
}
