//! The live state of unfinished work lives apart from the wide row
//! (migration 18, docs/storage-layout.md): a running task's changes never
//! write its `tasks` row, every read shows them at once, and the migration
//! moves the unfinished work of an older database into the new tables.

use chrono::Utc;
use diesel::Connection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;
use orchestrator_domain::{Actor, Progress, Role, Task, TaskStatus, TaskUpdate};
use orchestrator_ports::{
    ChangeRecord, DropletStore, ProgressReport, ReportOutcome, TaskFilter, TaskStore, Transition,
};
use orchestrator_postgres::{MIGRATIONS, PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::fixtures::{new_task, registration};
use orchestrator_testkit::pg::TestDatabase;
use uuid::Uuid;

async fn store() -> (TestDatabase, PgStore) {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    let store = PgStore::new(&database.url, PoolSettings::default()).expect("pool");
    store
        .register_droplet(registration(7, &["echo"]), Utc::now())
        .await
        .expect("droplet");
    (database, store)
}

/// A new task for droplets offering `echo`.
async fn new_echo_task(store: &PgStore, title: &str) -> Task {
    store
        .create_task(
            new_task(title, 5, Some("echo")),
            Uuid::new_v4(),
            ChangeRecord::default(),
            Utc::now(),
        )
        .await
        .expect("created")
}

async fn change(store: &PgStore, task: &Task, update: TaskUpdate, actor: Actor) -> Task {
    let next = task.apply(update, actor, Utc::now()).expect("allowed");
    store
        .apply_transition(Transition {
            expected_status: task.status,
            expected_droplet: task.assigned_droplet_id,
            expected_attempt: task.attempt,
            task: next,
            record: ChangeRecord::default(),
        })
        .await
        .expect("applied")
}

async fn assigned_to_seven(store: &PgStore, task: &Task) -> Task {
    change(store, task, TaskUpdate::Assign { droplet_id: 7 }, Actor::SYSTEM).await
}

/// The transaction that last wrote the task's `tasks` row.
async fn row_version(database: &TestDatabase, id: i64) -> i64 {
    database
        .count(&format!("SELECT xmin::text::bigint FROM tasks WHERE id = {id}"))
        .await
}

async fn listed(store: &PgStore, status: TaskStatus) -> Vec<i64> {
    let filter = TaskFilter {
        status: Some(status),
        limit: 50,
        ..TaskFilter::default()
    };
    let page = store.list_tasks(&filter).await.expect("list");
    page.tasks.iter().map(|t| t.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tasks_changes_leave_its_row_alone_and_every_read_shows_them() {
    let (database, store) = store().await;
    let created = new_echo_task(&store, "run").await;
    let written = row_version(&database, created.id).await;
    let queued = "SELECT count(*) FROM task_queue";
    assert_eq!(database.count(queued).await, 1, "a new task is queued");

    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let assigned = assigned_to_seven(&store, &created).await;
    assert_eq!(
        database.count(queued).await,
        0,
        "an assigned task leaves the queue"
    );
    assert_eq!(listed(&store, TaskStatus::Assigned).await, [created.id]);
    let running = change(&store, &assigned, TaskUpdate::Start, droplet).await;
    let progress = Progress {
        percent: Some(40),
        message: Some("reading".into()),
        at: Utc::now(),
    };
    let report = ProgressReport {
        task_id: running.id,
        droplet: running.assigned_droplet_id.expect("held"),
        attempt: running.attempt,
        progress,
    };
    let ReportOutcome::Applied { task: reported, .. } =
        store.record_progress(report).await.expect("progress")
    else {
        panic!("progress not recorded");
    };
    assert_eq!(reported.progress.as_ref().and_then(|p| p.percent), Some(40));

    let read = store.get_task(created.id).await.expect("read");
    assert_eq!(
        (
            read.status,
            read.assigned_droplet_id,
            read.attempt,
            read.started_at
        ),
        (TaskStatus::InProgress, Some(7), 1, running.started_at)
    );
    assert_eq!(read.progress, reported.progress);
    assert_eq!(listed(&store, TaskStatus::InProgress).await, [created.id]);
    assert!(listed(&store, TaskStatus::Pending).await.is_empty());
    assert_eq!(
        row_version(&database, created.id).await,
        written,
        "assignment, start and progress did not write the task's row"
    );
    assert_eq!(
        database
            .count("SELECT count(*) FROM task_runs WHERE status = 'in_progress'")
            .await,
        1
    );

    let done = change(
        &store,
        &reported,
        TaskUpdate::Complete {
            result: Some(serde_json::json!({"ok": true})),
        },
        droplet,
    )
    .await;
    assert_ne!(
        row_version(&database, created.id).await,
        written,
        "the end is written to the row"
    );
    assert_eq!(database.count("SELECT count(*) FROM task_runs").await, 0);
    let read = store.get_task(created.id).await.expect("read");
    assert_eq!(read, done);
    assert_eq!(
        read.progress, reported.progress,
        "the last progress stays with the finished task"
    );
    assert_eq!(listed(&store, TaskStatus::Completed).await, [created.id]);
    let history = store.task_history(created.id).await.expect("history");
    let moves: Vec<_> = history.iter().map(|h| h.to_status).collect();
    assert_eq!(
        moves,
        [
            TaskStatus::Pending,
            TaskStatus::Assigned,
            TaskStatus::InProgress,
            TaskStatus::Completed
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_or_retried_task_is_queued_again_and_assigned_again() {
    let (database, store) = store().await;
    let created = new_echo_task(&store, "again").await;
    let assigned = assigned_to_seven(&store, &created).await;
    let requeued = change(&store, &assigned, TaskUpdate::Requeue, Actor::SYSTEM).await;
    assert_eq!(
        (requeued.status, requeued.assigned_droplet_id, requeued.requeues),
        (TaskStatus::Pending, None, 1)
    );
    assert_eq!(database.count("SELECT count(*) FROM task_queue").await, 1);
    assert_eq!(database.count("SELECT count(*) FROM task_runs").await, 0);
    assert_eq!(store.get_task(created.id).await.expect("read"), requeued);

    let assigned = assigned_to_seven(&store, &requeued).await;
    let running = change(
        &store,
        &assigned,
        TaskUpdate::Start,
        Actor::from_roles(&[Role::AssignedDroplet]),
    )
    .await;
    let failed = change(
        &store,
        &running,
        TaskUpdate::Fail {
            error_message: Some("boom".into()),
        },
        Actor::from_roles(&[Role::AssignedDroplet]),
    )
    .await;
    assert_eq!(listed(&store, TaskStatus::Failed).await, [created.id]);
    let retried = change(
        &store,
        &failed,
        TaskUpdate::Retry {
            retry_after: Utc::now(),
        },
        Actor::SYSTEM,
    )
    .await;
    assert_eq!(
        (retried.status, retried.retry_count, retried.attempt),
        (TaskStatus::Pending, 1, 2)
    );
    assert_eq!(store.get_task(created.id).await.expect("read"), retried);
    assert_eq!(
        database.count("SELECT attempt::int8 FROM task_queue").await,
        2,
        "the retry is queued on its attempt"
    );
    let stale = store
        .apply_transition(Transition {
            expected_status: TaskStatus::Pending,
            expected_droplet: None,
            expected_attempt: 1,
            task: retried
                .apply(TaskUpdate::Cancel, Actor::from_roles(&[Role::Admin]), Utc::now())
                .expect("cancellable"),
            record: ChangeRecord::default(),
        })
        .await;
    assert!(stale.is_err(), "a change made for the earlier attempt is refused");
    let cancelled = change(
        &store,
        &retried,
        TaskUpdate::Cancel,
        Actor::from_roles(&[Role::Admin]),
    )
    .await;
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(database.count("SELECT count(*) FROM task_queue").await, 0);
    assert_eq!(store.get_task(created.id).await.expect("read"), cancelled);
}

/// Applies the migrations up to migration 17, the last before the live
/// state moved out of `tasks`, on a thread of its own: diesel's harness is
/// synchronous.
async fn migrate_to_the_layout_before_18(url: &str) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).expect("connect");
        conn.run_pending_migrations(MIGRATIONS).expect("migrate");
        loop {
            let applied = conn.applied_migrations().expect("applied");
            let last = applied
                .iter()
                .map(ToString::to_string)
                .max()
                .expect("some applied");
            if last.ends_with("000017") {
                break;
            }
            conn.revert_last_migration(MIGRATIONS).expect("revert");
        }
    })
    .await
    .expect("migration thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_moves_unfinished_work_into_the_queue_and_the_runs() {
    let database = TestDatabase::create().await;
    migrate_to_the_layout_before_18(&database.url).await;
    let loaded = database
        .count(
            "WITH d AS (
                 INSERT INTO droplets (droplet_id, name, endpoint, status, capabilities, max_concurrent_tasks)
                 VALUES (7, 'seven', 'http://10.0.0.7', 'active', '[\"echo\"]', 4) RETURNING id
             ), t AS (
                 INSERT INTO tasks (task_type, title, payload, status, assigned_droplet_id, assigned_at,
                                    started_at, completed_at, attempt, routing_lease_until)
                 SELECT 'old', s, '{}', s, CASE WHEN s <> 'pending' THEN d.id END,
                        CASE WHEN s <> 'pending' THEN now() END,
                        CASE WHEN s IN ('in_progress', 'completed') THEN now() END,
                        CASE WHEN s = 'completed' THEN now() END,
                        CASE WHEN s = 'pending' THEN 0 ELSE 1 END,
                        CASE WHEN s = 'pending' THEN now() END
                 FROM d, unnest(ARRAY['pending', 'assigned', 'in_progress', 'completed']) s
                 RETURNING 1
             )
             SELECT count(*) FROM t",
        )
        .await;
    assert_eq!(loaded, 4);
    run_migrations(&database.url)
        .await
        .expect("the last migration applies");

    assert_eq!(
        database
            .count("SELECT count(*) FROM task_queue q JOIN tasks t ON t.id = q.task_id WHERE t.title = 'pending' AND q.routing_lease_until IS NOT NULL")
            .await,
        1,
        "the pending task is queued with its lease"
    );
    assert_eq!(database.count("SELECT count(*) FROM task_runs").await, 2);
    assert_eq!(
        database
            .count("SELECT count(*) FROM tasks WHERE status NOT IN ('pending', 'completed')")
            .await,
        0,
        "an unfinished task's row says pending"
    );
    assert_eq!(
        database
            .count(
                "SELECT count(*) FROM tasks t JOIN task_runs r ON r.task_id = t.id
                 WHERE t.assigned_droplet_id IS NOT NULL OR t.assigned_at IS NOT NULL OR t.started_at IS NOT NULL"
            )
            .await,
        0,
        "a held task's row has no run of its own: its run row holds it"
    );
    let store = PgStore::new(&database.url, PoolSettings::default()).expect("pool");
    assert_eq!(
        store.schema_problems().await.expect("schema"),
        Vec::<String>::new()
    );
    let page = store
        .list_tasks(&TaskFilter {
            limit: 50,
            ..TaskFilter::default()
        })
        .await
        .expect("list");
    let mut shown: Vec<(String, TaskStatus, Option<i64>)> = page
        .tasks
        .into_iter()
        .map(|t| (t.title, t.status, t.assigned_droplet_id))
        .collect();
    shown.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        shown,
        [
            ("assigned".to_owned(), TaskStatus::Assigned, Some(7)),
            ("completed".to_owned(), TaskStatus::Completed, Some(7)),
            ("in_progress".to_owned(), TaskStatus::InProgress, Some(7)),
            ("pending".to_owned(), TaskStatus::Pending, None),
        ]
    );
    let counts = store.count_live_tasks().await.expect("counts");
    assert_eq!((counts.pending, counts.held), (1, 2));
    let by_status = store.count_tasks_by_status().await.expect("by status");
    let expected = [
        TaskStatus::Pending,
        TaskStatus::Assigned,
        TaskStatus::InProgress,
        TaskStatus::Completed,
    ]
    .map(|s| (s, 1))
    .into();
    assert_eq!(
        by_status, expected,
        "the kept counts start from the tasks there are"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_are_kept_by_every_write_and_read_without_a_scan() {
    let (database, store) = store().await;
    let mut tasks = Vec::new();
    for n in 0..4 {
        let task = new_echo_task(&store, &format!("count {n}")).await;
        tasks.push(task);
    }
    let droplet = Actor::from_roles(&[Role::AssignedDroplet]);
    let assigned = change(
        &store,
        &tasks[0],
        TaskUpdate::Assign { droplet_id: 7 },
        Actor::SYSTEM,
    )
    .await;
    let running = change(&store, &assigned, TaskUpdate::Start, droplet).await;
    change(&store, &running, TaskUpdate::Complete { result: None }, droplet).await;
    change(
        &store,
        &tasks[1],
        TaskUpdate::Cancel,
        Actor::from_roles(&[Role::Admin]),
    )
    .await;
    change(
        &store,
        &tasks[2],
        TaskUpdate::Assign { droplet_id: 7 },
        Actor::SYSTEM,
    )
    .await;
    let later = Utc::now() + chrono::Duration::days(1);
    assert_eq!(store.delete_finished_tasks(later, 1).await.expect("retention"), 1);

    let truth = |status: &str| format!("SELECT count(*) FROM task_view WHERE status = '{status}'");
    let by_status = store.count_tasks_by_status().await.expect("counts");
    for status in [
        TaskStatus::Pending,
        TaskStatus::Assigned,
        TaskStatus::Completed,
        TaskStatus::Cancelled,
    ] {
        let counted = by_status.get(&status).copied().unwrap_or(0);
        assert_eq!(
            counted as i64,
            database.count(&truth(status.as_str())).await,
            "{status}"
        );
    }
    assert_eq!(
        database
            .count("SELECT coalesce(sum(n), 0)::int8 FROM task_counts")
            .await,
        database.count("SELECT count(*) FROM tasks").await
    );

    // A count read from the kept counts shows what they hold: no scan of
    // `tasks` stands behind the overview or an unfiltered list's total.
    database
        .count("WITH c AS (UPDATE task_counts SET n = n + 1000 WHERE status = 'pending' RETURNING 1) SELECT count(*) FROM c")
        .await;
    let pending = store.count_tasks_by_status().await.expect("counts")[&TaskStatus::Pending];
    let listed = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Pending),
            limit: 10,
            ..TaskFilter::default()
        })
        .await
        .expect("list");
    assert!(
        pending >= 1000 && listed.total == pending,
        "{pending} {}",
        listed.total
    );
}
