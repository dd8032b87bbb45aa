//! Two orchestrators on one PostgreSQL database: every task is assigned
//! exactly once and none is lost. (PostgreSQL only: replicas share a database.)

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use orchestrator_testkit::pg::TestDatabase;
use orchestrator_tests::{TestApp, eventually, next_event, spawn_replica};
use serde_json::json;
use tokio_postgres::NoTls;

const TASKS: usize = 5_000;
const DROPLETS: i64 = 20;
/// Enough room for every task: 20 droplets of 250 slots.
const CAPACITY: u32 = 250;

async fn submit(app: &TestApp, token: &str, n: usize) {
    let body = json!({ "task_type": "replica", "title": format!("task {n}"), "required_capability": "work" });
    let reply = app.post("/tasks", token, body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_assign_every_task_exactly_once() {
    let database = TestDatabase::create().await;
    let replicas = [
        spawn_replica(&database.url, &[]).await,
        spawn_replica(&database.url, &[]).await,
    ];
    for id in 1..=DROPLETS {
        replicas[(id % 2) as usize]
            .register(id, &["work"], CAPACITY)
            .await;
    }

    let started = Instant::now();
    let tokens = [replicas[0].writer("loader"), replicas[1].writer("loader")];
    stream::iter(0..TASKS)
        .for_each_concurrent(16, |n| submit(&replicas[n % 2], &tokens[n % 2], n))
        .await;

    let (client, connection) = tokio_postgres::connect(&database.url, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    loop {
        let pending = scalar(&client, "SELECT count(*) FROM task_view WHERE status = 'pending'").await;
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{pending} tasks still pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tasks = scalar(&client, "SELECT count(*) FROM tasks").await;
    assert_eq!(tasks, TASKS as i64, "no task lost");
    let assignments = scalar(
        &client,
        "SELECT count(*) FROM task_state_history WHERE to_status = 'assigned'",
    )
    .await;
    assert_eq!(assignments, TASKS as i64, "one assignment row per task");
    let twice = scalar(
        &client,
        "SELECT count(*) FROM (SELECT task_id FROM task_state_history WHERE to_status = 'assigned' \
         GROUP BY task_id HAVING count(*) <> 1) AS t",
    )
    .await;
    assert_eq!(twice, 0, "no task assigned twice");
    let unassigned = scalar(
        &client,
        "SELECT count(*) FROM task_view WHERE status <> 'assigned' OR assigned_droplet_id IS NULL",
    )
    .await;
    assert_eq!(unassigned, 0);
    let over = scalar(
        &client,
        "SELECT count(*) FROM (SELECT d.id FROM droplets d JOIN task_view t ON t.assigned_droplet_id = d.id \
         GROUP BY d.id, d.max_concurrent_tasks HAVING count(*) > d.max_concurrent_tasks) AS o",
    )
    .await;
    assert_eq!(over, 0, "no droplet above its capacity");
    let routers = scalar(
        &client,
        "SELECT count(DISTINCT metadata->>'router') FROM task_state_history WHERE to_status = 'assigned'",
    )
    .await;
    assert_eq!(routers, 2, "both replicas routed");
    eprintln!(
        "{TASKS} tasks submitted and assigned across two replicas in {:?}",
        started.elapsed()
    );
}

/// A feed client of one replica sees the changes made through the other,
/// large tasks included (they travel as references and are read back).
#[tokio::test]
async fn events_reach_the_feeds_of_every_replica() {
    let database = TestDatabase::create().await;
    let a = spawn_replica(&database.url, &[]).await;
    let b = spawn_replica(&database.url, &[]).await;
    let mut tasks_on_b = b.feed(&format!("/ws/tasks?token={}", b.admin())).await;
    let mut droplets_on_b = b.feed(&format!("/ws/droplets?token={}", b.admin())).await;
    a.register(8, &["x"], 5).await;
    let small = a.create_task(5, Some("x")).await;
    let body = json!({ "task_type": "a", "title": "t", "required_capability": "none", "description": "d".repeat(10_000) });
    let reply = a.post("/tasks", &a.writer("alice"), body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let large = reply.payload()["task_id"].as_i64().expect("id");

    let registered = next_event(&mut droplets_on_b, Duration::from_secs(5)).await;
    assert_eq!(registered["event"], "droplet_registered");
    assert_eq!(registered["data"]["droplet_id"], 8);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut tasks_on_b, Duration::from_secs(5)).await;
        seen.push((
            event["event"].as_str().unwrap_or("").to_owned(),
            event["data"]["id"].as_i64(),
        ));
    }
    assert!(seen.contains(&("task_created".into(), Some(small))), "{seen:?}");
    assert!(seen.contains(&("task_assigned".into(), Some(small))), "{seen:?}");
    assert!(seen.contains(&("task_created".into(), Some(large))), "{seen:?}");
    let of_small: Vec<&str> = seen
        .iter()
        .filter(|e| e.1 == Some(small))
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(of_small, ["task_created", "task_assigned"], "in commit order");
}

/// A replica routes a delayed task it never heard of when it becomes due:
/// its alarm is set from the database at start, not only from its own
/// events. The replica that took the task has its router paused, and
/// neither sweeps during the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_is_routed_when_due_by_a_replica_started_after_it() {
    let database = TestDatabase::create().await;
    let quiet = [("ROUTER_INTERVAL", "3600")];
    let first = spawn_replica(&database.url, &quiet).await;
    let paused = first
        .post(
            "/management/scheduler/jobs/task_router/pause",
            &first.admin(),
            json!({}),
        )
        .await;
    assert_eq!(paused.status, 200, "{paused:?}");
    first.register(1, &["work"], 1).await;
    let body = json!({ "task_type": "later", "required_capability": "work", "delay_seconds": 3 });
    let created = first.post("/tasks", &first.writer("alice"), body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.payload()["task_id"].as_i64().expect("id");

    let second = spawn_replica(&database.url, &quiet).await;
    let task = second
        .wait_for_status(id, "assigned", Duration::from_secs(15))
        .await;
    let run_at: chrono::DateTime<chrono::Utc> = task["run_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("run_at");
    let assigned_at: chrono::DateTime<chrono::Utc> = task["assigned_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("assigned_at");
    assert!(assigned_at >= run_at, "{task}");
}

/// Two replicas firing one schedule of seconds make one task per fire
/// time: the fire's compare-and-set and its key (schedule, fire time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_make_one_task_per_fire_time_of_a_schedule() {
    let database = TestDatabase::create().await;
    let replicas = [
        spawn_replica(&database.url, &[]).await,
        spawn_replica(&database.url, &[]).await,
    ];
    let body = json!({ "name": "tick", "cron": "* * * * * *", "task": { "task_type": "tick" } });
    let created = replicas[0]
        .post("/schedules", &replicas[0].writer("alice"), body)
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let (client, connection) = tokio_postgres::connect(&database.url, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let fired = "SELECT count(*) FROM task_state_history WHERE reason LIKE 'fired by schedule tick%'";
    eventually(20, "four fires", || async { scalar(&client, fired).await >= 4 }).await;
    let deleted = replicas[1]
        .delete("/schedules/tick", &replicas[1].writer("alice"))
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let tasks = scalar(&client, fired).await;
    let fire_times = scalar(
        &client,
        "SELECT count(DISTINCT metadata->>'fire_at') FROM task_state_history \
         WHERE reason LIKE 'fired by schedule tick%'",
    )
    .await;
    assert_eq!(tasks, fire_times, "one task per fire time");
}

/// Two replicas routing one key's backlog at once never run more than its
/// limit: each assignment locks the key's limit and counts its runs in the
/// same commit. A sampler watches the run rows the whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_run_more_of_a_key_than_its_limit() {
    let database = TestDatabase::create().await;
    let replicas = [
        spawn_replica(&database.url, &[]).await,
        spawn_replica(&database.url, &[]).await,
    ];
    for (i, replica) in replicas.iter().enumerate() {
        replica.register(3 + i as i64, &["export"], 20).await;
    }
    let set = replicas[0]
        .put(
            "/concurrency-limits/tenant-a",
            &replicas[0].admin(),
            json!({ "max_running": 3 }),
        )
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    let (client, connection) = tokio_postgres::connect(&database.url, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let running = "SELECT count(*) FROM task_runs WHERE concurrency_key = 'tenant-a'";
    let body =
        json!({ "task_type": "export", "required_capability": "export", "concurrency_key": "tenant-a" });
    let mut ids = Vec::new();
    for n in 0..20 {
        let replica = &replicas[n % 2];
        let created = replica
            .post("/tasks", &replica.writer("alice"), body.clone())
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        ids.push(created.payload()["task_id"].as_i64().expect("id"));
        assert!(
            scalar(&client, running).await <= 3,
            "over the limit while submitting"
        );
    }
    // Each round, finish what runs (on the replica that did not assign it)
    // and check the key never holds more than its limit.
    let mut finished = 0;
    while finished < ids.len() {
        eventually(30, "the next tasks of the key assigned", || async {
            let held = scalar(&client, running).await;
            assert!(held <= 3, "{held} tasks of the key run at once");
            held > 0
        })
        .await;
        for id in &ids {
            let task = replicas[0].task(*id).await;
            if task["status"] != "assigned" {
                continue;
            }
            let droplet = task["assigned_droplet_id"].as_i64().expect("droplet");
            let replica = &replicas[finished % 2];
            replica
                .set_status(*id, &replica.droplet(droplet), "in_progress")
                .await;
            let done = replica
                .patch(
                    &format!("/tasks/{id}"),
                    &replica.droplet(droplet),
                    json!({ "status": "completed" }),
                )
                .await;
            assert_eq!(done.status, 200, "{done:?}");
            finished += 1;
        }
    }
}
