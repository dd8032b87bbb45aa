//! A routing round on PostgreSQL is one transaction that holds the tasks'
//! row locks instead of writing a lease: a task left pending is not
//! written to, and a round cut short (its process dies) hides nothing.

use std::time::Duration;

use chrono::Utc;
use orchestrator_domain::{Actor, Task, TaskStatus, TaskUpdate};
use orchestrator_ports::{ChangeRecord, DropletStore, RoundPlanner, RoutableQuery, TaskStore, Transition};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::fixtures::{capability, new_task, registration};
use orchestrator_testkit::pg::TestDatabase;
use uuid::Uuid;

async fn create_pending(store: &PgStore) -> Task {
    store
        .create_task(
            new_task("echo", 5, Some("echo")),
            Uuid::new_v4(),
            ChangeRecord::default(),
            Utc::now(),
        )
        .await
        .expect("create")
}

async fn store_with_a_pending_task() -> (TestDatabase, PgStore, Task) {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    let store = PgStore::new(&database.url, PoolSettings::default()).expect("pool");
    store
        .register_droplet(registration(7, &["echo"]), Utc::now())
        .await
        .expect("register");
    let task = create_pending(&store).await;
    (database, store, task)
}

fn query() -> RoutableQuery {
    RoutableQuery {
        capabilities: vec![capability("echo")],
        include_unconstrained: true,
        limit: 10,
        lease: Duration::from_secs(30),
    }
}

/// Assigns every task it is given to droplet 7, or none.
struct ToSeven {
    assign: bool,
    seen: Vec<i64>,
}

impl RoundPlanner for ToSeven {
    fn plan(&mut self, pending: &[Task]) -> Vec<Transition> {
        self.seen.extend(pending.iter().map(|t| t.id));
        if !self.assign {
            return Vec::new();
        }
        pending
            .iter()
            .map(|task| Transition {
                expected_status: task.status,
                expected_droplet: None,
                task: task
                    .apply(TaskUpdate::Assign { droplet_id: 7 }, Actor::SYSTEM, Utc::now())
                    .expect("assignable"),
                record: ChangeRecord::default(),
            })
            .collect()
    }
}

/// Assigns every task to droplet 7, the last with a history record the
/// database refuses (JSONB holds no NUL character).
struct OneRefused;

impl RoundPlanner for OneRefused {
    fn plan(&mut self, pending: &[Task]) -> Vec<Transition> {
        let mut plans = ToSeven {
            assign: true,
            seen: Vec::new(),
        }
        .plan(pending);
        if let Some(last) = plans.last_mut() {
            last.record.metadata = Some(serde_json::json!({ "note": "\u{0}" }));
        }
        plans
    }
}

/// Dies in the middle of the round, as a killed process would.
struct Dies;

impl RoundPlanner for Dies {
    fn plan(&mut self, _: &[Task]) -> Vec<Transition> {
        panic!("the process dies mid-round");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_left_pending_is_not_written_to() {
    let (database, store, task) = store_with_a_pending_task().await;
    let mut planner = ToSeven {
        assign: false,
        seen: Vec::new(),
    };
    let round = store.route_round(&query(), &mut planner).await.expect("round");
    assert_eq!(
        (round.claimed, planner.seen.as_slice()),
        (1, [task.id].as_slice())
    );
    let leased = database
        .count("SELECT count(*) FROM tasks WHERE routing_lease_until IS NOT NULL")
        .await;
    assert_eq!(leased, 0, "no lease is written");
    let updated = store.get_task(task.id).await.expect("get");
    assert_eq!(updated.updated_at, task.updated_at, "the row is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_cut_short_hides_nothing() {
    let (_database, store, task) = store_with_a_pending_task().await;
    let store = std::sync::Arc::new(store);
    let dying = store.clone();
    let died =
        tokio::spawn(async move { dying.route_round(&query(), &mut Dies).await.map(|r| r.claimed) }).await;
    assert!(died.is_err(), "the round died");

    // At once, not after a lease: another round (another replica) routes it.
    let mut planner = ToSeven {
        assign: true,
        seen: Vec::new(),
    };
    let round = store.route_round(&query(), &mut planner).await.expect("round");
    assert_eq!(round.claimed, 1, "the task is not hidden by the round that died");
    let assigned = round
        .outcomes
        .into_iter()
        .next()
        .expect("an outcome")
        .expect("assigned");
    assert_eq!(
        (assigned.status, assigned.assigned_droplet_id),
        (TaskStatus::Assigned, Some(7))
    );
    let history = store.task_history(task.id).await.expect("history");
    assert_eq!(history.len(), 2, "created, then assigned once: {history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_the_database_refuses_fails_alone() {
    let (_database, store, first) = store_with_a_pending_task().await;
    let second = create_pending(&store).await;
    let round = store
        .route_round(&query(), &mut OneRefused)
        .await
        .expect("the round goes on");
    let outcomes: Vec<bool> = round.outcomes.iter().map(Result::is_ok).collect();
    assert_eq!(outcomes, [true, false], "{:?}", round.outcomes);
    assert_eq!(
        store.get_task(first.id).await.expect("get").status,
        TaskStatus::Assigned
    );
    assert_eq!(
        store.get_task(second.id).await.expect("get").status,
        TaskStatus::Pending
    );
}
