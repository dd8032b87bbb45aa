//! Grouped task creation: tasks submitted together share statements, yet
//! each gets its own row, its own first history entry and its own answer.

use std::collections::HashSet;

use chrono::Utc;
use futures_util::future::join_all;
use orchestrator_domain::TaskStatus;
use orchestrator_ports::{ChangeRecord, TaskStore};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::fixtures::new_task;
use orchestrator_testkit::pg::TestDatabase;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_each_get_their_row_history_and_answer() {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    let store = PgStore::new(&database.url, PoolSettings::default()).expect("pool");
    let submissions = (0..300).map(|n| {
        let store = store.clone();
        async move {
            let mut task = new_task("grouped", 1 + n % 10, Some("echo"));
            task.title = format!("task {n}");
            task.payload = json!({ "n": n });
            let record = ChangeRecord {
                changed_by: Some(format!("creator-{n}")),
                reason: Some("task created".into()),
                metadata: Some(json!({ "n": n })),
            };
            let trace = Uuid::new_v4();
            let created = store
                .create_task(task, trace, record, Utc::now())
                .await
                .expect("created");
            (n, trace, created)
        }
    });
    let results = join_all(submissions).await;

    let ids: HashSet<_> = results.iter().map(|(_, _, task)| task.id).collect();
    assert_eq!(ids.len(), 300, "one row per task");
    for (n, trace, task) in &results {
        // Each answer is the caller's own task, not a neighbour's of the batch.
        assert_eq!((task.trace_id, &task.title), (*trace, &format!("task {n}")));
        assert_eq!(
            (task.payload.clone(), task.status),
            (json!({ "n": n }), TaskStatus::Pending)
        );
        assert_eq!(task.created_by.as_deref(), Some(format!("creator-{n}").as_str()));
        let history = store.task_history(task.id).await.expect("history");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].metadata, Some(json!({ "n": n })));
        assert_eq!(history[0].changed_by, task.created_by);
    }
    assert_eq!(
        database
            .count("SELECT count(*) AS n FROM task_state_history")
            .await,
        300
    );
}
