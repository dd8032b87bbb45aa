//! Ids that grow with use are 64-bit: a store whose sequences have passed
//! 2^31 creates, moves, reads and audits tasks and heartbeats as before.

use chrono::Utc;
use orchestrator_domain::{Actor, DropletStatus, HeartbeatReport, TaskStatus, TaskUpdate};
use orchestrator_ports::{ChangeRecord, DropletStore, IdempotencyKey, OnceCreated, TaskStore, Transition};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::fixtures::{new_task, registration};
use orchestrator_testkit::pg::TestDatabase;
use uuid::Uuid;

/// Past the largest 32-bit id.
const WIDE: i64 = 3_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_growing_id_goes_past_32_bits() {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    for sequence in [
        "tasks_id_seq",
        "task_state_history_id_seq",
        "heartbeats_id_seq",
        "droplets_id_seq",
    ] {
        database
            .count(&format!("SELECT setval('{sequence}', {WIDE})"))
            .await;
    }
    let store = PgStore::new(&database.url, PoolSettings::default())
        .expect("pool")
        .with_heartbeat_flush_every(std::time::Duration::from_millis(10));
    let now = Utc::now();
    store
        .register_droplet(registration(7, &["echo"]), now)
        .await
        .expect("a droplet with a wide internal id");
    let task = store
        .create_task(
            new_task("wide", 5, Some("echo")),
            Uuid::new_v4(),
            ChangeRecord::default(),
            now,
        )
        .await
        .expect("created");
    assert!(task.id > WIDE, "the task's id is {}", task.id);

    let assigned = task
        .apply(TaskUpdate::Assign { droplet_id: 7 }, Actor::SYSTEM, now)
        .expect("assignable");
    let saved = store
        .apply_transition(Transition {
            expected_status: TaskStatus::Pending,
            expected_droplet: None,
            expected_attempt: task.attempt,
            task: assigned,
            record: ChangeRecord::default(),
        })
        .await
        .expect("assigned");
    assert_eq!((saved.id, saved.assigned_droplet_id), (task.id, Some(7)));
    let history = store.task_history(task.id).await.expect("history");
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|row| row.id > WIDE && row.task_id == task.id));

    let report = HeartbeatReport {
        status: Some(DropletStatus::Active),
        metrics: None,
    };
    store
        .record_heartbeat(7, report, now, std::time::Duration::ZERO)
        .await
        .expect("beat");
    store.flush_heartbeats().await.expect("written");
    assert_eq!(
        database
            .count(&format!("SELECT count(*) FROM heartbeats WHERE id > {WIDE}"))
            .await,
        1
    );

    let key = IdempotencyKey {
        caller: "alice".into(),
        key: "k".into(),
        fingerprint: "f".into(),
    };
    let tasks = || vec![(new_task("wide", 5, None), Uuid::new_v4())];
    let first = store
        .create_tasks_once(
            &key,
            tasks(),
            ChangeRecord::default(),
            now,
            now - chrono::Duration::days(1),
        )
        .await
        .expect("created once");
    let again = store
        .create_tasks_once(
            &key,
            tasks(),
            ChangeRecord::default(),
            now,
            now - chrono::Duration::days(1),
        )
        .await
        .expect("replayed");
    let (OnceCreated::Created(made), OnceCreated::Replayed(found)) = (first, again) else {
        panic!("the key creates once, then replays");
    };
    assert_eq!(made[0].id, found[0].id);
}
