//! The use cases against the in-memory adapters, and against mocks where a
//! store failure must be shown.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{MovableClock, memory_ports};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_app::tasks::StatusChange;
use orchestrator_app::{AppError, DropletService, Ports, Router, TaskService};
use orchestrator_domain::{
    Caller, DomainEvent, DropletStatus, HeartbeatReport, Permission, Permissions, RegistrationDraft, Task,
    TaskDraft, TaskStatus,
};
use orchestrator_ports::{Clock, MockDropletStore, MockEventBus, MockTaskStore, StoreError, TaskFilter};
use orchestrator_testkit::fixtures::at;

struct FixedClock(DateTime<Utc>);
impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

struct World {
    ports: Ports,
    tasks: TaskService,
    droplets: DropletService,
    router: Arc<Router>,
}

fn world() -> World {
    let ports = memory_ports(FixedClock(at(0)));
    World {
        tasks: TaskService::new(ports.clone()),
        droplets: DropletService::new(ports.clone()),
        router: Router::new(ports.clone()),
        ports,
    }
}

fn caller(subject: &str, permissions: &[Permission], droplet_id: Option<i64>) -> Caller {
    Caller {
        subject: subject.into(),
        permissions: Permissions::new(permissions.iter().copied()),
        droplet_id,
    }
}

fn admin() -> Caller {
    caller("admin", &[Permission::Admin], None)
}

fn writer(name: &str) -> Caller {
    caller(name, &[Permission::Write], None)
}

fn droplet(id: i64) -> Caller {
    caller(&format!("droplet-{id}"), &[Permission::Write], Some(id))
}

fn draft(priority: i64, capability: Option<&str>) -> TaskDraft {
    TaskDraft {
        task_type: "verify".into(),
        title: Some(format!("p{priority}")),
        priority: Some(priority),
        required_capability: capability.map(str::to_owned),
        ..TaskDraft::default()
    }
}

fn registration(id: i64, caps: &[&str], capacity: i64) -> RegistrationDraft {
    RegistrationDraft {
        droplet_id: id,
        name: format!("droplet {id}"),
        endpoint: format!("http://droplet-{id}.mesh:9"),
        capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
        max_concurrent_tasks: Some(capacity),
        ..RegistrationDraft::default()
    }
}

impl World {
    async fn register(&self, id: i64, caps: &[&str], capacity: i64) {
        self.droplets
            .register(&droplet(id), registration(id, caps, capacity))
            .await
            .expect("register");
    }

    async fn submit(&self, priority: i64, capability: Option<&str>) -> Task {
        self.tasks
            .create(&writer("alice"), draft(priority, capability))
            .await
            .expect("create")
    }

    async fn task(&self, id: i64) -> Task {
        self.tasks.get(&admin(), id).await.expect("get").view.task
    }

    async fn set(&self, who: &Caller, id: i64, status: TaskStatus) -> Result<Task, AppError> {
        let change = StatusChange {
            status,
            result: None,
            error_message: None,
            attempt: None,
        };
        self.tasks.update_status(who, id, change).await.map(|v| v.task)
    }
}

#[tokio::test]
async fn creating_needs_write_and_publishes_the_event() {
    let w = world();
    let mut events = w.ports.events.subscribe();
    let refused = w
        .tasks
        .create(&caller("reader", &[Permission::Read], None), draft(5, None))
        .await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");
    let task = w.submit(5, None).await;
    assert_eq!(task.created_by.as_deref(), Some("alice"));
    let event = events.next().await.expect("event");
    assert_eq!(event, DomainEvent::TaskCreated(task));
}

#[tokio::test]
async fn invalid_drafts_are_validation_errors() {
    let w = world();
    let mut bad = draft(0, None);
    bad.title = Some(String::new());
    let err = w.tasks.create(&writer("alice"), bad).await.expect_err("invalid");
    assert!(
        matches!(err, AppError::Validation(ref v) if v.field == "title" || v.field == "priority"),
        "{err:?}"
    );
}

#[tokio::test]
async fn list_checks_limit_and_priority_band() {
    let w = world();
    w.submit(5, None).await;
    let over = TaskFilter {
        limit: 501,
        ..TaskFilter::default()
    };
    assert!(matches!(
        w.tasks.list(&admin(), over).await,
        Err(AppError::Validation(_))
    ));
    let inverted = TaskFilter {
        limit: 10,
        priority_min: Some(orchestrator_testkit::fixtures::priority(8)),
        priority_max: Some(orchestrator_testkit::fixtures::priority(2)),
        ..TaskFilter::default()
    };
    assert!(matches!(
        w.tasks.list(&admin(), inverted).await,
        Err(AppError::Validation(_))
    ));
    let page = w
        .tasks
        .list(
            &admin(),
            TaskFilter {
                limit: 10,
                ..TaskFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!((page.total, page.has_more()), (1, false));
}

#[tokio::test]
async fn the_router_assigns_and_the_droplet_reports() {
    let w = world();
    w.register(8, &["verify"], 5).await;
    let task = w.submit(3, Some("verify")).await;
    assert_eq!(w.router.route_pending().await.expect("route"), 1);
    let assigned = w.tasks.get(&admin(), task.id).await.expect("get");
    assert_eq!(assigned.view.task.assigned_droplet_id, Some(8));
    assert_eq!(assigned.view.assigned_droplet_name.as_deref(), Some("droplet 8"));

    let stranger = w.set(&droplet(9), task.id, TaskStatus::InProgress).await;
    assert!(matches!(stranger, Err(AppError::Forbidden(_))), "{stranger:?}");
    w.set(&droplet(8), task.id, TaskStatus::InProgress)
        .await
        .expect("start");
    // The same report again (its answer lost, say) is answered, not applied twice.
    let repeated = w.set(&droplet(8), task.id, TaskStatus::InProgress).await;
    assert_eq!(repeated.map(|t| t.status).ok(), Some(TaskStatus::InProgress));
    let skip = w.set(&admin(), task.id, TaskStatus::InProgress).await;
    assert!(
        matches!(
            skip,
            Err(AppError::InvalidTransition {
                current: TaskStatus::InProgress,
                ..
            })
        ),
        "{skip:?}"
    );
    let done = w
        .set(&droplet(8), task.id, TaskStatus::Completed)
        .await
        .expect("complete");
    assert_eq!(done.status, TaskStatus::Completed);
    let history = w.tasks.get(&admin(), task.id).await.expect("get").history;
    let by: Vec<_> = history
        .iter()
        .map(|h| h.changed_by.clone().unwrap_or_default())
        .collect();
    assert_eq!(by, vec!["alice", "system:router", "droplet-8", "droplet-8"]);
}

#[tokio::test]
async fn a_droplet_cannot_move_a_task_to_pending_or_assigned() {
    let w = world();
    w.register(8, &[], 5).await;
    let task = w.submit(5, None).await;
    w.router.route_pending().await.expect("route");
    for target in [TaskStatus::Pending, TaskStatus::Assigned] {
        let refused = w.set(&droplet(8), task.id, target).await;
        assert!(
            matches!(refused, Err(AppError::InvalidTransition { .. })),
            "{target}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn only_creator_or_admin_cancels_and_not_once_started() {
    let w = world();
    let task = w.submit(5, None).await;
    let bob = w.tasks.cancel(&writer("bob"), task.id).await;
    assert!(matches!(bob, Err(AppError::Forbidden(_))), "{bob:?}");
    let cancelled = w
        .tasks
        .cancel(&writer("alice"), task.id)
        .await
        .expect("creator cancels");
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    let again = w.tasks.cancel(&admin(), task.id).await;
    assert!(matches!(
        again,
        Err(AppError::InvalidTransition {
            current: TaskStatus::Cancelled,
            ..
        })
    ));

    w.register(8, &[], 5).await;
    let running = w.submit(5, None).await;
    w.router.route_pending().await.expect("route");
    w.set(&droplet(8), running.id, TaskStatus::InProgress)
        .await
        .expect("start");
    let late = w.tasks.cancel(&admin(), running.id).await;
    assert!(
        matches!(
            late,
            Err(AppError::InvalidTransition {
                current: TaskStatus::InProgress,
                ..
            })
        ),
        "{late:?}"
    );
}

#[tokio::test]
async fn routing_prefers_priority_then_age_and_respects_capacity() {
    let w = world();
    let low = w.submit(9, None).await;
    let high = w.submit(1, None).await;
    w.register(8, &[], 1).await;
    assert_eq!(
        w.router.route_pending().await.expect("route"),
        1,
        "capacity 1 takes one task"
    );
    assert_eq!(w.task(high.id).await.status, TaskStatus::Assigned);
    assert_eq!(w.task(low.id).await.status, TaskStatus::Pending);
}

#[tokio::test]
async fn routing_spreads_load_and_matches_capabilities() {
    let w = world();
    w.register(1, &["build"], 10).await;
    w.register(2, &["build", "verify"], 10).await;
    let verify = w.submit(5, Some("verify")).await;
    let builds = [w.submit(5, Some("build")).await, w.submit(5, Some("build")).await];
    let nobody = w.submit(1, Some("deploy")).await;
    assert_eq!(w.router.route_pending().await.expect("route"), 3);
    assert_eq!(w.task(verify.id).await.assigned_droplet_id, Some(2));
    assert_eq!(
        w.task(builds[0].id).await.assigned_droplet_id,
        Some(1),
        "droplet 2 already holds one"
    );
    assert_eq!(
        w.task(builds[1].id).await.assigned_droplet_id,
        Some(1),
        "tie on load: 1 idle longer than 2"
    );
    assert_eq!(
        w.task(nobody.id).await.status,
        TaskStatus::Pending,
        "no droplet can deploy"
    );
}

#[tokio::test]
async fn unroutable_tasks_do_not_block_routable_ones() {
    let w = world();
    for _ in 0..150 {
        w.submit(1, Some("gpu")).await;
    }
    let cpu = w.submit(9, Some("cpu")).await;
    w.register(8, &["cpu"], 5).await;
    assert_eq!(w.router.route_pending().await.expect("route"), 1);
    assert_eq!(w.task(cpu.id).await.status, TaskStatus::Assigned);
}

#[tokio::test]
async fn a_started_router_assigns_on_events_without_waiting_for_the_sweep() {
    let w = world();
    let services = orchestrator_app::Services::default();
    w.router.start(&services);
    let task = w.submit(5, Some("late")).await;
    let mut events = w.ports.events.subscribe();
    w.register(8, &["late"], 5).await;
    let assigned = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            if let DomainEvent::TaskAssigned(t) = event {
                return t;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("assigned long before the hourly sweep");
    assert_eq!((assigned.id, assigned.assigned_droplet_id), (task.id, Some(8)));
}

#[tokio::test]
async fn droplets_act_for_themselves_and_admins_for_all() {
    let w = world();
    let other = w.droplets.register(&droplet(9), registration(8, &[], 1)).await;
    assert!(matches!(other, Err(AppError::Forbidden(_))), "{other:?}");
    let read_only = caller("droplet-8", &[Permission::Read], Some(8));
    assert!(matches!(
        w.droplets.register(&read_only, registration(8, &[], 1)).await,
        Err(AppError::Forbidden(_))
    ));
    w.droplets
        .register(&admin(), registration(8, &["a"], 1))
        .await
        .expect("admin registers");
    let again = w
        .droplets
        .register(&droplet(8), registration(8, &["b"], 1))
        .await
        .expect("re-register");
    assert_eq!(again.previous_status, Some(DropletStatus::Active));
    assert_eq!(
        w.droplets.capabilities(&admin(), 8).await.expect("caps")[0].as_str(),
        "b"
    );
    let deactivate = w.droplets.deactivate(&droplet(8), 8, false).await;
    assert!(
        matches!(deactivate, Err(AppError::Forbidden(_))),
        "only admins deactivate"
    );
}

#[tokio::test]
async fn heartbeat_revives_and_reports_the_change() {
    let w = world();
    w.register(8, &[], 1).await;
    w.ports
        .droplets
        .set_droplet_status(8, DropletStatus::Inactive, false, at(1))
        .await
        .expect("went quiet");
    let mut events = w.ports.events.subscribe();
    let change = w
        .droplets
        .heartbeat(&droplet(8), 8, HeartbeatReport::default())
        .await
        .expect("beat");
    assert_eq!(change.droplet.status, DropletStatus::Active);
    let event = events.next().await.expect("event");
    assert!(event.may_unblock_routing());
    assert_eq!(event.name(), "droplet_health_changed");
    let unknown = w
        .droplets
        .heartbeat(&admin(), 99, HeartbeatReport::default())
        .await;
    assert!(matches!(
        unknown,
        Err(AppError::NotFound {
            entity: "droplet",
            id: 99
        })
    ));
}

fn mocked(tasks: MockTaskStore, droplets: MockDropletStore) -> TaskService {
    let mut events = MockEventBus::new();
    events.expect_publish().returning(|_| ());
    TaskService::new(Ports {
        tasks: Arc::new(tasks),
        droplets: Arc::new(droplets),
        events: Arc::new(events),
        clock: Arc::new(FixedClock(at(0))),
    })
}

fn pending_task() -> Task {
    orchestrator_testkit::fixtures::new_task("verify", 5, None).into_task(
        7,
        uuid::Uuid::nil(),
        Some("alice".into()),
        at(0),
    )
}

#[tokio::test]
async fn a_lost_race_reports_the_status_that_won() {
    let mut tasks = MockTaskStore::new();
    let mut reads = vec![pending_task(), {
        let mut t = pending_task();
        t.status = TaskStatus::Assigned;
        t
    }]
    .into_iter();
    tasks
        .expect_get_task()
        .returning(move |_| Ok(reads.next().expect("two reads")));
    tasks
        .expect_apply_transition()
        .returning(|_| Err(StoreError::Conflict("moved".into())));
    let service = mocked(tasks, MockDropletStore::new());
    let err = service.cancel(&writer("alice"), 7).await.expect_err("lost");
    assert!(
        matches!(
            err,
            AppError::InvalidTransition {
                current: TaskStatus::Assigned,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unavailable_store_is_reported_as_such() {
    let mut tasks = MockTaskStore::new();
    tasks
        .expect_get_task()
        .returning(|_| Err(StoreError::Unavailable("connection refused".into())));
    let service = mocked(tasks, MockDropletStore::new());
    let err = service.get(&admin(), 7).await.expect_err("down");
    assert!(matches!(err, AppError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_router_sets_aside_a_droplet_the_store_refuses_and_tries_another() {
    use orchestrator_domain::{Droplet, DropletStatus};
    let droplet = |id: i64| Droplet {
        droplet_id: id,
        name: format!("d{id}"),
        steward: None,
        endpoint: format!("http://droplet-{id}.mesh:9"),
        capabilities: vec![],
        status: DropletStatus::Active,
        max_concurrent_tasks: 5,
        manually_deactivated: false,
        last_heartbeat: None,
        last_assigned_at: None,
        registered_at: at(id),
        updated_at: at(0),
        service_id: None,
        session_started_at: None,
    };
    let mut droplets = MockDropletStore::new();
    droplets
        .expect_list_droplets()
        .returning(move |_| Ok(vec![droplet(1), droplet(2)]));
    let mut tasks = MockTaskStore::new();
    // Claimed, refused on droplet 1, then claimed again.
    let mut claims = vec![vec![pending_task()], vec![pending_task()], vec![]].into_iter();
    tasks.expect_route_round().returning(move |_, planner| {
        let pending = claims.next().unwrap_or_default();
        let outcomes = planner
            .plan(&pending)
            .into_iter()
            .map(|t| match t.task.assigned_droplet_id {
                // Droplet 1 (idle longest, so chosen first) filled up on another replica.
                Some(1) => Err(StoreError::DropletUnavailable {
                    droplet_id: 1,
                    reason: "full".into(),
                }),
                _ => Ok(t.task),
            })
            .collect();
        Ok(orchestrator_ports::RoutedRound {
            claimed: pending.len(),
            outcomes,
        })
    });
    tasks
        .expect_active_task_counts()
        .returning(|| Ok(Default::default()));
    let mut events = MockEventBus::new();
    events.expect_publish().times(1).returning(|_| ());
    let router = Router::new(Ports {
        tasks: Arc::new(tasks),
        droplets: Arc::new(droplets),
        events: Arc::new(events),
        clock: Arc::new(FixedClock(at(10))),
    });
    assert_eq!(
        router.route_pending().await.expect("route"),
        1,
        "placed on droplet 2"
    );
}

#[tokio::test]
async fn a_paused_router_assigns_nothing_until_resumed() {
    let w = world();
    w.register(8, &[], 5).await;
    let task = w.submit(5, None).await;
    w.router.set_paused(true);
    assert_eq!(w.router.route_pending().await.expect("route"), 0);
    assert_eq!(w.task(task.id).await.status, TaskStatus::Pending);
    w.router.set_paused(false);
    assert_eq!(w.router.route_pending().await.expect("route"), 1);
}

#[tokio::test]
async fn an_idempotency_key_is_remembered_for_the_window_set() {
    use orchestrator_app::tasks::CreationRequest;
    let clock = MovableClock::at(at(0));
    let tasks =
        TaskService::new(memory_ports(clock.clone())).with_idempotency_window(Duration::from_secs(60));
    let alice = writer("alice");
    let once = |priority| tasks.create_once(&alice, CreationRequest::Task, vec![draft(priority, None)], "k");
    once(5).await.expect("created");
    assert!(matches!(once(6).await, Err(AppError::IdempotencyKeyReused(_))));
    *clock.0.lock().expect("clock") = at(61);
    let later = once(6).await.expect("the key is new again after the window");
    assert!(!later.replayed);
}

#[tokio::test]
async fn the_public_counts_read_live_work_now_and_finished_work_at_most_every_30_seconds() {
    use orchestrator_app::PublicService;
    let clock = MovableClock::at(at(0));
    let ports = memory_ports(clock.clone());
    let w = World {
        tasks: TaskService::new(ports.clone()),
        droplets: DropletService::new(ports.clone()),
        router: Router::new(ports.clone()),
        ports: ports.clone(),
    };
    let status = PublicService::new(ports);
    let first = w.submit(5, None).await;
    let before = status.public_snapshot().await.expect("counts");
    assert_eq!((before.tasks_pending, before.tasks_completed), (1, 0));
    w.tasks
        .cancel(&writer("alice"), first.id)
        .await
        .expect("cancelled");
    let failing = w.submit(5, None).await;
    w.register(4, &[], 1).await;
    w.router.route_pending().await.expect("routed");
    w.set(&droplet(4), failing.id, TaskStatus::InProgress)
        .await
        .expect("started");
    let moments_later = status.public_snapshot().await.expect("counts");
    assert_eq!(
        (
            moments_later.tasks_pending,
            moments_later.tasks_active,
            moments_later.tasks_failed
        ),
        (0, 1, 0),
        "live work now, finished work as counted before"
    );
    w.set(&droplet(4), failing.id, TaskStatus::Failed)
        .await
        .expect("failed");
    *clock.0.lock().expect("clock") = at(31);
    let later = status.public_snapshot().await.expect("counts");
    assert_eq!((later.tasks_active, later.tasks_failed), (0, 1), "counted again");
}
