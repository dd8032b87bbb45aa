//! The store contract: what every `TaskStore` and `DropletStore` adapter
//! must do. Run it with [`crate::store_contract_tests!`].

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use orchestrator_domain::{
    Actor, DropletStatus, HeartbeatReport, NewTask, RecoveryReason, Role, ServiceRef, Task, TaskId,
    TaskStatus, TaskUpdate,
};
use orchestrator_ports::{
    ChangeRecord, DropletFilter, Fire, FiredTask, IdempotencyKey, OnceCreated, ProgressReport,
    RecoveryCandidate, RecoveryQuery, Report, ReportOutcome, RoutableQuery, ScheduleDefinition, StoreError,
    TaskFilter, Transition,
};
use uuid::Uuid;

use crate::Stores;
use crate::fixtures::{at, capability, new_task, priority, registration};

mod concurrency;
mod workflows;
pub use concurrency::{
    a_key_at_its_limit_holds_its_tasks_back, a_keys_limit_is_set_read_listed_and_removed,
    concurrent_assignments_never_exceed_a_keys_limit,
};
pub use workflows::{
    a_dependant_is_released_with_its_dependencies_results,
    a_failure_cancels_dependants_unless_they_run_anyway, a_workflow_is_stored_whole_and_its_dependants_wait,
    concurrent_settlings_release_once,
};

/// A sample interval that keeps every heartbeat as a row.
const EVERY_BEAT: Duration = Duration::ZERO;

fn by(who: &str) -> ChangeRecord {
    ChangeRecord {
        changed_by: Some(who.to_owned()),
        reason: Some(format!("done by {who}")),
        metadata: Some(serde_json::json!({ "who": who })),
    }
}

/// Registers droplet `id` offering `capabilities`, at second `secs`.
async fn register(
    stores: &Stores,
    id: orchestrator_domain::DropletId,
    capabilities: &[&str],
    secs: i64,
) -> orchestrator_ports::DropletChange {
    stores
        .droplets
        .register_droplet(registration(id, capabilities), at(secs))
        .await
        .expect("register")
}

async fn create(stores: &Stores, task_type: &str, prio: i64, secs: i64) -> Task {
    stores
        .tasks
        .create_task(
            new_task(task_type, prio, None),
            Uuid::new_v4(),
            by("alice"),
            at(secs),
        )
        .await
        .expect("create task")
}

/// The transition a caller would build: the domain computes the next state.
fn transition(task: &Task, update: TaskUpdate, actor: Actor, secs: i64) -> Transition {
    Transition {
        expected_status: task.status,
        expected_attempt: task.attempt,
        expected_droplet: task.assigned_droplet_id,
        task: task
            .apply(update, actor, at(secs))
            .expect("allowed by the state machine"),
        record: by("system"),
    }
}

async fn assign(stores: &Stores, task: &Task, droplet: i64, secs: i64) -> Task {
    let t = transition(
        task,
        TaskUpdate::Assign { droplet_id: droplet },
        Actor::SYSTEM,
        secs,
    );
    stores.tasks.apply_transition(t).await.expect("assign")
}

async fn start(stores: &Stores, task: &Task, secs: i64) -> Task {
    let actor = Actor::from_roles(&[Role::AssignedDroplet]);
    let t = transition(task, TaskUpdate::Start, actor, secs);
    stores.tasks.apply_transition(t).await.expect("start")
}

async fn history_statuses(stores: &Stores, id: TaskId) -> Vec<(Option<TaskStatus>, TaskStatus)> {
    let rows = stores.tasks.task_history(id).await.expect("history");
    rows.iter().map(|r| (r.from_status, r.to_status)).collect()
}

pub async fn create_task_is_pending_with_first_history_row(stores: &Stores) {
    let task = create(stores, "verify", 3, 0).await;
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!((task.retry_count, task.created_by.as_deref()), (0, Some("alice")));
    assert_eq!(stores.tasks.get_task(task.id).await.expect("get"), task);
    let history = stores.tasks.task_history(task.id).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].from_status, history[0].to_status),
        (None, TaskStatus::Pending)
    );
    assert_eq!(history[0].changed_by.as_deref(), Some("alice"));
    assert_eq!(history[0].changed_at, at(0));
    let other = create(stores, "verify", 3, 1).await;
    assert_ne!(task.id, other.id, "ids are unique");
}

pub async fn trace_ids_are_unique(stores: &Stores) {
    let trace = Uuid::new_v4();
    let first = stores
        .tasks
        .create_task(new_task("a", 5, None), trace, by("a"), at(0))
        .await;
    assert!(first.is_ok());
    let second = stores
        .tasks
        .create_task(new_task("a", 5, None), trace, by("a"), at(0))
        .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
}

pub async fn a_batch_of_creations_is_all_or_nothing(stores: &Stores) {
    let first = create(stores, "a", 5, 0).await;
    let batch = (0..3)
        .map(|n| (new_task(&format!("kind-{n}"), 5, None), Uuid::new_v4()))
        .collect();
    let created = stores
        .tasks
        .create_tasks(batch, by("bob"), at(1))
        .await
        .expect("created");
    let kinds: Vec<&str> = created.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(kinds, ["kind-0", "kind-1", "kind-2"], "in the order given");
    assert!(created.windows(2).all(|w| w[0].id < w[1].id), "{created:?}");
    for task in &created {
        assert_eq!(
            (task.status, task.created_by.as_deref()),
            (TaskStatus::Pending, Some("bob"))
        );
        assert_eq!(
            history_statuses(stores, task.id).await,
            [(None, TaskStatus::Pending)]
        );
    }
    let reused = vec![
        (new_task("fresh", 5, None), Uuid::new_v4()),
        (new_task("again", 5, None), first.trace_id),
    ];
    let refused = stores.tasks.create_tasks(reused, by("bob"), at(2)).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    let twice = Uuid::new_v4();
    let doubled = vec![(new_task("x", 5, None), twice), (new_task("y", 5, None), twice)];
    let refused = stores.tasks.create_tasks(doubled, by("bob"), at(2)).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    let all = stores
        .tasks
        .list_tasks(&TaskFilter::default())
        .await
        .expect("list");
    assert_eq!(all.total, 4, "a refused batch leaves nothing behind");
}

fn key(caller: &str, key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        caller: caller.into(),
        key: key.into(),
        fingerprint: fingerprint.into(),
    }
}

fn two_tasks() -> Vec<(orchestrator_domain::NewTask, Uuid)> {
    (0..2)
        .map(|n| (new_task(&format!("kind-{n}"), 5, None), Uuid::new_v4()))
        .collect()
}

/// Two tasks created under `key` at `now`, keys before `expired_before` expired.
async fn once(
    stores: &Stores,
    key: IdempotencyKey,
    now: DateTime<Utc>,
    expired_before: DateTime<Utc>,
) -> OnceCreated {
    let by_caller = by(&key.caller);
    stores
        .tasks
        .create_tasks_once(&key, two_tasks(), by_caller, now, expired_before)
        .await
        .expect("the store answers")
}

pub async fn an_idempotency_key_creates_once_per_caller_and_day(stores: &Stores) {
    let (old, now) = (at(0), at(100));
    let first = once(stores, key("alice", "k1", "f"), now, old).await;
    let OnceCreated::Created(made) = first else {
        panic!("a new key creates: {first:?}")
    };
    let again = once(stores, key("alice", "k1", "f"), at(101), old).await;
    let ids = |tasks: &[Task]| tasks.iter().map(|t| t.id).collect::<Vec<_>>();
    match &again {
        OnceCreated::Replayed(tasks) => assert_eq!(ids(tasks), ids(&made), "the same tasks, in order"),
        other => panic!("the same key and request replays: {other:?}"),
    }
    let other_body = once(stores, key("alice", "k1", "g"), at(101), old).await;
    assert_eq!(other_body, OnceCreated::KeyReused);
    let count = |stores: &Stores| {
        let tasks = stores.tasks.clone();
        async move {
            tasks
                .list_tasks(&TaskFilter::default())
                .await
                .expect("list")
                .total
        }
    };
    assert_eq!(count(stores).await, 2, "nothing created by a repeat");
    let bob = once(stores, key("bob", "k1", "f"), at(101), old).await;
    assert!(
        matches!(bob, OnceCreated::Created(_)),
        "a key is the caller's own: {bob:?}"
    );
    // Once the window has passed, the key is new again.
    let later = once(stores, key("alice", "k1", "g"), at(300), at(200)).await;
    assert!(matches!(later, OnceCreated::Created(_)), "{later:?}");
    assert_eq!(count(stores).await, 6);
    let deleted = stores
        .tasks
        .delete_expired_idempotency_keys(at(200))
        .await
        .expect("delete");
    assert_eq!(
        deleted, 1,
        "bob's key of t=101 is expired, alice's renewed one is not"
    );
}

pub async fn concurrent_requests_with_one_key_create_once(stores: &Stores) {
    let attempts = (0..8).map(|_| once(stores, key("alice", "race", "f"), at(10), at(0)));
    let outcomes = join_all(attempts).await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, OnceCreated::Created(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, OnceCreated::Created(_) | OnceCreated::Replayed(_))),
        "{outcomes:?}"
    );
    let all = stores
        .tasks
        .list_tasks(&TaskFilter::default())
        .await
        .expect("list");
    assert_eq!(all.total, 2);
}

pub async fn unknown_task_is_not_found(stores: &Stores) {
    let not_found = |r: &Result<_, StoreError>| matches!(r, Err(StoreError::NotFound { entity: "task", .. }));
    assert!(not_found(&stores.tasks.get_task(4242).await.map(|_| ())));
    assert!(not_found(&stores.tasks.task_history(4242).await.map(|_| ())));
    let task = create(stores, "a", 5, 0).await;
    let mut ghost = transition(&task, TaskUpdate::Cancel, Actor::from_roles(&[Role::Admin]), 1);
    ghost.task.id = 4242;
    assert!(not_found(&stores.tasks.apply_transition(ghost).await.map(|_| ())));
}

pub async fn list_filters_paginates_and_counts(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let mut ids = Vec::new();
    for (i, (kind, prio)) in [("verify", 1), ("verify", 5), ("build", 5), ("build", 9)]
        .iter()
        .enumerate()
    {
        ids.push(create(stores, kind, *prio, i as i64).await);
    }
    let assigned = assign(stores, &ids[1], 8, 10).await;

    let count = |filter: TaskFilter| async move {
        let page = stores
            .tasks
            .list_tasks(&TaskFilter { limit: 50, ..filter })
            .await
            .expect("list");
        assert_eq!(page.tasks.len() as u64, page.total);
        page.total
    };
    assert_eq!(count(TaskFilter::default()).await, 4);
    assert_eq!(
        count(TaskFilter {
            task_type: Some("verify".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(TaskFilter {
            status: Some(TaskStatus::Assigned),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(TaskFilter {
            priority_min: Some(priority(5)),
            ..Default::default()
        })
        .await,
        3
    );
    assert_eq!(
        count(TaskFilter {
            priority_max: Some(priority(5)),
            ..Default::default()
        })
        .await,
        3
    );
    let band = TaskFilter {
        priority_min: Some(priority(2)),
        priority_max: Some(priority(8)),
        ..Default::default()
    };
    assert_eq!(count(band).await, 2);
    let on_8 = TaskFilter {
        assigned_droplet_id: Some(8),
        ..Default::default()
    };
    let page = stores
        .tasks
        .list_tasks(&TaskFilter {
            limit: 50,
            ..on_8.clone()
        })
        .await
        .expect("list");
    assert_eq!(page.tasks, vec![assigned.clone()]);
    // A droplet's list holds the tasks it ended as well as those it holds.
    let held = assign(stores, &ids[3], 8, 11).await;
    let admin = Actor::from_roles(&[Role::Admin]);
    let ended = stores
        .tasks
        .apply_transition(transition(&held, TaskUpdate::Cancel, admin, 12))
        .await
        .expect("cancel");
    let page = stores
        .tasks
        .list_tasks(&TaskFilter {
            limit: 50,
            ..on_8.clone()
        })
        .await
        .expect("list");
    assert_eq!(
        (page.tasks, page.total),
        (vec![ended.clone(), assigned.clone()], 2)
    );
    for (status, task) in [(TaskStatus::Cancelled, ended), (TaskStatus::Assigned, assigned)] {
        let page = stores
            .tasks
            .list_tasks(&TaskFilter {
                limit: 50,
                status: Some(status),
                ..on_8.clone()
            })
            .await
            .expect("list");
        assert_eq!((page.tasks, page.total), (vec![task], 1), "{status}");
    }

    let page = stores
        .tasks
        .list_tasks(&TaskFilter {
            limit: 3,
            offset: 2,
            ..Default::default()
        })
        .await
        .expect("page");
    assert_eq!((page.tasks.len(), page.total), (2, 4), "offset 2 of 4 leaves 2");
}

pub async fn list_filters_by_capability_and_searches_titles_and_trace_ids(stores: &Stores) {
    let titled = |title: &str, required: Option<&str>| {
        let mut task = new_task("scan", 5, required);
        task.title = title.to_owned();
        task
    };
    let trace = Uuid::new_v4();
    let gpu = stores
        .tasks
        .create_task(
            titled("Nightly 100%_report", Some("gpu")),
            trace,
            by("alice"),
            at(0),
        )
        .await
        .expect("create");
    let plain = stores
        .tasks
        .create_task(titled("nightly backup", None), Uuid::new_v4(), by("alice"), at(1))
        .await
        .expect("create");
    let ids = |filter: TaskFilter| async move {
        let page = stores
            .tasks
            .list_tasks(&TaskFilter { limit: 50, ..filter })
            .await
            .expect("list");
        assert_eq!(page.tasks.len() as u64, page.total);
        page.tasks.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    let search = |text: &str| TaskFilter {
        search: Some(text.to_owned()),
        ..TaskFilter::default()
    };
    assert_eq!(
        ids(TaskFilter {
            required_capability: Some(capability("gpu")),
            ..TaskFilter::default()
        })
        .await,
        [gpu.id]
    );
    assert_eq!(ids(search("NIGHTLY")).await, [plain.id, gpu.id], "any case");
    assert_eq!(ids(search("100%_")).await, [gpu.id], "wildcards are text");
    assert_eq!(ids(search("0%b")).await, Vec::<i64>::new());
    assert_eq!(
        ids(search(&trace.to_string())).await,
        [gpu.id],
        "a whole trace id"
    );
}

/// Every offset page is the slice of the whole list at its offset, ties
/// in creation time included, with or without a filter, and says truly
/// whether tasks lie before and after it.
pub async fn offset_pages_are_slices_of_the_whole_list(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let mut tasks = Vec::new();
    for secs in [0, 1, 1, 1, 2, 3, 3] {
        tasks.push(create(stores, "slice", 5, secs).await);
    }
    assign(stores, &tasks[2], 8, 4).await;
    let held = assign(stores, &tasks[5], 8, 4).await;
    let admin = Actor::from_roles(&[Role::Admin]);
    stores
        .tasks
        .apply_transition(transition(&held, TaskUpdate::Cancel, admin, 5))
        .await
        .expect("cancel");
    for filter in [
        TaskFilter::default(),
        TaskFilter {
            status: Some(TaskStatus::Pending),
            ..Default::default()
        },
        TaskFilter {
            assigned_droplet_id: Some(8),
            ..Default::default()
        },
    ] {
        let whole = stores
            .tasks
            .list_tasks(&TaskFilter {
                limit: 50,
                ..filter.clone()
            })
            .await
            .expect("whole list")
            .tasks;
        for limit in 1..=3u32 {
            for offset in 0..=whole.len() + 1 {
                let page = stores
                    .tasks
                    .list_tasks(&TaskFilter {
                        limit,
                        offset: offset as u64,
                        ..filter.clone()
                    })
                    .await
                    .expect("page");
                let end = (offset + limit as usize).min(whole.len());
                let slice = whole.get(offset..end).unwrap_or_default();
                let what = format!("{filter:?} offset {offset} limit {limit}");
                assert_eq!(page.tasks, slice, "{what}");
                assert_eq!(page.more_after, end < whole.len(), "{what}");
                assert_eq!(page.more_before, offset > 0 && !whole.is_empty(), "{what}");
            }
        }
    }
}

pub async fn list_is_newest_first(stores: &Stores) {
    let older = create(stores, "a", 5, 0).await;
    let newer = create(stores, "a", 5, 5).await;
    let page = stores
        .tasks
        .list_tasks(&TaskFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    let ids: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![newer.id, older.id]);
}

pub async fn transition_applies_with_its_history_row(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "verify", 5, 0).await;
    let assigned = assign(stores, &task, 8, 1).await;
    assert_eq!(
        (assigned.status, assigned.assigned_droplet_id),
        (TaskStatus::Assigned, Some(8))
    );
    assert_eq!(stores.tasks.get_task(task.id).await.expect("get"), assigned);
    let started = start(stores, &assigned, 2).await;
    let done = transition(
        &started,
        TaskUpdate::Complete {
            result: Some(serde_json::json!({"ok": true})),
        },
        Actor::from_roles(&[Role::AssignedDroplet]),
        3,
    );
    let done = stores.tasks.apply_transition(done).await.expect("complete");
    assert_eq!(done.result, Some(serde_json::json!({"ok": true})));
    assert_eq!(
        history_statuses(stores, task.id).await,
        vec![
            (None, TaskStatus::Pending),
            (Some(TaskStatus::Pending), TaskStatus::Assigned),
            (Some(TaskStatus::Assigned), TaskStatus::InProgress),
            (Some(TaskStatus::InProgress), TaskStatus::Completed),
        ]
    );
    let last = stores
        .tasks
        .task_history(task.id)
        .await
        .expect("history")
        .pop()
        .expect("row");
    assert_eq!(
        (last.changed_by.as_deref(), last.changed_at),
        (Some("system"), at(3))
    );
    assert_eq!(last.metadata, Some(serde_json::json!({"who": "system"})));
}

fn report(task: &Task, droplet: i64, attempt: Option<u32>, update: TaskUpdate, secs: i64) -> Report {
    Report {
        task_id: task.id,
        droplet,
        attempt,
        update,
        record: by("droplet"),
        at: at(secs),
    }
}

/// The task an applied report answers, checked to come from `from` and to
/// name the droplet `droplet_name`.
fn applied(outcome: ReportOutcome, from: TaskStatus, droplet_name: &str) -> Task {
    match outcome {
        ReportOutcome::Applied {
            from: was,
            task,
            droplet_name: name,
        } => {
            assert_eq!((was, name.as_deref()), (from, Some(droplet_name)));
            task
        }
        other => panic!("not applied: {other:?}"),
    }
}

/// A report is applied, with its history row, when it stands as the task
/// is; otherwise nothing changes and the answer is the task as it is.
pub async fn a_report_applies_when_it_stands_and_answers_the_task_otherwise(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    register(stores, 9, &[], 0).await;
    let task = create(stores, "report", 5, 0).await;
    let assigned = assign(stores, &task, 8, 1).await;
    let history = history_statuses(stores, task.id).await;
    for (droplet, attempt) in [(9, None), (9, Some(1)), (8, Some(2))] {
        let outcome = stores
            .tasks
            .apply_report(report(&assigned, droplet, attempt, TaskUpdate::Start, 2))
            .await
            .expect("report");
        assert_eq!(
            outcome,
            ReportOutcome::NotApplied {
                current: Some(assigned.clone())
            },
            "droplet {droplet}, attempt {attempt:?}"
        );
    }
    assert_eq!(
        history_statuses(stores, task.id).await,
        history,
        "nothing written"
    );

    let started = applied(
        stores
            .tasks
            .apply_report(report(&assigned, 8, Some(1), TaskUpdate::Start, 2))
            .await
            .expect("start"),
        TaskStatus::Assigned,
        "droplet-8",
    );
    assert_eq!(
        (started.status, started.started_at),
        (TaskStatus::InProgress, Some(at(2)))
    );
    assert_eq!(stores.tasks.get_task(task.id).await.expect("get"), started);
    let again = stores
        .tasks
        .apply_report(report(&started, 8, Some(1), TaskUpdate::Start, 3))
        .await
        .expect("repeat");
    assert_eq!(
        again,
        ReportOutcome::NotApplied {
            current: Some(started.clone())
        }
    );
    let result = Some(serde_json::json!({"rows": 3}));
    let done = stores
        .tasks
        .apply_report(report(
            &started,
            8,
            None,
            TaskUpdate::Complete {
                result: result.clone(),
            },
            4,
        ))
        .await
        .expect("complete");
    let ReportOutcome::Applied { from, task: done, .. } = done else {
        panic!("not applied: {done:?}");
    };
    assert_eq!(
        (from, done.status, done.result.clone()),
        (TaskStatus::InProgress, TaskStatus::Completed, result)
    );
    assert_eq!(stores.tasks.get_task(task.id).await.expect("get"), done);
    let rows = stores.tasks.task_history(task.id).await.expect("history");
    let last = rows.last().expect("rows");
    assert_eq!(
        (
            last.from_status,
            last.to_status,
            last.changed_by.as_deref(),
            last.changed_at
        ),
        (
            Some(TaskStatus::InProgress),
            TaskStatus::Completed,
            Some("droplet"),
            at(4)
        )
    );
    assert_eq!(rows.len(), history.len() + 2);

    let unknown = Task { id: 987_654, ..done };
    assert!(matches!(
        stores
            .tasks
            .apply_report(report(&unknown, 8, None, TaskUpdate::Start, 5))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Reports arriving together each get their own outcome.
pub async fn reports_arriving_together_each_get_their_outcome(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    register(stores, 9, &[], 0).await;
    let mut held = Vec::new();
    for i in 0..16 {
        let task = create(stores, "report", 5, i).await;
        held.push(assign(stores, &task, 8 + i % 2, 30).await);
    }
    // Every other report names another attempt: those are not applied.
    let outcomes = join_all(held.iter().enumerate().map(|(i, task)| {
        let attempt = if i % 2 == 0 { Some(1) } else { Some(7) };
        stores
            .tasks
            .apply_report(report(task, 8 + i as i64 % 2, attempt, TaskUpdate::Start, 31))
    }))
    .await;
    for (i, (task, outcome)) in held.iter().zip(outcomes).enumerate() {
        match outcome.expect("report") {
            ReportOutcome::Applied { task: started, .. } => {
                assert!(i % 2 == 0, "task {i} applied on a wrong attempt");
                assert_eq!(started.status, TaskStatus::InProgress);
            }
            ReportOutcome::NotApplied { current } => {
                assert!(i % 2 == 1, "task {i} not applied");
                assert_eq!(current.as_ref(), Some(task));
            }
        }
    }
}

pub async fn stale_status_is_a_conflict_and_changes_nothing(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "verify", 5, 0).await;
    let cancel = transition(&task, TaskUpdate::Cancel, Actor::from_roles(&[Role::Creator]), 1);
    let assign_late = transition(&task, TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, 1);
    stores.tasks.apply_transition(cancel).await.expect("cancel first");
    let lost = stores.tasks.apply_transition(assign_late).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    let stored = stores.tasks.get_task(task.id).await.expect("get");
    assert_eq!(
        (stored.status, stored.assigned_droplet_id),
        (TaskStatus::Cancelled, None)
    );
    assert_eq!(
        history_statuses(stores, task.id).await.len(),
        2,
        "no row for the lost race"
    );
}

pub async fn wrong_droplet_is_a_conflict(stores: &Stores) {
    for id in [8, 9] {
        register(stores, id, &[], 0).await;
    }
    let task = create(stores, "verify", 5, 0).await;
    let assigned = assign(stores, &task, 8, 1).await;
    let mut as_if_on_9 = transition(
        &assigned,
        TaskUpdate::Start,
        Actor::from_roles(&[Role::AssignedDroplet]),
        2,
    );
    as_if_on_9.expected_droplet = Some(9);
    let refused = stores.tasks.apply_transition(as_if_on_9).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(
        stores.tasks.get_task(task.id).await.expect("get").status,
        TaskStatus::Assigned
    );
}

pub async fn a_report_read_before_a_reassignment_never_lands_on_the_new_attempt(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let first = assign(stores, &create(stores, "verify", 5, 0).await, 8, 1).await;
    // The droplet reads attempt 1 and builds its report…
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let stale = transition(&first, TaskUpdate::Start, droplet, 5);
    // …meanwhile the task is taken back and handed to the same droplet again.
    let requeued = stores
        .tasks
        .apply_transition(transition(&first, TaskUpdate::Requeue, Actor::SYSTEM, 2))
        .await
        .expect("requeue");
    let second = assign(stores, &requeued, 8, 3).await;
    assert_eq!((second.attempt, second.assigned_droplet_id), (2, Some(8)));
    let refused = stores.tasks.apply_transition(stale).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    let now = stores.tasks.get_task(first.id).await.expect("get");
    assert_eq!(
        (now.status, now.attempt, now.started_at),
        (TaskStatus::Assigned, 2, None)
    );
    // Built from attempt 2, the same report applies.
    start(stores, &second, 6).await;
}

/// Two changes of one running task race; exactly one is applied.
async fn race_on_a_running_task(stores: &Stores, one: TaskUpdate, other: TaskUpdate, actors: [Actor; 2]) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "verify", 5, 0).await;
    let running = start(stores, &assign(stores, &task, 8, 1).await, 2).await;
    let [first, second] = actors;
    let changes = [
        transition(&running, one, first, 3),
        transition(&running, other, second, 3),
    ];
    let outcomes = join_all(changes.into_iter().map(|t| {
        let store = stores.tasks.clone();
        tokio::spawn(async move { store.apply_transition(t).await })
    }))
    .await;
    let won = outcomes.iter().filter(|o| matches!(o, Ok(Ok(_)))).count();
    assert_eq!(won, 1, "exactly one change wins: {outcomes:?}");
    assert_eq!(
        history_statuses(stores, task.id).await.len(),
        4,
        "one history row for the winner"
    );
}

pub async fn a_completion_and_a_recovery_have_one_winner(stores: &Stores) {
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let done = TaskUpdate::Complete { result: None };
    let rescued = TaskUpdate::Fail {
        error_message: Some("droplet went silent".into()),
    };
    race_on_a_running_task(stores, done, rescued, [droplet, Actor::SYSTEM]).await;
}

pub async fn two_completions_have_one_winner(stores: &Stores) {
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let done = || TaskUpdate::Complete {
        result: Some(serde_json::json!({ "by": "one" })),
    };
    race_on_a_running_task(stores, done(), done(), [droplet, droplet]).await;
}

pub async fn concurrent_transitions_have_one_winner(stores: &Stores) {
    for id in 1..=50 {
        register(stores, id, &[], 0).await;
    }
    let task = create(stores, "verify", 5, 0).await;
    let attempts = (1..=50).map(|droplet| {
        let store = stores.tasks.clone();
        let t = transition(
            &task,
            TaskUpdate::Assign { droplet_id: droplet },
            Actor::SYSTEM,
            1,
        );
        tokio::spawn(async move { store.apply_transition(t).await })
    });
    let outcomes: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("join"))
        .collect();
    let winners: Vec<&Task> = outcomes.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one assignment wins");
    assert!(
        outcomes
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::Conflict(_))),
        "every loser gets a conflict"
    );
    let stored = stores.tasks.get_task(task.id).await.expect("get");
    assert_eq!(stored.assigned_droplet_id, winners[0].assigned_droplet_id);
    assert_eq!(
        history_statuses(stores, task.id).await.len(),
        2,
        "one history row per transition"
    );
}

/// Claims every pending task needing no capability or one of `caps`.
fn claim_query(caps: &[&str], unconstrained: bool, limit: u32) -> RoutableQuery {
    RoutableQuery {
        capabilities: caps.iter().map(|c| capability(c)).collect(),
        include_unconstrained: unconstrained,
        limit,
        lease: Duration::from_secs(30),
    }
}

/// The tasks a claim takes, in its order, which every claim must give in
/// the domain's routing order (`Task::routing_order`).
async fn claim_ids(stores: &Stores, query: RoutableQuery) -> Vec<TaskId> {
    let claimed = stores.tasks.claim_pending(&query).await.expect("claim");
    let ids: Vec<TaskId> = claimed.iter().map(|t| t.id).collect();
    let mut in_routing_order = claimed.clone();
    in_routing_order.sort_by_key(Task::routing_order);
    assert_eq!(
        ids,
        in_routing_order.iter().map(|t| t.id).collect::<Vec<_>>(),
        "claimed in the domain's routing order"
    );
    stores.tasks.release_claims(&ids).await.expect("release");
    ids
}

pub async fn claims_come_by_priority_then_age(stores: &Stores) {
    let low_old = create(stores, "a", 7, 0).await;
    let high_new = create(stores, "a", 2, 5).await;
    let high_old = create(stores, "a", 2, 1).await;
    let cancelled = create(stores, "a", 1, 2).await;
    let cancel = transition(
        &cancelled,
        TaskUpdate::Cancel,
        Actor::from_roles(&[Role::Admin]),
        3,
    );
    stores.tasks.apply_transition(cancel).await.expect("cancel");
    let order = claim_ids(stores, claim_query(&[], true, 10)).await;
    assert_eq!(order, vec![high_old.id, high_new.id, low_old.id]);
    assert_eq!(
        claim_ids(stores, claim_query(&[], true, 1)).await.len(),
        1,
        "limit holds"
    );
}

/// Within a priority the earlier deadline goes first, and a task without
/// one after every task with one, whatever their ages.
pub async fn claims_take_the_earlier_deadline_first_within_a_priority(stores: &Stores) {
    let with_deadline = |secs: i64, due: i64| async move {
        let mut task = new_task("a", 3, None);
        task.deadline = Some(at(due));
        stores
            .tasks
            .create_task(task, Uuid::new_v4(), by("alice"), at(secs))
            .await
            .expect("create")
    };
    let no_deadline_oldest = create(stores, "a", 3, 0).await;
    let due_late = with_deadline(1, 9_000).await;
    let due_soon = with_deadline(2, 5_000).await;
    let urgent_no_deadline = create(stores, "a", 1, 3).await;
    let order = claim_ids(stores, claim_query(&[], true, 10)).await;
    assert_eq!(
        order,
        vec![
            urgent_no_deadline.id,
            due_soon.id,
            due_late.id,
            no_deadline_oldest.id
        ]
    );
}

pub async fn claims_leave_out_what_no_free_droplet_can_take(stores: &Stores) {
    let create_needing = |cap: Option<&'static str>, secs: i64| async move {
        let task = new_task("a", 5, cap);
        stores
            .tasks
            .create_task(task, Uuid::new_v4(), by("alice"), at(secs))
            .await
            .expect("create")
    };
    let free = create_needing(None, 0).await;
    let gpu = create_needing(Some("gpu"), 1).await;
    let _build = create_needing(Some("build"), 2).await;
    assert_eq!(
        claim_ids(stores, claim_query(&["gpu"], false, 10)).await,
        vec![gpu.id]
    );
    assert_eq!(
        claim_ids(stores, claim_query(&["gpu"], true, 10)).await,
        vec![free.id, gpu.id]
    );
    assert_eq!(
        claim_ids(stores, claim_query(&[], false, 10)).await,
        Vec::<TaskId>::new()
    );
}

pub async fn claimed_tasks_are_hidden_until_released_or_moved(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let first = create(stores, "a", 5, 0).await;
    let second = create(stores, "a", 5, 1).await;
    let claimed = stores
        .tasks
        .claim_pending(&claim_query(&[], true, 1))
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), vec![first.id]);
    let other = stores
        .tasks
        .claim_pending(&claim_query(&[], true, 10))
        .await
        .expect("claim");
    assert_eq!(
        other.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![second.id],
        "a claimed task is skipped"
    );
    stores.tasks.release_claims(&[first.id]).await.expect("release");
    let again = stores
        .tasks
        .claim_pending(&claim_query(&[], true, 10))
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![first.id],
        "released, claimable again"
    );

    // A requeued task is pending again and claimable at once.
    let assigned = assign(stores, &first, 8, 2).await;
    let requeue = transition(&assigned, TaskUpdate::Requeue, Actor::SYSTEM, 3);
    stores.tasks.apply_transition(requeue).await.expect("requeue");
    let after = claim_ids(stores, claim_query(&[], true, 10)).await;
    assert_eq!(after, vec![first.id], "a transition ends the claim");
}

pub async fn claims_skip_tasks_waiting_out_a_retry_backoff(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let fail_and_retry = |task: Task, retry_after: chrono::DateTime<chrono::Utc>| async move {
        let assigned = assign(stores, &task, 8, 1).await;
        let started = start(stores, &assigned, 2).await;
        let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
        let failed = transition(
            &started,
            TaskUpdate::Fail {
                error_message: Some("boom".into()),
            },
            droplet,
            3,
        );
        let failed = stores.tasks.apply_transition(failed).await.expect("fail");
        let retry = Transition {
            expected_status: failed.status,
            expected_attempt: failed.attempt,
            expected_droplet: failed.assigned_droplet_id,
            task: failed
                .apply(TaskUpdate::Retry { retry_after }, Actor::SYSTEM, at(4))
                .expect("retry"),
            record: by("system"),
        };
        stores.tasks.apply_transition(retry).await.expect("retry")
    };
    let now = chrono::Utc::now();
    let waiting = fail_and_retry(create(stores, "a", 5, 0).await, now + chrono::Duration::hours(1)).await;
    let due = fail_and_retry(
        create(stores, "a", 5, 0).await,
        now - chrono::Duration::seconds(1),
    )
    .await;
    assert_eq!((waiting.retry_count, waiting.assigned_droplet_id), (1, None));
    assert!(waiting.retry_after.is_some());
    let stored = stores.tasks.get_task(waiting.id).await.expect("get");
    assert_eq!(
        stored.retry_after.map(|t| t.timestamp()),
        waiting.retry_after.map(|t| t.timestamp())
    );
    assert_eq!(
        claim_ids(stores, claim_query(&[], true, 10)).await,
        vec![due.id],
        "the backoff is respected"
    );
    let next = stores.tasks.next_due_at().await.expect("next due");
    assert_eq!(
        next.map(|t| t.timestamp()),
        waiting.retry_after.map(|t| t.timestamp()),
        "the end of the backoff is the next time a task becomes due"
    );
}

/// A task submitted to run later is stored with its `run_at`, is not
/// claimed before then (as `Task::is_due` judges), and its time is the
/// router's next alarm; one whose time has come is claimed as usual.
pub async fn claims_wait_for_a_tasks_run_at(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    assert_eq!(stores.tasks.next_due_at().await.expect("next due"), None);
    let now = chrono::Utc::now();
    let scheduled = |task_type: &str, run_at: chrono::DateTime<chrono::Utc>| {
        let task = NewTask {
            run_at: Some(run_at),
            ..new_task(task_type, 5, None)
        };
        async move {
            stores
                .tasks
                .create_task(task, Uuid::new_v4(), by("alice"), at(0))
                .await
                .expect("create task")
        }
    };
    let later = scheduled("later", now + chrono::Duration::hours(1)).await;
    let sooner = scheduled("sooner", now + chrono::Duration::minutes(30)).await;
    let come = scheduled("come", now - chrono::Duration::seconds(1)).await;
    let at_once = create(stores, "at-once", 5, 0).await;
    let stored = stores.tasks.get_task(later.id).await.expect("get");
    assert_eq!(
        stored.run_at.map(|t| t.timestamp()),
        Some((now + chrono::Duration::hours(1)).timestamp())
    );
    assert_eq!(stored.status, TaskStatus::Pending);
    let claimed = claim_ids(stores, claim_query(&[], true, 10)).await;
    let due: Vec<i64> = [&later, &sooner, &come, &at_once]
        .into_iter()
        .filter(|t| t.is_due(chrono::Utc::now()))
        .map(|t| t.id)
        .collect();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    assert_eq!(
        claimed.iter().copied().collect::<std::collections::BTreeSet<_>>(),
        due.into_iter().collect(),
        "only the tasks whose time has come"
    );
    let next = stores.tasks.next_due_at().await.expect("next due");
    assert_eq!(
        next.map(|t| t.timestamp()),
        sooner.run_at.map(|t| t.timestamp()),
        "the earliest waiting task is the next alarm"
    );
}

pub async fn silent_droplets_become_inactive(stores: &Stores) {
    let now = chrono::Utc::now();
    let long_ago = now - chrono::Duration::minutes(10);
    stores
        .droplets
        .register_droplet(registration(1, &[]), long_ago)
        .await
        .expect("register");
    stores
        .droplets
        .register_droplet(registration(2, &[]), now)
        .await
        .expect("register");
    stores
        .droplets
        .register_droplet(registration(3, &[]), long_ago)
        .await
        .expect("register");
    stores
        .droplets
        .set_droplet_status(3, DropletStatus::Error, false, long_ago)
        .await
        .expect("error");
    let silent = stores
        .droplets
        .mark_silent_droplets(Duration::from_secs(60))
        .await
        .expect("mark");
    let ids: Vec<i64> = silent.iter().map(|c| c.droplet.droplet_id).collect();
    assert_eq!(ids, vec![1], "only active droplets past the timeout");
    assert_eq!(silent[0].previous_status, Some(DropletStatus::Active));
    assert_eq!(
        stores.droplets.get_droplet(1).await.expect("get").status,
        DropletStatus::Inactive
    );
    assert!(
        !stores
            .droplets
            .get_droplet(1)
            .await
            .expect("get")
            .manually_deactivated,
        "a heartbeat revives it"
    );
    let again = stores
        .droplets
        .mark_silent_droplets(Duration::from_secs(60))
        .await
        .expect("mark");
    assert!(again.is_empty(), "already inactive");
}

/// A recovery query with the spec's timeouts, from the first task on.
fn recovery_query(limit: u32) -> RecoveryQuery {
    RecoveryQuery {
        ack_timeout: Duration::from_secs(60),
        heartbeat_timeout: Duration::from_secs(90),
        run_timeout: Duration::from_secs(3600),
        after: 0,
        limit,
    }
}

/// Each of `ids` is found by `tasks_to_recover` for the reason, or not
/// found, as the domain's `RecoveryReason::judge` says of it as the store
/// holds it now: the store's reading of the rule is held to the rule.
async fn judged_as_the_domain_judges(
    stores: &Stores,
    query: &RecoveryQuery,
    ids: impl IntoIterator<Item = TaskId>,
    found: &[RecoveryCandidate],
) {
    let timeouts = query.timeouts();
    for id in ids {
        let task = stores.tasks.get_task(id).await.expect("task");
        let droplet = match task.assigned_droplet_id {
            Some(droplet) => stores.droplets.get_droplet(droplet).await.ok(),
            None => None,
        };
        let judged = RecoveryReason::judge(&task, droplet.as_ref(), &timeouts, chrono::Utc::now());
        let by_store = found.iter().find(|c| c.task.id == id).map(|c| c.reason);
        assert_eq!(
            by_store, judged,
            "task {id} ({}), as the domain judges it",
            task.status
        );
    }
}

pub async fn recovery_finds_each_kind_of_stuck_task(stores: &Stores) {
    let now = chrono::Utc::now();
    for id in [8, 9] {
        stores
            .droplets
            .register_droplet(registration(id, &[]), at(0))
            .await
            .expect("register");
    }
    let assign_now = |task: Task, droplet: i64| async move {
        let t = Transition {
            expected_status: task.status,
            expected_attempt: task.attempt,
            expected_droplet: None,
            task: task
                .apply(TaskUpdate::Assign { droplet_id: droplet }, Actor::SYSTEM, now)
                .expect("assign"),
            record: by("system"),
        };
        stores.tasks.apply_transition(t).await.expect("assign")
    };
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let mut late = new_task("a", 5, None);
    late.deadline = Some(now - chrono::Duration::seconds(1));
    let past_deadline = stores
        .tasks
        .create_task(late, Uuid::new_v4(), by("a"), at(0))
        .await
        .expect("create");
    let on_dead = assign_now(create(stores, "a", 5, 0).await, 9).await;
    let running_on_dead = start(stores, &assign_now(create(stores, "a", 5, 0).await, 9).await, 1).await;
    let not_started = assign(stores, &create(stores, "a", 5, 0).await, 8, 1).await;
    let fresh = assign_now(create(stores, "a", 5, 0).await, 8).await;
    let failed = {
        let running = start(stores, &assign_now(create(stores, "a", 5, 0).await, 8).await, 2).await;
        let fail = transition(&running, TaskUpdate::Fail { error_message: None }, droplet, 3);
        stores.tasks.apply_transition(fail).await.expect("fail")
    };
    let spent = {
        let mut none_left = new_task("a", 5, None);
        none_left.max_retries = 0;
        let task = stores
            .tasks
            .create_task(none_left, Uuid::new_v4(), by("a"), at(0))
            .await
            .expect("create");
        let running = start(stores, &assign_now(task, 8).await, 2).await;
        let fail = transition(&running, TaskUpdate::Fail { error_message: None }, droplet, 3);
        stores.tasks.apply_transition(fail).await.expect("fail")
    };
    stores
        .droplets
        .set_droplet_status(9, DropletStatus::Inactive, false, now)
        .await
        .expect("9 dies");

    let found = stores
        .tasks
        .tasks_to_recover(&recovery_query(100))
        .await
        .expect("recover");
    let reason_of = |id: TaskId| found.iter().find(|c| c.task.id == id).map(|c| c.reason);
    assert_eq!(reason_of(past_deadline.id), Some(RecoveryReason::DeadlinePassed));
    assert_eq!(reason_of(on_dead.id), Some(RecoveryReason::DropletInactive));
    assert_eq!(
        reason_of(running_on_dead.id),
        Some(RecoveryReason::DropletInactive)
    );
    assert_eq!(reason_of(not_started.id), Some(RecoveryReason::NotStarted));
    assert_eq!(reason_of(failed.id), Some(RecoveryReason::RetryPending));
    assert_eq!(reason_of(fresh.id), None, "assigned just now");
    assert_eq!(reason_of(spent.id), None, "no retries left");
    assert_eq!(found.len(), 5);
    let every = [
        &past_deadline,
        &on_dead,
        &running_on_dead,
        &not_started,
        &fresh,
        &failed,
        &spent,
    ];
    judged_as_the_domain_judges(stores, &recovery_query(100), every.map(|t| t.id), &found).await;
    let on_dead_found = found.iter().find(|c| c.task.id == on_dead.id).expect("found");
    assert_eq!(
        on_dead_found.task.assigned_droplet_id,
        Some(9),
        "with its droplet"
    );
    let limited = stores
        .tasks
        .tasks_to_recover(&recovery_query(2))
        .await
        .expect("recover");
    assert_eq!(limited.len(), 2, "limit holds");
    let rest = stores
        .tasks
        .tasks_to_recover(&RecoveryQuery {
            after: limited[1].task.id,
            ..recovery_query(100)
        })
        .await
        .expect("recover");
    assert_eq!(rest.len(), 3, "the next page starts after the last id seen");
    assert!(rest.iter().all(|c| c.task.id > limited[1].task.id));
}

/// Runs a task on droplet `droplet` from second `secs`, as the droplet would.
async fn running_on(stores: &Stores, droplet: i64, secs: i64) -> Task {
    let task = create(stores, "r", 5, secs).await;
    start(stores, &assign(stores, &task, droplet, secs).await, secs).await
}

/// The reason `tasks_to_recover` finds task `id` for, checked against the
/// domain's judgement of it.
async fn reason_found(stores: &Stores, id: TaskId, query: RecoveryQuery) -> Option<RecoveryReason> {
    let found = stores.tasks.tasks_to_recover(&query).await.expect("recover");
    judged_as_the_domain_judges(stores, &query, [id], &found).await;
    found.iter().find(|c| c.task.id == id).map(|c| c.reason)
}

/// A registration without `resume` is a new process: what was assigned
/// before it is taken back; one with `resume` keeps it.
pub async fn a_restarted_droplets_work_is_found_and_a_resumed_ones_kept(stores: &Stores) {
    let now = chrono::Utc::now();
    let long = RecoveryQuery {
        run_timeout: Duration::ZERO,
        ..recovery_query(100)
    };
    for id in [8, 9] {
        register(stores, id, &[], 0).await;
    }
    let restarted = running_on(stores, 8, 1).await;
    let resumed = running_on(stores, 9, 1).await;
    assert_eq!(reason_found(stores, restarted.id, long).await, None);
    stores
        .droplets
        .register_droplet(registration(8, &[]), now)
        .await
        .expect("8 starts again");
    let mut again = registration(9, &[]);
    again.resume = true;
    let kept = stores
        .droplets
        .register_droplet(again, now)
        .await
        .expect("9 resumes");
    assert_eq!(
        kept.droplet.session_started_at,
        Some(at(0)),
        "resume keeps the session"
    );
    assert_eq!(
        reason_found(stores, restarted.id, long).await,
        Some(RecoveryReason::DropletRestarted)
    );
    assert_eq!(reason_found(stores, resumed.id, long).await, None);
    let after = running_on(stores, 8, 100_000_000).await;
    assert!(after.assigned_at > Some(now));
    assert_eq!(
        reason_found(stores, after.id, long).await,
        None,
        "work given to the new process stays"
    );
}

/// A run with no progress for longer than its timeout is found; progress
/// restarts its clock; `0` is no limit.
pub async fn runs_past_their_timeout_are_found_and_progress_extends_them(stores: &Stores) {
    // Whole seconds: the store keeps microseconds.
    let now = at((chrono::Utc::now() - at(0)).num_seconds());
    register(stores, 8, &[], 0).await;
    let running = running_on(stores, 8, 1).await;
    let query = recovery_query(100);
    assert_eq!(
        reason_found(stores, running.id, query).await,
        Some(RecoveryReason::RunTimedOut),
        "started long ago with the default hour"
    );
    let progress =
        orchestrator_domain::Progress::parse(Some(30), Some("a third".into()), now).expect("valid");
    let on = |droplet, attempt| ProgressReport {
        task_id: running.id,
        droplet,
        attempt,
        progress: progress.clone(),
    };
    let saved = applied(
        stores
            .tasks
            .record_progress(on(8, running.attempt))
            .await
            .expect("recorded"),
        TaskStatus::InProgress,
        "droplet-8",
    );
    assert_eq!(saved.progress, Some(progress.clone()));
    assert_eq!(stores.tasks.get_task(running.id).await.expect("read"), saved);
    assert_eq!(saved.status, TaskStatus::InProgress);
    assert_eq!(
        history_statuses(stores, running.id).await.len(),
        3,
        "no history row"
    );
    assert_eq!(reason_found(stores, running.id, query).await, None);
    let tight = RecoveryQuery {
        run_timeout: Duration::ZERO,
        ..query
    };
    assert_eq!(
        reason_found(stores, running.id, tight).await,
        None,
        "zero is no limit"
    );

    let mut own = new_task("r", 5, None);
    own.timeout_seconds = Some(0);
    let unbounded = stores
        .tasks
        .create_task(own, Uuid::new_v4(), by("a"), at(1))
        .await
        .expect("create");
    let unbounded = start(stores, &assign(stores, &unbounded, 8, 1).await, 1).await;
    assert_eq!(unbounded.timeout_seconds, Some(0));
    assert_eq!(reason_found(stores, unbounded.id, query).await, None);

    for (droplet, attempt) in [(8, running.attempt + 1), (9, running.attempt)] {
        assert!(
            matches!(
                stores.tasks.record_progress(on(droplet, attempt)).await,
                Ok(ReportOutcome::NotApplied { .. })
            ),
            "droplet {droplet}, attempt {attempt}"
        );
    }
    let finished = stores
        .tasks
        .apply_transition(transition(
            &saved,
            TaskUpdate::Complete { result: None },
            Actor::from_roles(&[Role::AssignedDroplet]),
            2,
        ))
        .await
        .expect("complete");
    assert!(matches!(
        stores.tasks.record_progress(on(8, finished.attempt)).await,
        Ok(ReportOutcome::NotApplied { .. })
    ));
    assert_eq!(stores.tasks.get_task(running.id).await.expect("read"), finished);
}

/// Tasks recovery cannot move are no candidates: however many failed
/// after a stop request, a dead droplet's task is still found.
pub async fn stopped_tasks_never_hide_a_dead_droplets_work(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    register(stores, 9, &[], 0).await;
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    for _ in 0..600 {
        let running = running_on(stores, 8, 1).await;
        let asked = running.request_cancel(at(2)).expect("running").expect("new");
        let saved = stores
            .tasks
            .record_cancel_request(&asked, by("alice"))
            .await
            .expect("asked");
        let fail = transition(&saved, TaskUpdate::Fail { error_message: None }, droplet, 3);
        stores.tasks.apply_transition(fail).await.expect("fail");
    }
    let held = assign(stores, &create(stores, "r", 5, 4).await, 9, 4).await;
    stores
        .droplets
        .set_droplet_status(9, DropletStatus::Error, false, at(5))
        .await
        .expect("9 fails");
    let found = stores
        .tasks
        .tasks_to_recover(&recovery_query(500))
        .await
        .expect("recover");
    assert_eq!(found.len(), 1, "only the dead droplet's task");
    assert_eq!(
        (found[0].task.id, found[0].reason),
        (held.id, RecoveryReason::DropletInactive)
    );
}

/// A droplet an admin deactivated keeps its work while it beats; once it
/// is silent too, its work is taken.
pub async fn a_drained_droplet_keeps_its_work_while_it_beats(stores: &Stores) {
    let now = chrono::Utc::now();
    register(stores, 8, &[], 0).await;
    let running = running_on(stores, 8, 1).await;
    let query = RecoveryQuery {
        run_timeout: Duration::ZERO,
        ..recovery_query(100)
    };
    stores
        .droplets
        .set_droplet_status(8, DropletStatus::Inactive, true, now)
        .await
        .expect("drained");
    let beat = HeartbeatReport {
        status: None,
        metrics: None,
    };
    stores
        .droplets
        .record_heartbeat(8, beat, now, Duration::ZERO)
        .await
        .expect("beats");
    stores.droplets.flush_heartbeats().await.expect("written");
    assert_eq!(reason_found(stores, running.id, query).await, None);
    let silent = RecoveryQuery {
        heartbeat_timeout: Duration::ZERO,
        ..query
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        reason_found(stores, running.id, silent).await,
        Some(RecoveryReason::DropletInactive)
    );
}

/// A person's retry clears the stop request, so that the new run can be
/// stopped and retried; requeues are counted and the retry resets them.
pub async fn a_manual_retry_clears_the_stop_request(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "t", 5, 0).await;
    let requeued = stores
        .tasks
        .apply_transition(transition(
            &assign(stores, &task, 8, 1).await,
            TaskUpdate::Requeue,
            Actor::SYSTEM,
            1,
        ))
        .await
        .expect("requeued");
    assert_eq!(stores.tasks.get_task(task.id).await.expect("read").requeues, 1);
    let running = start(stores, &assign(stores, &requeued, 8, 2).await, 2).await;
    let asked = running.request_cancel(at(3)).expect("running").expect("new");
    let saved = stores
        .tasks
        .record_cancel_request(&asked, by("alice"))
        .await
        .expect("asked");
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let failed = stores
        .tasks
        .apply_transition(transition(
            &saved,
            TaskUpdate::Fail { error_message: None },
            droplet,
            4,
        ))
        .await
        .expect("fail");
    let creator = Actor::from_roles(&[Role::Creator]);
    stores
        .tasks
        .apply_transition(transition(&failed, TaskUpdate::OperatorRetry, creator, 5))
        .await
        .expect("retried");
    let stored = stores.tasks.get_task(task.id).await.expect("read");
    assert_eq!(
        stored.cancel_requested_at, None,
        "the new run can be asked to stop"
    );
    assert_eq!((stored.status, stored.requeues), (TaskStatus::Pending, 0));
}

pub async fn old_heartbeats_are_deleted_in_bounded_batches(stores: &Stores) {
    register(stores, 1, &[], 0).await;
    for secs in 1..=3 {
        stores
            .droplets
            .record_heartbeat(1, HeartbeatReport::default(), at(secs), EVERY_BEAT)
            .await
            .expect("old beat");
    }
    stores
        .droplets
        .record_heartbeat(1, HeartbeatReport::default(), chrono::Utc::now(), EVERY_BEAT)
        .await
        .expect("beat");
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(
        stores
            .droplets
            .delete_old_heartbeats(week, 2)
            .await
            .expect("delete"),
        2,
        "bounded"
    );
    assert_eq!(
        stores
            .droplets
            .delete_old_heartbeats(week, 2)
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        stores
            .droplets
            .delete_old_heartbeats(week, 2)
            .await
            .expect("delete"),
        0,
        "the recent one stays"
    );
}

pub async fn an_assignment_beyond_capacity_is_refused(stores: &Stores) {
    let mut small = registration(8, &[]);
    small.max_concurrent_tasks = 2;
    stores
        .droplets
        .register_droplet(small, at(0))
        .await
        .expect("register");
    let tasks = [
        create(stores, "a", 5, 0).await,
        create(stores, "a", 5, 1).await,
        create(stores, "a", 5, 2).await,
    ];
    assign(stores, &tasks[0], 8, 3).await;
    assign(stores, &tasks[1], 8, 3).await;
    let third = transition(&tasks[2], TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, 4);
    let refused = stores.tasks.apply_transition(third).await;
    assert!(
        matches!(refused, Err(StoreError::DropletUnavailable { droplet_id: 8, .. })),
        "{refused:?}"
    );
    assert_eq!(
        stores.tasks.get_task(tasks[2].id).await.expect("get").status,
        TaskStatus::Pending
    );
}

pub async fn an_assignment_to_an_inactive_droplet_is_refused(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "a", 5, 0).await;
    stores
        .droplets
        .set_droplet_status(8, DropletStatus::Inactive, true, at(1))
        .await
        .expect("off");
    let late = transition(&task, TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, 2);
    let refused = stores.tasks.apply_transition(late).await;
    assert!(
        matches!(refused, Err(StoreError::DropletUnavailable { droplet_id: 8, .. })),
        "{refused:?}"
    );
    assert_eq!(
        stores.tasks.get_task(task.id).await.expect("get").status,
        TaskStatus::Pending
    );
    assert_eq!(history_statuses(stores, task.id).await.len(), 1, "no history row");
}

pub async fn concurrent_assignments_never_overfill_a_droplet(stores: &Stores) {
    let mut small = registration(8, &[]);
    small.max_concurrent_tasks = 3;
    stores
        .droplets
        .register_droplet(small, at(0))
        .await
        .expect("register");
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(create(stores, "a", 5, i).await);
    }
    let attempts = tasks.iter().map(|task| {
        let store = stores.tasks.clone();
        let t = transition(task, TaskUpdate::Assign { droplet_id: 8 }, Actor::SYSTEM, 30);
        tokio::spawn(async move { store.apply_transition(t).await })
    });
    let won = join_all(attempts)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    assert_eq!(won, 3, "exactly the capacity");
    assert_eq!(
        stores.tasks.active_task_counts().await.expect("counts").get(&8),
        Some(&3)
    );
}

/// What a burst of concurrent changes of every kind must do: each change
/// gets its own outcome, as if it had been applied alone, whatever the
/// store groups together.
pub async fn a_burst_of_changes_gives_each_its_own_outcome(stores: &Stores) {
    for id in [8, 9] {
        register(stores, id, &[], 0).await;
    }
    stores
        .droplets
        .set_droplet_status(9, DropletStatus::Inactive, true, at(0))
        .await
        .expect("off");
    let mut fresh = Vec::new();
    for i in 0..12 {
        fresh.push(create(stores, "a", 5, i).await);
    }
    let mut held = Vec::new();
    for task in &fresh[..4] {
        held.push(assign(stores, task, 8, 1).await);
    }
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let mut burst: Vec<(&str, Transition)> = Vec::new();
    for task in &held {
        burst.push(("in_progress", transition(task, TaskUpdate::Start, droplet, 2)));
    }
    for task in &fresh[4..8] {
        let assign = TaskUpdate::Assign { droplet_id: 8 };
        burst.push(("assigned", transition(task, assign, Actor::SYSTEM, 2)));
    }
    for task in &fresh[8..10] {
        let assign = TaskUpdate::Assign { droplet_id: 9 };
        burst.push(("refused", transition(task, assign, Actor::SYSTEM, 2)));
    }
    for task in &fresh[..2] {
        // Built from the task as it was before its assignment: stale.
        let assign = TaskUpdate::Assign { droplet_id: 8 };
        burst.push(("conflict", transition(task, assign, Actor::SYSTEM, 2)));
    }
    let mut ghost = fresh[10].clone();
    ghost.id = 999_999;
    burst.push((
        "missing",
        transition(&ghost, TaskUpdate::Cancel, Actor::SYSTEM.with(Role::Admin), 2),
    ));
    let attempts = burst.into_iter().map(|(expected, t)| {
        let store = stores.tasks.clone();
        tokio::spawn(async move { (expected, store.apply_transition(t).await) })
    });
    for outcome in join_all(attempts).await {
        let (expected, outcome) = outcome.expect("join");
        let kind = match &outcome {
            Ok(task) => task.status.as_str(),
            Err(StoreError::DropletUnavailable { droplet_id: 9, .. }) => "refused",
            Err(StoreError::Conflict(_)) => "conflict",
            Err(StoreError::NotFound { entity: "task", .. }) => "missing",
            Err(other) => panic!("unexpected outcome {other:?}"),
        };
        assert_eq!(kind, expected, "{outcome:?}");
    }
    let counts = stores.tasks.active_task_counts().await.expect("counts");
    assert_eq!(counts.get(&8), Some(&8), "four held and four newly assigned");
    assert_eq!(counts.get(&9).copied().unwrap_or(0), 0);
    for task in &fresh[..4] {
        assert_eq!(
            history_statuses(stores, task.id).await.len(),
            3,
            "created, assigned, started"
        );
    }
    for task in &fresh[4..8] {
        assert_eq!(
            history_statuses(stores, task.id).await.len(),
            2,
            "created, assigned"
        );
    }
    for task in &fresh[8..12] {
        assert_eq!(history_statuses(stores, task.id).await.len(), 1, "only created");
    }
}

pub async fn active_counts_cover_assigned_and_in_progress(stores: &Stores) {
    for id in [8, 9] {
        register(stores, id, &[], 0).await;
    }
    let a = create(stores, "a", 5, 0).await;
    let b = create(stores, "a", 5, 0).await;
    let c = create(stores, "a", 5, 0).await;
    let a = assign(stores, &a, 8, 1).await;
    start(stores, &a, 2).await;
    assign(stores, &b, 8, 1).await;
    let c = assign(stores, &c, 9, 1).await;
    let cancel = transition(&c, TaskUpdate::Cancel, Actor::from_roles(&[Role::Admin]), 3);
    stores.tasks.apply_transition(cancel).await.expect("cancel");
    let counts = stores.tasks.active_task_counts().await.expect("counts");
    assert_eq!(counts.get(&8), Some(&2));
    assert_eq!(
        counts.get(&9).copied().unwrap_or(0),
        0,
        "a cancelled task frees its slot"
    );
}

pub async fn assignment_marks_the_droplet_busy(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    assert_eq!(
        stores
            .droplets
            .get_droplet(8)
            .await
            .expect("get")
            .last_assigned_at,
        None
    );
    let task = create(stores, "a", 5, 0).await;
    assign(stores, &task, 8, 7).await;
    assert_eq!(
        stores
            .droplets
            .get_droplet(8)
            .await
            .expect("get")
            .last_assigned_at,
        Some(at(7))
    );
}

pub async fn tasks_are_counted_by_status(stores: &Stores) {
    create(stores, "a", 5, 0).await;
    let b = create(stores, "a", 5, 0).await;
    let cancel = transition(&b, TaskUpdate::Cancel, Actor::from_roles(&[Role::Admin]), 1);
    stores.tasks.apply_transition(cancel).await.expect("cancel");
    let counts = stores.tasks.count_tasks_by_status().await.expect("counts");
    assert_eq!(counts.get(&TaskStatus::Pending), Some(&1));
    assert_eq!(counts.get(&TaskStatus::Cancelled), Some(&1));
    assert_eq!(counts.get(&TaskStatus::Completed).copied().unwrap_or(0), 0);
}

pub async fn register_creates_then_updates(stores: &Stores) {
    let first = register(stores, 14, &["monitoring"], 0).await;
    assert_eq!(first.previous_status, None);
    assert_eq!(
        (first.droplet.status, first.droplet.registered_at),
        (DropletStatus::Active, at(0))
    );
    assert_eq!(first.droplet.last_heartbeat, Some(at(0)));

    let mut again = registration(14, &["alerts", "snapshots"]);
    again.name = "Visibility Deck".into();
    again.endpoint = "https://deck.example".into();
    let second = stores
        .droplets
        .register_droplet(again, at(5))
        .await
        .expect("re-register");
    assert_eq!(second.previous_status, Some(DropletStatus::Active));
    let stored = stores.droplets.get_droplet(14).await.expect("get");
    assert_eq!(stored, second.droplet);
    assert_eq!(
        (stored.name.as_str(), stored.endpoint.as_str()),
        ("Visibility Deck", "https://deck.example")
    );
    assert_eq!(
        stored.capabilities,
        vec![capability("alerts"), capability("snapshots")]
    );
    assert_eq!(
        (stored.registered_at, stored.updated_at),
        (at(0), at(5)),
        "registration time is kept"
    );
    assert_eq!(
        stores
            .droplets
            .list_droplets(&DropletFilter::default())
            .await
            .expect("list")
            .len(),
        1
    );
}

pub async fn heartbeat_revives_unless_deactivated_by_admin(stores: &Stores) {
    register(stores, 3, &[], 0).await;
    let down = stores
        .droplets
        .set_droplet_status(3, DropletStatus::Inactive, false, at(1))
        .await
        .expect("down");
    assert_eq!(down.previous_status, Some(DropletStatus::Active));
    let beat = stores
        .droplets
        .record_heartbeat(3, HeartbeatReport::default(), at(2), EVERY_BEAT)
        .await
        .expect("beat");
    assert_eq!(
        (beat.previous_status, beat.droplet.status),
        (Some(DropletStatus::Inactive), DropletStatus::Active)
    );
    assert_eq!(beat.droplet.last_heartbeat, Some(at(2)));

    let report = HeartbeatReport {
        status: Some(DropletStatus::Error),
        metrics: Some(serde_json::json!({"cpu": 99})),
    };
    let sick = stores
        .droplets
        .record_heartbeat(3, report, at(3), EVERY_BEAT)
        .await
        .expect("beat");
    assert_eq!(
        sick.droplet.status,
        DropletStatus::Error,
        "a droplet may report itself in error"
    );

    stores
        .droplets
        .set_droplet_status(3, DropletStatus::Inactive, true, at(4))
        .await
        .expect("admin off");
    let ignored = stores
        .droplets
        .record_heartbeat(3, HeartbeatReport::default(), at(5), EVERY_BEAT)
        .await
        .expect("beat");
    assert_eq!(ignored.droplet.status, DropletStatus::Inactive);
    let back = register(stores, 3, &[], 6).await;
    assert_eq!(
        back.droplet.status,
        DropletStatus::Inactive,
        "re-registering does not undo an admin"
    );
    let on = stores
        .droplets
        .set_droplet_status(3, DropletStatus::Active, false, at(7))
        .await
        .expect("admin on");
    assert!(!on.droplet.manually_deactivated);
    let beat = stores
        .droplets
        .record_heartbeat(3, HeartbeatReport::default(), at(8), EVERY_BEAT)
        .await
        .expect("beat");
    assert_eq!(beat.droplet.status, DropletStatus::Active);
}

pub async fn droplets_filter_by_status_and_capability(stores: &Stores) {
    register(stores, 2, &["build", "verify"], 0).await;
    register(stores, 1, &["verify"], 0).await;
    register(stores, 3, &["deploy"], 0).await;
    stores
        .droplets
        .set_droplet_status(3, DropletStatus::Inactive, false, at(1))
        .await
        .expect("off");
    let ids = |filter: DropletFilter| async move {
        let list = stores.droplets.list_droplets(&filter).await.expect("list");
        list.iter().map(|d| d.droplet_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(DropletFilter::default()).await,
        vec![1, 2, 3],
        "ordered by droplet id"
    );
    let verify = DropletFilter {
        capability: Some(capability("verify")),
        ..Default::default()
    };
    assert_eq!(ids(verify).await, vec![1, 2]);
    let inactive = DropletFilter {
        status: Some(DropletStatus::Inactive),
        ..Default::default()
    };
    assert_eq!(ids(inactive).await, vec![3]);
    let counts = stores.droplets.count_droplets_by_status().await.expect("counts");
    assert_eq!(
        (
            counts.get(&DropletStatus::Active),
            counts.get(&DropletStatus::Inactive)
        ),
        (Some(&2), Some(&1))
    );
    let distinct: HashSet<i64> = ids(DropletFilter::default()).await.into_iter().collect();
    assert_eq!(distinct.len(), 3);
}

pub async fn unknown_droplet_is_not_found(stores: &Stores) {
    let is_not_found = |r: Result<(), StoreError>| {
        matches!(
            r,
            Err(StoreError::NotFound {
                entity: "droplet",
                id: 77
            })
        )
    };
    assert!(is_not_found(stores.droplets.get_droplet(77).await.map(|_| ())));
    let beat = stores
        .droplets
        .record_heartbeat(77, HeartbeatReport::default(), at(0), EVERY_BEAT)
        .await;
    assert!(is_not_found(beat.map(|_| ())));
    let off = stores
        .droplets
        .set_droplet_status(77, DropletStatus::Inactive, true, at(0))
        .await;
    assert!(is_not_found(off.map(|_| ())));
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() < 1e-6)
}

/// Moves `task` through `updates`, each at its second.
async fn walk(stores: &Stores, task: &Task, updates: &[(TaskUpdate, i64)]) -> Task {
    let mut task = task.clone();
    for (update, secs) in updates {
        let actor = Actor::SYSTEM.with(Role::AssignedDroplet).with(Role::Admin);
        let t = transition(&task, update.clone(), actor, *secs);
        task = stores.tasks.apply_transition(t).await.expect("transition");
    }
    task
}

/// Tasks by type count each task under the status it has now, a held
/// one's included.
pub async fn tasks_by_type_count_held_tasks_by_their_status(stores: &Stores) {
    use orchestrator_ports::TimeWindow;
    register(stores, 8, &[], 0).await;
    create(stores, "mixed", 5, 1).await;
    let assigned = assign(stores, &create(stores, "mixed", 5, 2).await, 8, 3).await;
    let running = start(
        stores,
        &assign(stores, &create(stores, "mixed", 5, 4).await, 8, 5).await,
        6,
    )
    .await;
    let done = transition(
        &running,
        TaskUpdate::Complete { result: None },
        Actor::from_roles(&[Role::AssignedDroplet]),
        7,
    );
    stores.tasks.apply_transition(done).await.expect("complete");
    start(
        stores,
        &assign(stores, &create(stores, "mixed", 5, 8).await, 8, 9).await,
        10,
    )
    .await;
    assert_eq!(assigned.status, TaskStatus::Assigned);
    let window = TimeWindow {
        since: at(0),
        until: at(100),
    };
    let types = stores.analytics.tasks_by_type(window).await.expect("by type");
    let mixed: Vec<(u64, Vec<(TaskStatus, u64)>)> = types
        .into_iter()
        .map(|t| (t.total, t.by_status.into_iter().collect()))
        .collect();
    assert_eq!(
        mixed,
        vec![(
            4,
            vec![
                (TaskStatus::Pending, 1),
                (TaskStatus::Assigned, 1),
                (TaskStatus::InProgress, 1),
                (TaskStatus::Completed, 1),
            ]
        )]
    );
}

/// Analytics over a known set of tasks: three finished `verify` tasks on
/// droplet 8, a `scan` task no active droplet can take, one created after
/// the window.
pub async fn analytics_describe_a_known_set_of_tasks(stores: &Stores) {
    use orchestrator_ports::TimeWindow;
    register(stores, 8, &["x"], 0).await;
    register(stores, 9, &["y"], 0).await;
    stores
        .droplets
        .set_droplet_status(9, DropletStatus::Inactive, true, at(0))
        .await
        .expect("off");
    let assign = |secs| (TaskUpdate::Assign { droplet_id: 8 }, secs);
    let fail = |secs| {
        (
            TaskUpdate::Fail {
                error_message: Some("no".into()),
            },
            secs,
        )
    };
    let complete = |secs| (TaskUpdate::Complete { result: None }, secs);
    let a = create(stores, "verify", 5, 0).await;
    walk(stores, &a, &[assign(10), (TaskUpdate::Start, 20), complete(50)]).await;
    let b = create(stores, "verify", 5, 0).await;
    walk(stores, &b, &[assign(20), (TaskUpdate::Start, 30), complete(40)]).await;
    let c = create(stores, "verify", 5, 5).await;
    walk(stores, &c, &[assign(45), (TaskUpdate::Start, 50), fail(60)]).await;
    let scan = new_task("scan", 5, Some("y"));
    stores
        .tasks
        .create_task(scan, Uuid::new_v4(), by("alice"), at(10))
        .await
        .expect("create");
    create(stores, "scan", 5, 200).await;
    let window = TimeWindow {
        since: at(0),
        until: at(100),
    };

    let throughput = stores.analytics.throughput(window).await.expect("throughput");
    assert_eq!((throughput.created, throughput.finished), (4, 3));

    let all = stores
        .analytics
        .task_performance(window, None, None)
        .await
        .expect("performance");
    assert_eq!((all.finished, all.completed, all.failed), (3, 2, 1));
    let wait = all.queue_wait_seconds;
    assert!(
        close(wait.p50, 20.0) && close(wait.p95, 38.0) && close(wait.p99, 39.6),
        "{wait:?}"
    );
    let run = all.run_seconds;
    assert!(
        close(run.p50, 20.0) && close(run.p95, 29.0) && close(run.p99, 29.8),
        "{run:?}"
    );
    let on_8 = stores
        .analytics
        .task_performance(window, None, Some(8))
        .await
        .expect("on 8");
    assert_eq!(on_8, all, "every finished task ran on droplet 8");
    let scans = stores
        .analytics
        .task_performance(window, Some("scan".into()), None)
        .await
        .expect("scans");
    assert_eq!((scans.finished, scans.queue_wait_seconds.p50), (0, None));
    let on_9 = stores
        .analytics
        .task_performance(window, None, Some(9))
        .await
        .expect("on 9");
    assert_eq!(on_9.finished, 0);

    let types = stores.analytics.tasks_by_type(window).await.expect("by type");
    type Row = (String, u64, Vec<(TaskStatus, u64)>);
    let summary: Vec<Row> = types
        .into_iter()
        .map(|t| (t.task_type, t.total, t.by_status.into_iter().collect()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "verify".into(),
                3,
                vec![(TaskStatus::Completed, 2), (TaskStatus::Failed, 1)]
            ),
            ("scan".into(), 1, vec![(TaskStatus::Pending, 1)]),
        ]
    );

    let routing = stores.analytics.routing_stats(window).await.expect("routing");
    assert!(close(routing.time_to_assign_seconds.p50, 20.0), "{routing:?}");
    assert_eq!(
        routing.assignments_per_droplet.into_iter().collect::<Vec<_>>(),
        vec![(8, 3)]
    );
    assert_eq!(
        routing
            .pending_without_capable_droplet
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("y".to_owned(), 1)]
    );

    // A day-long window holding the same events reads them another way
    // (a store may scan long windows and index short ones): same answers.
    let day = TimeWindow {
        since: at(100) - chrono::Duration::days(1),
        until: at(100),
    };
    let over_a_day = stores
        .analytics
        .task_performance(day, None, None)
        .await
        .expect("performance over a day");
    assert_eq!(over_a_day, all);
    let on_8_over_a_day = stores
        .analytics
        .task_performance(day, None, Some(8))
        .await
        .expect("on 8 over a day");
    assert_eq!(on_8_over_a_day, all);
    let routing_over_a_day = stores
        .analytics
        .routing_stats(day)
        .await
        .expect("routing over a day");
    assert!(
        close(routing_over_a_day.time_to_assign_seconds.p50, 20.0),
        "{routing_over_a_day:?}"
    );
    assert_eq!(
        routing_over_a_day
            .assignments_per_droplet
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(8, 3)]
    );
    create(stores, "urgent", 1, 300).await;
    let depth = stores.analytics.pending_by_priority().await.expect("depth");
    assert_eq!(depth.into_iter().collect::<Vec<_>>(), vec![(1, 1), (5, 2)]);
}

/// Moves `task` by `update` at the wall-clock time `time`.
async fn apply_at(
    stores: &Stores,
    task: &Task,
    update: TaskUpdate,
    time: chrono::DateTime<chrono::Utc>,
) -> Task {
    let actor = Actor::SYSTEM.with(Role::AssignedDroplet).with(Role::Admin);
    let next = task
        .apply(update, actor, time)
        .expect("allowed by the state machine");
    let t = Transition {
        expected_status: task.status,
        expected_attempt: task.attempt,
        expected_droplet: task.assigned_droplet_id,
        task: next,
        record: by("system"),
    };
    stores.tasks.apply_transition(t).await.expect("transition")
}

/// Deadline risks: nearer than the floor, or than the p95 run time of the
/// task's type; unfinished tasks only; each task once.
pub async fn deadline_risks_are_flagged_once(stores: &Stores) {
    let now = chrono::Utc::now();
    let secs = chrono::Duration::seconds;
    stores
        .droplets
        .register_droplet(registration(8, &[]), now - secs(2000))
        .await
        .expect("register");
    let make = |kind: &'static str, due: Option<i64>| async move {
        let mut task = new_task(kind, 5, None);
        task.deadline = due.map(|s| now + chrono::Duration::seconds(s));
        stores
            .tasks
            .create_task(
                task,
                Uuid::new_v4(),
                by("alice"),
                now - chrono::Duration::seconds(1500),
            )
            .await
            .expect("create")
    };
    let soon = make("a", Some(30)).await;
    make("a", Some(600)).await;
    let slow_kind = make("slow", Some(600)).await;
    make("a", None).await;
    let finished = make("a", Some(30)).await;
    let finished = apply_at(stores, &finished, TaskUpdate::Cancel, now - secs(10)).await;
    assert_eq!(finished.status, TaskStatus::Cancelled);
    // A `slow` task that ran for 1,000 seconds today.
    let ran = make("slow", None).await;
    let ran = apply_at(
        stores,
        &ran,
        TaskUpdate::Assign { droplet_id: 8 },
        now - secs(1200),
    )
    .await;
    let ran = apply_at(stores, &ran, TaskUpdate::Start, now - secs(1100)).await;
    apply_at(
        stores,
        &ran,
        TaskUpdate::Complete { result: None },
        now - secs(100),
    )
    .await;

    let floor = Duration::from_secs(60);
    let flagged: Vec<TaskId> = stores
        .tasks
        .flag_deadline_risks(floor, 10)
        .await
        .expect("flag")
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(flagged, vec![soon.id, slow_kind.id], "the nearest deadline first");
    assert!(
        stores
            .tasks
            .flag_deadline_risks(floor, 10)
            .await
            .expect("again")
            .is_empty(),
        "each task once"
    );
}

/// Each assignment numbers its attempt, and the store keeps the number; a
/// refused report adds a history row and changes nothing else.
pub async fn attempts_count_assignments_and_refused_reports_are_recorded(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "a", 5, 0).await;
    assert_eq!(task.attempt, 0);
    let assigned = assign(stores, &task, 8, 1).await;
    assert_eq!(assigned.attempt, 1);
    let requeue = transition(&assigned, TaskUpdate::Requeue, Actor::SYSTEM, 2);
    let requeued = stores.tasks.apply_transition(requeue).await.expect("requeue");
    let again = assign(stores, &requeued, 8, 3).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(
        stores.tasks.get_task(task.id).await.expect("get").attempt,
        2,
        "stored"
    );

    let record = ChangeRecord {
        changed_by: Some("droplet-8".into()),
        reason: Some("refused report: stale".into()),
        metadata: Some(serde_json::json!({ "refused": true })),
    };
    stores
        .tasks
        .record_refused_report(task.id, TaskStatus::Assigned, record.clone(), at(4))
        .await
        .expect("recorded");
    let history = stores.tasks.task_history(task.id).await.expect("history");
    let last = history.last().expect("a row");
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(TaskStatus::Assigned), TaskStatus::Assigned)
    );
    assert_eq!(last.metadata, record.metadata);
    assert_eq!(
        stores.tasks.get_task(task.id).await.expect("get").status,
        TaskStatus::Assigned
    );
    let missing = stores
        .tasks
        .record_refused_report(999_999, TaskStatus::Pending, record, at(5))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
}

/// Moves `task` the way recovery does for `reason`, at `time`, with the
/// history metadata recovery writes.
async fn recover_at(
    stores: &Stores,
    task: &Task,
    reason: RecoveryReason,
    time: chrono::DateTime<chrono::Utc>,
) -> Task {
    let update = reason
        .update(task, time, orchestrator_domain::RecoveryLimits::default())
        .expect("recovery applies");
    let t = Transition {
        expected_status: task.status,
        expected_attempt: task.attempt,
        expected_droplet: task.assigned_droplet_id,
        task: task.apply(update, Actor::SYSTEM, time).expect("allowed"),
        record: ChangeRecord {
            changed_by: Some("system:recovery".into()),
            reason: None,
            metadata: Some(serde_json::json!({ "recovery": reason })),
        },
    };
    stores.tasks.apply_transition(t).await.expect("recover")
}

/// Rescue figures: recovery's history rows, refused reports and deadline
/// warnings in the window, by required capability.
pub async fn rescues_are_counted_by_capability(stores: &Stores) {
    use orchestrator_ports::{RescueCounts, TimeWindow};
    let now = chrono::Utc::now();
    let ago = |s: i64| now - chrono::Duration::seconds(s);
    stores
        .droplets
        .register_droplet(registration(8, &["x"]), ago(20_000))
        .await
        .expect("register");
    let make = |capability: Option<&'static str>, due: Option<i64>, created: i64| async move {
        let mut task = new_task("t", 5, capability);
        task.deadline = due.map(|s| now + chrono::Duration::seconds(s));
        stores
            .tasks
            .create_task(task, Uuid::new_v4(), by("alice"), ago(created))
            .await
            .expect("create")
    };
    // Not started in time: taken back, then a late report about it refused.
    let slow = make(Some("x"), None, 600).await;
    let slow = apply_at(stores, &slow, TaskUpdate::Assign { droplet_id: 8 }, ago(500)).await;
    let slow = recover_at(stores, &slow, RecoveryReason::NotStarted, ago(400)).await;
    let refused = ChangeRecord {
        changed_by: Some("droplet-8".into()),
        reason: Some("stale".into()),
        metadata: Some(serde_json::json!({ "refused": true })),
    };
    stores
        .tasks
        .record_refused_report(slow.id, slow.status, refused, ago(300))
        .await
        .expect("refused report");
    // Due soon and requiring nothing: warned, then failed at its deadline.
    let due = make(None, Some(30), 600).await;
    assert_eq!(
        stores
            .tasks
            .flag_deadline_risks(Duration::from_secs(60), 10)
            .await
            .expect("flag")
            .len(),
        1
    );
    recover_at(stores, &due, RecoveryReason::DeadlinePassed, ago(100)).await;
    // Before the window: not counted.
    let old = make(Some("x"), None, 10_000).await;
    let old = apply_at(stores, &old, TaskUpdate::Assign { droplet_id: 8 }, ago(9_000)).await;
    recover_at(stores, &old, RecoveryReason::DropletInactive, ago(8_000)).await;

    let window = TimeWindow {
        since: ago(3_600),
        until: now + chrono::Duration::seconds(60),
    };
    let stats = stores.analytics.routing_stats(window).await.expect("routing");
    let expected = vec![
        RescueCounts {
            capability: None,
            deadline_failures: 1,
            deadline_at_risk: 1,
            ..RescueCounts::default()
        },
        RescueCounts {
            capability: Some("x".into()),
            reassignments: 1,
            ack_timeouts: 1,
            stale_reports_refused: 1,
            ..RescueCounts::default()
        },
    ];
    assert_eq!(stats.rescues, expected);
    let alone = stores.analytics.rescues(window).await.expect("rescues");
    assert_eq!(alone, expected, "the rescues alone are the statistics' rescues");
}

/// A cancel request marks a running task and adds a history row without
/// changing its status; it survives the task's next move, and is refused
/// once the task has moved on.
pub async fn cancel_requests_are_recorded_on_running_tasks(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    let task = create(stores, "t", 5, 0).await;
    let running = start(stores, &assign(stores, &task, 8, 1).await, 2).await;
    let asked = running.request_cancel(at(3)).expect("running").expect("new");
    let record = ChangeRecord {
        changed_by: Some("alice".into()),
        reason: Some("cancel requested by alice".into()),
        metadata: Some(serde_json::json!({ "cancel_requested": true })),
    };
    let saved = stores
        .tasks
        .record_cancel_request(&asked, record.clone())
        .await
        .expect("recorded");
    assert_eq!(
        (saved.status, saved.cancel_requested_at, saved.assigned_droplet_id),
        (TaskStatus::InProgress, Some(at(3)), Some(8))
    );
    assert!(matches!(
        stores.tasks.record_cancel_request(&asked, record.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    let actor = Actor::from_roles(&[Role::AssignedDroplet]);
    let failed = stores
        .tasks
        .apply_transition(transition(
            &saved,
            TaskUpdate::Fail { error_message: None },
            actor,
            4,
        ))
        .await
        .expect("fail");
    assert_eq!(failed.cancel_requested_at, Some(at(3)), "kept by later moves");
    assert!(!failed.can_retry());
    assert_eq!(
        history_statuses(stores, task.id).await[3..],
        [
            (Some(TaskStatus::InProgress), TaskStatus::InProgress),
            (Some(TaskStatus::InProgress), TaskStatus::Failed)
        ]
    );
    let late = failed.clone();
    assert!(matches!(
        stores.tasks.record_cancel_request(&late, record).await,
        Err(StoreError::Conflict(_))
    ));
}

/// The Registry's directory describes droplets; it is no sign of life.
pub async fn directory_sync_describes_droplets_without_reviving_them(stores: &Stores) {
    let listed = stores
        .droplets
        .sync_droplet(registration(40, &["scan"]), None, at(0))
        .await
        .expect("sync new");
    assert_eq!(listed.previous_status, None);
    assert_eq!(
        (listed.droplet.status, listed.droplet.last_heartbeat),
        (DropletStatus::Inactive, None),
        "a listed droplet works only once it beats"
    );

    register(stores, 41, &["x"], 1).await;
    let described = stores
        .droplets
        .sync_droplet(registration(41, &["x", "y"]), None, at(5))
        .await
        .expect("sync known");
    assert_eq!(described.droplet.status, DropletStatus::Active);
    assert_eq!(
        described.droplet.last_heartbeat,
        Some(at(1)),
        "no heartbeat is faked"
    );
    assert_eq!(
        described.droplet.capabilities,
        vec![capability("x"), capability("y")]
    );

    stores
        .droplets
        .set_droplet_status(41, DropletStatus::Inactive, true, at(6))
        .await
        .expect("admin off");
    let still_off = stores
        .droplets
        .sync_droplet(registration(41, &["x"]), None, at(7))
        .await
        .expect("sync");
    assert_eq!(still_off.droplet.status, DropletStatus::Inactive);
    assert!(still_off.droplet.manually_deactivated);
}

/// The directory's service ids find their droplets; names find the only
/// droplet the directory lists under them, never one that named itself.
pub async fn directory_keeps_the_registrys_service_ids(stores: &Stores) {
    let droplets = &stores.droplets;
    let find =
        |service: ServiceRef| async move { droplets.find_droplet_by_service(&service).await.expect("find") };
    let listed = droplets
        .sync_droplet(registration(50, &["scan"]), Some(7001), at(0))
        .await
        .expect("sync");
    assert_eq!(listed.droplet.service_id, Some(7001));
    assert_eq!(find(ServiceRef::Id(7001)).await, Some(50));
    assert_eq!(find(ServiceRef::Id(7002)).await, None);
    assert_eq!(find(ServiceRef::Name("droplet-50".into())).await, Some(50));
    assert_eq!(find(ServiceRef::Name("nobody".into())).await, None);

    let kept = droplets
        .sync_droplet(registration(50, &["scan"]), None, at(1))
        .await
        .expect("sync without id");
    assert_eq!(
        kept.droplet.service_id,
        Some(7001),
        "an entry without an id keeps the old one"
    );
    let registered = droplets
        .register_droplet(registration(50, &["scan"]), at(2))
        .await
        .expect("register");
    assert_eq!(
        registered.droplet.service_id,
        Some(7001),
        "its own registration keeps it too"
    );

    droplets
        .sync_droplet(registration(51, &["scan"]), Some(7001), at(3))
        .await
        .expect("the id moves");
    assert_eq!(find(ServiceRef::Id(7001)).await, Some(51));
    assert_eq!(droplets.get_droplet(50).await.expect("get").service_id, None);

    let named = |id: i64, name: &str| {
        let mut entry = registration(id, &["scan"]);
        entry.name = name.into();
        entry
    };
    droplets
        .register_droplet(named(52, "droplet-51"), at(4))
        .await
        .expect("a droplet naming itself droplet-51");
    assert_eq!(
        find(ServiceRef::Name("droplet-51".into())).await,
        Some(51),
        "a name a droplet chose for itself takes no one's identity"
    );
    droplets
        .register_droplet(named(53, "self-named"), at(5))
        .await
        .expect("register");
    assert_eq!(
        find(ServiceRef::Name("self-named".into())).await,
        None,
        "only the directory's names identify a service"
    );
    droplets
        .register_droplet(named(51, "renamed"), at(6))
        .await
        .expect("a listed droplet renames itself");
    assert_eq!(find(ServiceRef::Name("droplet-51".into())).await, Some(51));
    assert_eq!(find(ServiceRef::Name("renamed".into())).await, None);

    droplets
        .sync_droplet(named(54, "droplet-51"), None, at(7))
        .await
        .expect("the directory lists a second droplet-51");
    assert_eq!(
        find(ServiceRef::Name("droplet-51".into())).await,
        None,
        "a name the directory gives two droplets names neither"
    );
}

/// Retention: tasks finished for good before the cut-off go, with their
/// history, a bounded batch at a time; recent ones, unfinished ones and
/// failed ones that will still be retried stay.
pub async fn finished_tasks_are_deleted_after_their_retention_with_their_history(stores: &Stores) {
    use orchestrator_ports::TimeWindow;
    register(stores, 8, &[], 0).await;
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let creator = Actor::from_roles(&[Role::Creator]);
    let make = |max_retries: u32, deadline: Option<DateTime<Utc>>| async move {
        let mut task = new_task("kept-or-not", 5, None);
        (task.max_retries, task.deadline) = (max_retries, deadline);
        stores
            .tasks
            .create_task(task, Uuid::new_v4(), by("alice"), at(0))
            .await
            .expect("create")
    };
    let apply = |task: Task, update: TaskUpdate, actor: Actor, secs: i64| async move {
        let t = transition(&task, update, actor, secs);
        stores.tasks.apply_transition(t).await.expect("allowed")
    };
    let fail = |task: Task, secs: i64| apply(task, TaskUpdate::Fail { error_message: None }, droplet, secs);
    let running = |task: Task| async move { start(stores, &assign(stores, &task, 8, 1).await, 2).await };
    let done = TaskUpdate::Complete { result: None };
    let in_a_day = Utc::now() + chrono::Duration::days(1);

    let completed = apply(running(make(3, None).await).await, done.clone(), droplet, 3).await;
    let cancelled = apply(make(3, None).await, TaskUpdate::Cancel, creator, 3).await;
    let spent = fail(running(make(0, None).await).await, 3).await;
    let asked = running(make(3, None).await).await;
    let asked = stores
        .tasks
        .record_cancel_request(
            &asked.request_cancel(at(2)).expect("running").expect("new"),
            by("alice"),
        )
        .await
        .expect("cancel request");
    let stopped = fail(asked, 3).await;
    let past_deadline = fail(running(make(3, Some(at(10))).await).await, 3).await;
    let old = [&completed, &cancelled, &spent, &stopped, &past_deadline];

    let will_retry = fail(running(make(3, None).await).await, 3).await;
    let will_retry_in_time = fail(running(make(3, Some(in_a_day)).await).await, 3).await;
    let recent = apply(running(make(3, None).await).await, done, droplet, 200).await;
    let still_running = running(make(3, Some(at(10))).await).await;
    let pending = make(3, None).await;
    let kept = [
        &will_retry,
        &will_retry_in_time,
        &recent,
        &still_running,
        &pending,
    ];

    // A refused report in the history of a task that goes, to see it go too.
    let refused = ChangeRecord {
        metadata: Some(serde_json::json!({ "refused": true })),
        ..by("droplet-9")
    };
    stores
        .tasks
        .record_refused_report(completed.id, completed.status, refused, at(4))
        .await
        .expect("refused report");
    let window = TimeWindow {
        since: at(0),
        until: at(1_000),
    };
    let refused_reports = || async {
        let stats = stores.analytics.routing_stats(window).await.expect("stats");
        stats.rescues.iter().map(|r| r.stale_reports_refused).sum::<u64>()
    };
    assert_eq!(refused_reports().await, 1);

    let cut_off = at(100);
    let mut batches = Vec::new();
    loop {
        let deleted = stores
            .tasks
            .delete_finished_tasks(cut_off, 2)
            .await
            .expect("delete");
        batches.push(deleted);
        if deleted < 2 {
            break;
        }
    }
    assert_eq!(
        batches,
        [2, 2, 1],
        "at most a batch at a time, until none is left"
    );
    for task in old {
        assert!(
            matches!(
                stores.tasks.get_task(task.id).await,
                Err(StoreError::NotFound { .. })
            ),
            "{} task {} deleted",
            task.status,
            task.id
        );
        assert!(stores.tasks.task_history(task.id).await.is_err());
    }
    assert_eq!(refused_reports().await, 0, "the history went with its task");
    for task in kept {
        let now = stores.tasks.get_task(task.id).await.expect("kept");
        assert_eq!(now.status, task.status);
        assert!(
            !stores
                .tasks
                .task_history(task.id)
                .await
                .expect("history")
                .is_empty()
        );
    }
    let reused = stores
        .tasks
        .create_task(
            new_task("again", 5, None),
            completed.trace_id,
            by("alice"),
            at(300),
        )
        .await;
    assert!(reused.is_ok(), "a deleted task's trace id is free: {reused:?}");
}

/// Heartbeat rows are samples: one per droplet per sample interval, plus
/// one for every change of status, while `last_heartbeat` follows every
/// beat. Rows are counted by deleting them all (they are old).
pub async fn heartbeats_are_kept_as_samples_and_last_heartbeat_is_exact(stores: &Stores) {
    let minute = Duration::from_secs(60);
    let beat = |id, status: Option<DropletStatus>, secs: i64, every: Duration| async move {
        let report = HeartbeatReport {
            status,
            metrics: None,
        };
        stores
            .droplets
            .record_heartbeat(id, report, at(secs), every)
            .await
            .expect("beat")
    };
    let rows = || async {
        let week = Duration::from_secs(7 * 24 * 3600);
        stores
            .droplets
            .delete_old_heartbeats(week, 1_000)
            .await
            .expect("delete")
    };
    register(stores, 1, &[], 0).await;
    for secs in 1..=10 {
        beat(1, None, secs, minute).await;
    }
    assert_eq!(rows().await, 1, "ten beats within a minute: one sample");

    let sick = beat(1, Some(DropletStatus::Error), 20, minute).await;
    assert_eq!(sick.droplet.status, DropletStatus::Error);
    beat(1, Some(DropletStatus::Error), 30, minute).await;
    assert_eq!(
        rows().await,
        1,
        "the change of status is kept, the beat after it not"
    );

    beat(1, Some(DropletStatus::Error), 80, minute).await;
    beat(1, Some(DropletStatus::Error), 85, minute).await;
    assert_eq!(rows().await, 1, "a minute after the last sample: one more");
    let droplet = stores.droplets.get_droplet(1).await.expect("droplet");
    assert_eq!(droplet.last_heartbeat, Some(at(85)), "every beat moves it");

    register(stores, 2, &[], 0).await;
    for secs in 1..=3 {
        beat(2, None, secs, EVERY_BEAT).await;
    }
    assert_eq!(rows().await, 3, "a zero interval keeps every beat");
}

/// The live counts of the public `/state`: pending, and held by droplets.
pub async fn live_tasks_are_counted_apart_from_finished_ones(stores: &Stores) {
    register(stores, 8, &[], 0).await;
    create(stores, "t", 5, 0).await;
    create(stores, "t", 5, 0).await;
    assign(stores, &create(stores, "t", 5, 0).await, 8, 1).await;
    let running = start(
        stores,
        &assign(stores, &create(stores, "t", 5, 0).await, 8, 1).await,
        2,
    )
    .await;
    let actor = Actor::from_roles(&[Role::AssignedDroplet]);
    stores
        .tasks
        .apply_transition(transition(
            &running,
            TaskUpdate::Complete { result: None },
            actor,
            3,
        ))
        .await
        .expect("complete");
    start(
        stores,
        &assign(stores, &create(stores, "t", 5, 0).await, 8, 4).await,
        5,
    )
    .await;
    let live = stores.tasks.count_live_tasks().await.expect("counted");
    assert_eq!((live.pending, live.held), (2, 2));
}

/// Pages by cursor: after a task, the older ones; before it, the newer
/// ones; ties on `created_at` broken by id; filters apply; a page says
/// whether tasks follow and precede it.
pub async fn pages_follow_a_cursor_in_either_direction(stores: &Stores) {
    use orchestrator_ports::{PageCursor, TaskKey};
    // Newest first: ids 7, 6, 5, 4, 3, 2, 1; 3 and 4 were created at once.
    let mut tasks = Vec::new();
    for secs in [0, 1, 2, 3, 3, 5, 6] {
        tasks.push(create(stores, "paged", 5, secs).await);
    }
    create(stores, "other", 5, 4).await;
    let newest_first: Vec<TaskId> = tasks.iter().rev().map(|t| t.id).collect();
    let page = |cursor: Option<PageCursor>| async move {
        let filter = TaskFilter {
            task_type: Some("paged".into()),
            limit: 3,
            cursor,
            ..TaskFilter::default()
        };
        let page = stores.tasks.list_tasks(&filter).await.expect("page");
        let ids: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
        (ids, page.more_after, page.more_before, page.total)
    };
    let key = |id: TaskId| TaskKey::of(tasks.iter().find(|t| t.id == id).expect("ours"));

    let first = page(None).await;
    assert_eq!(first, (newest_first[0..3].to_vec(), true, false, 7));
    let second = page(Some(PageCursor::After(key(newest_first[2])))).await;
    assert_eq!(
        second,
        (newest_first[3..6].to_vec(), true, true, 7),
        "across the tie"
    );
    let last = page(Some(PageCursor::After(key(newest_first[5])))).await;
    assert_eq!(last, (newest_first[6..7].to_vec(), false, true, 7));

    let back = page(Some(PageCursor::Before(key(newest_first[6])))).await;
    assert_eq!(
        back,
        (newest_first[3..6].to_vec(), true, true, 7),
        "the three just newer"
    );
    let top = page(Some(PageCursor::Before(key(newest_first[3])))).await;
    assert_eq!(top, (newest_first[0..3].to_vec(), true, false, 7));
    let none = page(Some(PageCursor::Before(key(newest_first[0])))).await;
    assert_eq!(none, (Vec::new(), true, false, 7));
}

/// A valid schedule named `name`, every minute in Paris.
fn new_schedule(name: &str) -> orchestrator_domain::NewSchedule {
    let draft = orchestrator_domain::ScheduleDraft {
        name: name.to_owned(),
        cron: "* * * * *".into(),
        timezone: Some("Europe/Paris".into()),
        task: orchestrator_domain::TaskDraft {
            task_type: "report".into(),
            priority: Some(2),
            payload: Some(serde_json::json!({ "kind": "nightly" })),
            ..orchestrator_domain::TaskDraft::default()
        },
        overlap: Some(orchestrator_domain::Overlap::Skip),
        catch_up: Some(orchestrator_domain::CatchUp::None),
    };
    orchestrator_domain::NewSchedule::parse(draft, at(0)).expect("a valid schedule")
}

fn unknown_schedule<T: std::fmt::Debug>(outcome: &Result<T, StoreError>) -> bool {
    matches!(
        outcome,
        Err(StoreError::UnknownName {
            entity: "schedule",
            ..
        })
    )
}

/// Schedules keep their definition whole (the template included), come
/// listed by name, take a change and a pause, and are gone once deleted.
pub async fn schedules_are_created_listed_changed_and_deleted(stores: &Stores) {
    let schedules = &stores.schedules;
    let made = schedules
        .create_schedule(new_schedule("nightly"), Some("alice".into()), at(1))
        .await
        .expect("create");
    assert_eq!(
        (
            made.cron.as_str(),
            made.timezone.as_str(),
            made.overlap,
            made.paused
        ),
        (
            "* * * * *",
            "Europe/Paris",
            orchestrator_domain::Overlap::Skip,
            false
        )
    );
    assert_eq!(made.catch_up, orchestrator_domain::CatchUp::None);
    assert_eq!(
        (made.fires, made.skips, made.last_fire_at, made.last_task_id),
        (0, 0, None, None)
    );
    assert_eq!(made.template, new_schedule("x").template);
    assert_eq!(schedules.get_schedule("nightly").await.expect("get"), made);
    let taken = schedules
        .create_schedule(new_schedule("nightly"), None, at(2))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    schedules
        .create_schedule(new_schedule("hourly"), None, at(2))
        .await
        .expect("create");
    let names: Vec<String> = schedules
        .list_schedules()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["hourly", "nightly"]);

    let definition = ScheduleDefinition {
        cron: "*/10 * * * * *".into(),
        timezone: "UTC".into(),
        template: orchestrator_domain::TaskDraft {
            task_type: "other".into(),
            ..orchestrator_domain::TaskDraft::default()
        },
        overlap: orchestrator_domain::Overlap::Allow,
        catch_up: orchestrator_domain::CatchUp::Last,
        paused: true,
    };
    let changed = schedules
        .update_schedule("nightly", definition.clone(), at(5))
        .await
        .expect("update");
    assert_eq!(
        (
            changed.cron.as_str(),
            changed.timezone.as_str(),
            changed.paused,
            changed.updated_at
        ),
        ("*/10 * * * * *", "UTC", true, at(5))
    );
    assert_eq!(
        (changed.template.task_type.as_str(), changed.created_at),
        ("other", at(1))
    );
    assert_eq!(changed.catch_up, orchestrator_domain::CatchUp::Last);
    assert!(unknown_schedule(
        &schedules.update_schedule("nope", definition, at(5)).await
    ));

    schedules.delete_schedule("nightly").await.expect("delete");
    assert!(unknown_schedule(&schedules.get_schedule("nightly").await));
    assert!(unknown_schedule(&schedules.delete_schedule("nightly").await));
}

/// A fire time is dealt with once: of fires racing for it one makes the
/// task (with its history row), the others are conflicts; a stale
/// expectation is a conflict; a skip makes no task and is counted.
pub async fn a_fire_time_makes_one_task_whatever_races(stores: &Stores) {
    stores
        .schedules
        .create_schedule(new_schedule("nightly"), Some("alice".into()), at(0))
        .await
        .expect("create");
    let fire = |expected: Option<i64>, secs: i64, with_task: bool| Fire {
        schedule: "nightly".into(),
        expected_last_fire: expected.map(at),
        at: at(secs),
        task: with_task.then(|| FiredTask {
            task: NewTask::parse(new_schedule("x").template, at(secs)).expect("a valid task"),
            trace_id: Uuid::new_v4(),
            record: by("schedule:nightly"),
            created_at: at(secs),
        }),
    };
    let racing = (0..6).map(|_| stores.schedules.fire_schedule(fire(None, 60, true)));
    let outcomes = join_all(racing).await;
    let made: Vec<&Task> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().and_then(Option::as_ref))
        .collect();
    assert_eq!(made.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(Some(_)) | Err(StoreError::Conflict(_)))),
        "{outcomes:?}"
    );
    let task = made[0].clone();
    assert_eq!(
        (task.status, task.priority.value(), task.task_type.as_str()),
        (TaskStatus::Pending, 2, "report")
    );
    let history = stores.tasks.task_history(task.id).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].changed_by.as_deref(), Some("schedule:nightly"));
    let all = stores
        .tasks
        .list_tasks(&TaskFilter::default())
        .await
        .expect("list");
    assert_eq!(all.total, 1, "one task for the fire time");

    let schedule = stores.schedules.get_schedule("nightly").await.expect("get");
    assert_eq!(
        (
            schedule.last_fire_at,
            schedule.last_task_id,
            schedule.fires,
            schedule.skips
        ),
        (Some(at(60)), Some(task.id), 1, 0)
    );
    let stale = stores.schedules.fire_schedule(fire(None, 120, true)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let skipped = stores.schedules.fire_schedule(fire(Some(60), 120, false)).await;
    assert_eq!(skipped, Ok(None));
    let schedule = stores.schedules.get_schedule("nightly").await.expect("get");
    assert_eq!(
        (
            schedule.last_fire_at,
            schedule.last_task_id,
            schedule.fires,
            schedule.skips
        ),
        (Some(at(120)), Some(task.id), 1, 1)
    );
    let again = stores.schedules.fire_schedule(fire(Some(120), 180, true)).await;
    assert!(matches!(again, Ok(Some(_))), "{again:?}");
    let gone = Fire {
        schedule: "gone".into(),
        ..fire(Some(180), 240, true)
    };
    assert!(unknown_schedule(&stores.schedules.fire_schedule(gone).await));
}
