//! A schedule's fire keys stay bounded: each fire deletes the keys of the
//! schedule's earlier fire times, which its last fire time already guards.

use orchestrator_domain::{NewSchedule, ScheduleDraft, TaskDraft};
use orchestrator_ports::{ChangeRecord, Fire, FiredTask, ScheduleStore};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::fixtures::{at, new_task};
use orchestrator_testkit::pg::TestDatabase;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_keeps_the_key_of_its_last_fire_only() {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    let store = PgStore::new(&database.url, PoolSettings::default()).expect("pool");
    let draft = ScheduleDraft {
        name: "tick".into(),
        cron: "* * * * *".into(),
        timezone: None,
        task: TaskDraft {
            task_type: "tick".into(),
            ..TaskDraft::default()
        },
        overlap: None,
        catch_up: None,
    };
    let schedule = NewSchedule::parse(draft, at(0)).expect("valid");
    store
        .create_schedule(schedule, None, at(0))
        .await
        .expect("created");
    let mut last = None;
    for minute in 1..=5 {
        let fire = Fire {
            schedule: "tick".into(),
            expected_last_fire: last,
            at: at(minute * 60),
            task: Some(FiredTask {
                task: new_task("tick", 5, None),
                trace_id: Uuid::new_v4(),
                record: ChangeRecord::default(),
                created_at: at(minute * 60),
            }),
        };
        store.fire_schedule(fire).await.expect("fired");
        last = Some(at(minute * 60));
    }
    assert_eq!(database.count("SELECT count(*) FROM tasks").await, 5);
    assert_eq!(
        database.count("SELECT count(*) FROM schedule_fires").await,
        1,
        "one key a schedule"
    );
}
