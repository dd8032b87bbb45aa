//! A routing round on PostgreSQL is one transaction that holds the tasks'
//! row locks instead of writing a lease: a task left pending is not
//! written to, and a round cut short (its process dies) hides nothing.

use std::time::Duration;

use chrono::Utc;
use orchestrator_domain::{Task, TaskStatus};
use orchestrator_ports::{ChangeRecord, DropletStore, RoundPlanner, RoutableQuery, TaskStore, Transition};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::fixtures::{assign_all_to, capability, new_task, registration};
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
        assign_all_to(7, pending)
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
        .count("SELECT count(*) FROM task_queue WHERE routing_lease_until IS NOT NULL")
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

/// The database the child round uses.
const CHILD_DATABASE: &str = "ROUTING_CHILD_DATABASE";
/// The line the child prints once it holds the round's tasks.
const HOLDING: &str = "holding the round's tasks: ";

/// Says on stdout that it holds the round's tasks, then never returns: the
/// process is killed while the round is open.
struct Hangs;

impl RoundPlanner for Hangs {
    fn plan(&mut self, pending: &[Task]) -> Vec<Transition> {
        use std::io::Write as _;
        let mut out = std::io::stdout();
        writeln!(out, "{HOLDING}{}", pending.len()).expect("tell the parent");
        out.flush().expect("tell the parent");
        loop {
            std::thread::park();
        }
    }
}

/// The process that is killed: run only by the test below, which starts
/// this test binary again with the database's URL set.
#[tokio::test]
#[ignore = "run as a child process by a_round_killed_between_claim_and_assignment_strands_nothing"]
async fn child_round_killed_mid_plan() {
    let Ok(url) = std::env::var(CHILD_DATABASE) else {
        panic!("run by its parent test only");
    };
    let store = PgStore::new(&url, PoolSettings::default()).expect("pool");
    let _ = store.route_round(&query(), &mut Hangs).await;
}

/// Waits for the child to say it holds the round's tasks; how many.
fn wait_for_holding(child: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    lines
        .find_map(|line| line.ok()?.strip_prefix(HOLDING).map(str::to_owned))
        .expect("the child ended without holding the task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_killed_between_claim_and_assignment_strands_nothing() {
    let (database, store, task) = store_with_a_pending_task().await;
    let mut child = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "child_round_killed_mid_plan",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_DATABASE, &database.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the child round");
    let held = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || (wait_for_holding(&mut child), child)),
    )
    .await
    .expect("the child claimed the task in time")
    .expect("read the child");
    let (holding, mut child) = held;
    assert_eq!(holding, "1");
    // The child holds the task's row lock in an open round: another round
    // does not see it (SKIP LOCKED), so no replica can assign it twice.
    let mut planner = ToSeven {
        assign: false,
        seen: Vec::new(),
    };
    let meanwhile = store.route_round(&query(), &mut planner).await.expect("round");
    assert_eq!(
        meanwhile.claimed, 0,
        "a task in an open round is not routed twice"
    );

    child.kill().expect("kill -9 the child");
    child.wait().expect("reap the child");
    // The lock goes with the child's connection: waiting for it (a locking
    // read blocks until then) takes well under the router's one-second
    // sweep, where a lease would have hidden the task for 30 s.
    let lock = format!(
        "SELECT count(*) FROM (SELECT task_id FROM task_queue WHERE task_id = {} FOR UPDATE) q",
        task.id
    );
    tokio::time::timeout(Duration::from_secs(1), database.count(&lock))
        .await
        .expect("the killed round's lock was released within a second");
    let mut planner = ToSeven {
        assign: true,
        seen: Vec::new(),
    };
    let round = store.route_round(&query(), &mut planner).await.expect("round");
    let assigned = round
        .outcomes
        .into_iter()
        .next()
        .expect("the next round sees the task")
        .expect("assigned");
    assert_eq!((assigned.id, assigned.assigned_droplet_id), (task.id, Some(7)));
    let history = store.task_history(task.id).await.expect("history");
    assert_eq!(history.len(), 2, "created, then assigned once: {history:?}");
}
