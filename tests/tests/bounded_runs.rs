//! Work never sticks: a droplet that restarts gets its work taken back at
//! once, runs are bounded by their timeout and extended by progress, a
//! deactivated droplet drains, a task no droplet starts stops bouncing, and
//! only a task's holder can write refused reports into its history.

use std::time::Duration;

use orchestrator_tests::{TestApp, eventually, next_event, spawn_app, spawn_app_with};
use serde_json::{Value, json};

/// Creates a task needing `x` with `extra` fields in its body; returns its id.
async fn create(app: &TestApp, extra: Value) -> i64 {
    let mut body = json!({ "task_type": "t", "required_capability": "x" });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = app.post("/tasks", &app.writer("alice"), body).await;
    assert_eq!(reply.status, 201, "create: {reply:?}");
    reply.payload()["task_id"].as_i64().expect("task_id")
}

/// Waits until droplet 1 holds task `id`, then starts it; returns its attempt.
async fn start(app: &TestApp, id: i64) -> i64 {
    app.wait_for_status(id, "assigned", Duration::from_secs(5)).await;
    let reply = app.set_status(id, &app.droplet(1), "in_progress").await;
    assert_eq!(reply.status, 200, "start: {reply:?}");
    reply.payload()["task"]["attempt"].as_i64().expect("attempt")
}

fn reasons(task: &Value) -> Vec<String> {
    task["state_history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|row| row["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// How many times the `health_monitor` job (recovery) has run.
async fn health_monitor_runs(app: &TestApp) -> u64 {
    let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
    jobs.payload()["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == "health_monitor"))
        .and_then(|job| job["runs"].as_u64())
        .unwrap_or(0)
}

async fn progress(app: &TestApp, id: i64, token: &str, body: Value) -> orchestrator_tests::Reply {
    app.post(&format!("/tasks/{id}/progress"), token, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_that_registers_again_has_its_work_taken_back_at_once() {
    // No recovery pass runs during the test: the registration itself rescues.
    let app = spawn_app_with(&[("HEARTBEAT_CHECK_INTERVAL", "3600")]).await;
    app.register(1, &["x"], 2).await;
    let running = create(&app, json!({})).await;
    start(&app, running).await;
    let waiting = create(&app, json!({})).await;
    app.wait_for_status(waiting, "assigned", Duration::from_secs(5))
        .await;

    // Supervised restart: the same droplet, a new process.
    app.register(1, &["x"], 2).await;
    let rescued = app.task(running).await;
    assert_eq!(rescued["retry_count"], 1, "failed and retried at once: {rescued}");
    assert!(
        reasons(&rescued)
            .iter()
            .any(|r| r.contains("restarted while running it")),
        "{rescued}"
    );
    let requeued = app.task(waiting).await;
    assert!(
        reasons(&requeued)
            .iter()
            .any(|r| r.contains("restarted before starting it")),
        "{requeued}"
    );
    assert_eq!(requeued["requeues"], 1);

    // The new process resumes after a blip: it keeps what it holds now.
    let held = app
        .wait_for_status(waiting, "assigned", Duration::from_secs(5))
        .await;
    let body = json!({
        "droplet_id": 1, "name": "droplet 1", "endpoint": "http://127.0.0.1:9/1",
        "capabilities": ["x"], "max_concurrent_tasks": 2, "resume": true,
    });
    let reply = app.post("/droplets/register", &app.droplet(1), body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let kept = app.task(waiting).await;
    assert_eq!(
        (&kept["status"], &kept["attempt"]),
        (&json!("assigned"), &held["attempt"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_progress_times_out_and_progress_extends_it() {
    let app = spawn_app_with(&[
        ("HEARTBEAT_CHECK_INTERVAL", "1"),
        ("RETRY_BACKOFF_BASE_SECONDS", "1"),
    ])
    .await;
    app.register(1, &["x"], 4).await;
    // The busy run starts first with the shorter timeout: by the time the
    // silent one times out, the busy one would have timed out twice over
    // but for its progress.
    let busy = create(&app, json!({ "timeout_seconds": 1 })).await;
    let attempt = start(&app, busy).await;
    let silent = create(&app, json!({ "timeout_seconds": 3, "max_retries": 0 })).await;
    start(&app, silent).await;
    let mut feed = app.feed(&format!("/ws/tasks?token={}", app.admin())).await;

    let droplet = app.droplet(1);
    let first = progress(
        &app,
        busy,
        &droplet,
        json!({ "attempt": attempt, "progress": 10, "message": "started" }),
    )
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.payload()["task"]["progress"]["percent"], 10);
    assert_eq!(first.payload()["task"]["progress"]["message"], "started");
    loop {
        let event = next_event(&mut feed, Duration::from_secs(5)).await;
        if event["event"] == "task_progress" {
            assert_eq!(event["data"]["id"], busy);
            break;
        }
    }
    eventually(
        10,
        "the silent run times out while the busy one reports",
        || async {
            let reply = progress(
                &app,
                busy,
                &droplet,
                json!({ "attempt": attempt, "progress": 50 }),
            )
            .await;
            assert_eq!(reply.status, 200, "{reply:?}");
            app.task(silent).await["status"] == "failed"
        },
    )
    .await;
    let timed_out = app.task(silent).await;
    assert!(
        timed_out["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("timed out")),
        "{timed_out}"
    );
    let busy_now = app.task(busy).await;
    assert_eq!(
        busy_now["status"], "in_progress",
        "progress kept it alive: {busy_now}"
    );
    assert_eq!(
        busy_now["state_history"].as_array().map(Vec::len),
        Some(3),
        "progress writes no history row"
    );

    let stale = progress(&app, busy, &droplet, json!({ "attempt": attempt + 1 })).await;
    assert_eq!((stale.status, stale.error_code()), (409, "stale_attempt"));
    app.register(2, &["y"], 1).await;
    let stranger = progress(&app, busy, &app.droplet(2), json!({ "attempt": attempt })).await;
    assert_eq!(stranger.status, 403);
    let bad = progress(
        &app,
        busy,
        &droplet,
        json!({ "attempt": attempt, "progress": 101 }),
    )
    .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (422, "validation_failed"),
        "{bad:?}"
    );
    let done = app
        .patch(
            &format!("/tasks/{busy}"),
            &droplet,
            json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(done.status, 200);
    let late = progress(&app, busy, &droplet, json!({ "attempt": attempt })).await;
    assert_eq!((late.status, late.error_code()), (409, "invalid_transition"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_droplet_drains_and_requeue_takes_its_work_back() {
    let app = spawn_app_with(&[("HEARTBEAT_CHECK_INTERVAL", "1")]).await;
    app.register(1, &["x"], 2).await;
    let running = create(&app, json!({})).await;
    start(&app, running).await;
    let waiting = create(&app, json!({})).await;
    app.wait_for_status(waiting, "assigned", Duration::from_secs(5))
        .await;

    let path = "/droplets/1/deactivate";
    let reply = app.post(path, &app.admin(), json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let droplet = app.droplet(1);
    // Two recovery passes run meanwhile; the droplet still beats.
    let passes = health_monitor_runs(&app).await;
    eventually(10, "two recovery passes after the drain", || async {
        app.post("/droplets/1/heartbeat", &droplet, json!({})).await;
        health_monitor_runs(&app).await >= passes + 2
    })
    .await;
    assert_eq!(app.task(running).await["status"], "in_progress");
    assert_eq!(app.task(waiting).await["status"], "assigned");
    let done = app
        .patch(
            &format!("/tasks/{running}"),
            &droplet,
            json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(done.status, 200, "a draining droplet may still report: {done:?}");
    let fresh = app.after_a_routing_pass(create(&app, json!({}))).await;
    assert_eq!(app.task(fresh).await["status"], "pending", "no new work");

    let taken = app
        .post(&format!("{path}?requeue=true"), &app.admin(), json!({}))
        .await;
    assert_eq!(taken.status, 200, "{taken:?}");
    assert_eq!(taken.payload()["tasks_taken_back"], 1);
    let requeued = app.task(waiting).await;
    assert_eq!(requeued["status"], "pending");
    assert!(
        reasons(&requeued)
            .iter()
            .any(|r| r.contains("deactivated with requeue"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_droplet_starts_fails_after_max_requeues() {
    let app = spawn_app_with(&[
        ("HEARTBEAT_CHECK_INTERVAL", "1"),
        ("ASSIGNMENT_ACK_TIMEOUT", "1"),
        ("MAX_REQUEUES", "2"),
    ])
    .await;
    app.register(1, &["x"], 1).await;
    let id = create(&app, json!({ "max_retries": 0 })).await;
    let task = app.wait_for_status(id, "failed", Duration::from_secs(15)).await;
    assert_eq!(task["error_message"], "never started by 3 droplets", "{task}");
    assert_eq!(task["attempt"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_holder_gets_a_refused_report_in_the_history() {
    let app = spawn_app().await;
    app.register(1, &["x"], 1).await;
    app.register(2, &["y"], 1).await;
    let id = create(&app, json!({})).await;
    let attempt = start(&app, id).await;
    let rows = |task: &Value| task["state_history"].as_array().map(Vec::len);
    let before = rows(&app.task(id).await);

    let body = json!({ "status": "completed", "attempt": attempt + 5 });
    let stranger = app
        .patch(&format!("/tasks/{id}"), &app.droplet(2), body.clone())
        .await;
    assert_eq!(stranger.status, 403, "{stranger:?}");
    assert_eq!(rows(&app.task(id).await), before, "a stranger writes nothing");

    let holder = app.patch(&format!("/tasks/{id}"), &app.droplet(1), body).await;
    assert_eq!((holder.status, holder.error_code()), (409, "stale_attempt"));
    eventually(5, "the holder's refused report is in the history", || async {
        rows(&app.task(id).await) == before.map(|n| n + 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_stopped_tasks_never_stall_the_rescue_of_a_dead_droplets_work() {
    use futures_util::StreamExt;
    let app = spawn_app_with(&[
        ("HEARTBEAT_CHECK_INTERVAL", "1"),
        ("HEARTBEAT_TIMEOUT", "2"),
        ("RATE_LIMIT_PER_MINUTE", "100000"),
        ("MAX_BODY_BYTES", "1048576"),
    ])
    .await;
    let app = std::sync::Arc::new(app);
    app.register(1, &["x"], 1000).await;
    // Droplet 1 stays alive throughout; droplet 2 will not.
    let beating = app.clone();
    let _beats = tokio::spawn(async move {
        loop {
            beating
                .post("/droplets/1/heartbeat", &beating.droplet(1), json!({}))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let tasks: Vec<Value> = (0..600)
        .map(|_| json!({ "task_type": "t", "required_capability": "x" }))
        .collect();
    let batch = app
        .post("/tasks/batch", &app.writer("alice"), json!({ "tasks": tasks }))
        .await;
    assert_eq!(batch.status, 201, "{batch:?}");
    let ids: Vec<i64> = batch.payload()["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["task_id"].as_i64())
        .collect();
    let droplet = app.droplet(1);
    // Each runs, is asked to stop and fails: failed with retries left, never retried.
    futures_util::stream::iter(ids)
        .for_each_concurrent(8, |id| {
            let (app, droplet) = (app.as_ref(), &droplet);
            async move {
                app.wait_for_status(id, "assigned", Duration::from_secs(30)).await;
                assert_eq!(app.set_status(id, droplet, "in_progress").await.status, 200);
                let asked = app
                    .post(
                        &format!("/tasks/{id}/cancel-request"),
                        &app.writer("alice"),
                        json!({}),
                    )
                    .await;
                assert_eq!(asked.status, 200, "{asked:?}");
                assert_eq!(app.set_status(id, droplet, "failed").await.status, 200);
            }
        })
        .await;

    app.register(2, &["y"], 1).await;
    let held = create(&app, json!({ "required_capability": "y" })).await;
    app.wait_for_status(held, "assigned", Duration::from_secs(5))
        .await;
    // Droplet 2 dies now: no heartbeat, no report.
    let bound = Duration::from_secs(2 + 1 + 2);
    let rescued = app.wait_for_status(held, "pending", bound).await;
    assert!(
        reasons(&rescued).iter().any(|r| r.contains("went inactive")),
        "{rescued}"
    );
}
