//! The worker runtime against a real server: tasks complete, a panicking
//! handler fails its task, a worker shut down mid-task hands it back, a
//! killed worker's task is finished by another, assignments arrive by the
//! feed and by push as well as by pull, and a cancel request stops a handler.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use orchestrator_client::{
    Client, Delivery, HANDED_BACK, HandlerResult, STOPPED_ON_REQUEST, Worker, WorkerBuilder,
};
use orchestrator_domain::{RegistrationDraft, Task};
use orchestrator_tests::{TestApp, eventually, spawn_app_with};
use serde_json::{Value, json};
use tokio::sync::oneshot;

fn worker(app: &TestApp, id: i64) -> WorkerBuilder {
    worker_at(app, id, format!("http://127.0.0.1:9/{id}"))
}

/// A worker for droplet `id` registering `endpoint`, where pushes go.
fn worker_at(app: &TestApp, id: i64, endpoint: String) -> WorkerBuilder {
    let client = Client::new(&app.address)
        .expect("url")
        .with_token(app.droplet(id));
    let me = RegistrationDraft {
        droplet_id: id,
        name: format!("worker {id}"),
        endpoint,
        ..RegistrationDraft::default()
    };
    Worker::builder(client, me).poll_interval(Duration::from_millis(50))
}

/// A handler that outlasts every test: its task stays `in_progress`.
async fn sleep_a_minute(_task: Task) -> HandlerResult {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(Value::Null)
}

async fn submit(app: &TestApp, capability: &str, payload: Value) -> i64 {
    let body = json!({ "task_type": capability, "title": "t", "required_capability": capability, "payload": payload });
    let reply = app.post("/tasks", &app.writer("alice"), body).await;
    reply.payload()["task_id"].as_i64().expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_complete_and_a_panicking_handler_fails_only_its_task() {
    let app = spawn_app_with(&[]).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(
        worker(&app, 31)
            .capability("echo", |task| async move { Ok(json!({ "echo": task.payload })) })
            .capability("boom", |_task| async move {
                if true {
                    panic!("the disk is on fire");
                }
                Ok(Value::Null)
            })
            .run(async {
                stopped.await.ok();
            }),
    );
    let mut echoes = Vec::new();
    for n in 0..5 {
        echoes.push(submit(&app, "echo", json!({ "n": n })).await);
    }
    // No retries: the failure stays for the test to see.
    let body = json!({ "task_type": "boom", "title": "t", "required_capability": "boom", "max_retries": 0 });
    let boom = app.post("/tasks", &app.writer("alice"), body).await.payload()["task_id"]
        .as_i64()
        .expect("id");
    for (n, id) in echoes.iter().enumerate() {
        let task = app
            .wait_for_status(*id, "completed", Duration::from_secs(10))
            .await;
        assert_eq!(task["result"], json!({ "echo": { "n": n } }));
    }
    let failed = app.wait_for_status(boom, "failed", Duration::from_secs(10)).await;
    let message = failed["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("panicked") && message.contains("the disk is on fire"),
        "{failed}"
    );

    let after = submit(&app, "echo", json!({ "n": 99 })).await;
    app.wait_for_status(after, "completed", Duration::from_secs(10))
        .await;
    stop.send(()).ok();
    let report = running.await.expect("join").expect("run");
    assert_eq!((report.completed, report.handed_back), (6, 0));
    assert!(report.failed >= 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shut_down_mid_task_hands_it_back() {
    let app = spawn_app_with(&[("RETRY_BACKOFF_BASE_SECONDS", "60")]).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(
        worker(&app, 32)
            .shutdown_grace(Duration::from_millis(200))
            .capability("slow", sleep_a_minute)
            .run(async {
                stopped.await.ok();
            }),
    );
    let id = submit(&app, "slow", json!({})).await;
    app.wait_for_status(id, "in_progress", Duration::from_secs(10))
        .await;
    stop.send(()).ok();
    let report = running.await.expect("join").expect("run");
    assert_eq!(report.handed_back, 1);
    let mut task = app.task(id).await;
    for _ in 0..50 {
        if task["retry_count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        task = app.task(id).await;
    }
    let history = task["state_history"].as_array().cloned().unwrap_or_default();
    let handed_back = history.iter().any(|h| {
        h["from_status"] == "in_progress" && h["to_status"] == "failed" && h["changed_by"] == "droplet-32"
    });
    assert!(handed_back, "{task}");
    assert_eq!(task["retry_count"], 1, "handed back to be retried: {task}");
    assert_eq!(task["error_message"], HANDED_BACK, "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_task_is_finished_by_another() {
    let app = spawn_app_with(&[
        ("HEARTBEAT_CHECK_INTERVAL", "1"),
        ("HEARTBEAT_TIMEOUT", "2"),
        ("RETRY_BACKOFF_BASE_SECONDS", "1"),
    ])
    .await;
    let doomed = tokio::spawn(
        worker(&app, 33)
            .capability("work", sleep_a_minute)
            .run(std::future::pending::<()>()),
    );
    let id = submit(&app, "work", json!({})).await;
    app.wait_for_status(id, "in_progress", Duration::from_secs(10))
        .await;
    doomed.abort();

    let (_stop, stopped) = oneshot::channel::<()>();
    let _rescuer = tokio::spawn(
        worker(&app, 34)
            .capability("work", |_task| async move { Ok(json!("done by 34")) })
            .run(async {
                stopped.await.ok();
            }),
    );
    let task = app
        .wait_for_status(id, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(task["assigned_droplet_id"], 34);
    assert_eq!(task["result"], "done by 34");
}

/// Waits until `caller` follows a feed, so that no event is missed.
async fn wait_for_feed(app: &TestApp, caller: &str) {
    let started = Instant::now();
    loop {
        let status = app.get("/ws/status", &app.admin()).await;
        if status.payload()["connections_per_caller"][caller].as_u64() > Some(0) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker never followed the feed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_arrive_by_the_feed() {
    let app = spawn_app_with(&[]).await;
    let (stop, stopped) = oneshot::channel::<()>();
    // A pull an hour apart: whatever completes came by the feed.
    let running = tokio::spawn(
        worker(&app, 35)
            .delivery(Delivery::Feed)
            .poll_interval(Duration::from_secs(3600))
            .capability("echo", |task| async move { Ok(task.payload) })
            .run(async {
                stopped.await.ok();
            }),
    );
    wait_for_feed(&app, "droplet-35").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(submit(&app, "echo", json!({ "n": n })).await);
    }
    for (n, id) in ids.into_iter().enumerate() {
        let task = app
            .wait_for_status(id, "completed", Duration::from_secs(10))
            .await;
        assert_eq!(task["result"], json!({ "n": n }));
    }
    stop.send(()).ok();
    assert_eq!(running.await.expect("join").expect("run").completed, 3);
}

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_arrive_by_push_and_a_forged_push_runs_nothing() {
    let app = spawn_app_with(&[("ENABLE_PUSH_DELIVERY", "true")]).await;
    let listen = free_address();
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(
        worker_at(&app, 36, format!("http://{listen}"))
            .delivery(Delivery::Push { listen })
            .poll_interval(Duration::from_secs(3600))
            .capability("echo", move |task| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { Ok(task.payload) }
            })
            .run(async {
                stopped.await.ok();
            }),
    );
    let http = reqwest::Client::new();
    let endpoint = format!("http://{listen}");
    let started = Instant::now();
    while http.get(format!("{endpoint}/health")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let id = submit(&app, "echo", json!({ "pushed": true })).await;
    let task = app
        .wait_for_status(id, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(task["result"], json!({ "pushed": true }));

    let health: Value = http
        .get(format!("{endpoint}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (
            &health["id"],
            &health["name"],
            &health["status"],
            &health["endpoint"]
        ),
        (
            &json!(36),
            &json!("worker 36"),
            &json!("active"),
            &json!(endpoint)
        )
    );
    let garbled = http
        .post(format!("{endpoint}/message"))
        .body("{")
        .send()
        .await
        .expect("post");
    assert_eq!(garbled.status(), 400);
    // A task that is not this droplet's: the orchestrator refuses to start it.
    let mut forged = task.clone();
    forged["id"] = json!(id + 1000);
    forged["status"] = json!("assigned");
    let envelope =
        json!({ "udc_version": "1.0", "message_type": "task_assignment", "payload": { "task": forged } });
    let accepted = http
        .post(format!("{endpoint}/message"))
        .json(&envelope)
        .send()
        .await
        .expect("post");
    assert_eq!(accepted.status(), 202);
    // The worker asks to start the task, and is refused: it had its chance.
    let refused = [
        ("method", "PATCH"),
        ("route", "/tasks/{task_id}"),
        ("status", "404"),
    ];
    eventually(10, "the worker asks to start the forged task", || async {
        app.counter("orchestrator_http_requests_total", &refused).await >= 1.0
    })
    .await;
    stop.send(()).ok();
    let report = running.await.expect("join").expect("run");
    assert_eq!((report.completed, runs.load(Ordering::SeqCst)), (1, 1));
}

/// A long task is stopped when its creator asks, by the feed and by push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_the_running_handler() {
    for (id, push) in [(37, false), (38, true)] {
        let app = spawn_app_with(&[("ENABLE_PUSH_DELIVERY", "true")]).await;
        let listen = free_address();
        let (delivery, endpoint) = if push {
            (Delivery::Push { listen }, format!("http://{listen}"))
        } else {
            (Delivery::Feed, format!("http://127.0.0.1:9/{id}"))
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(
            worker_at(&app, id, endpoint)
                .delivery(delivery)
                .capability("slow", sleep_a_minute)
                .run(async {
                    stopped.await.ok();
                }),
        );
        if !push {
            wait_for_feed(&app, &format!("droplet-{id}")).await;
        }
        let task = submit(&app, "slow", json!({})).await;
        app.wait_for_status(task, "in_progress", Duration::from_secs(10))
            .await;
        let asked = app
            .post(
                &format!("/tasks/{task}/cancel-request"),
                &app.writer("alice"),
                json!({}),
            )
            .await;
        assert_eq!(asked.status, 200, "{asked:?}");
        let failed = app.wait_for_status(task, "failed", Duration::from_secs(10)).await;
        assert_eq!(failed["error_message"], STOPPED_ON_REQUEST, "{failed}");
        assert_eq!(
            failed["retry_count"], 0,
            "a task asked to stop is not retried: {failed}"
        );
        stop.send(()).ok();
        let report = running.await.expect("join").expect("run");
        assert_eq!(
            (report.stopped_on_request, report.handed_back),
            (1, 0),
            "push {push}"
        );
    }
}

async fn run_four_seconds(_task: Task) -> HandlerResult {
    tokio::time::sleep(Duration::from_secs(4)).await;
    Ok(json!({ "done": true }))
}

/// A handler that runs longer than its task's timeout is kept alive by the
/// progress the worker reports on its own while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reports_progress_so_a_long_run_is_not_timed_out() {
    let app = spawn_app_with(&[("HEARTBEAT_CHECK_INTERVAL", "1")]).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(
        worker(&app, 41)
            .progress_interval(Duration::from_secs(5))
            .capability("long", run_four_seconds)
            .run(async {
                stopped.await.ok();
            }),
    );
    // The task's own timeout (2 s) makes the worker report every 2/3 s.
    let body = json!({ "task_type": "long", "required_capability": "long", "timeout_seconds": 2 });
    let reply = app.post("/tasks", &app.writer("alice"), body).await;
    let task = reply.payload()["task_id"].as_i64().expect("id");
    let done = app
        .wait_for_status(task, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(done["retry_count"], 0, "never timed out: {done}");
    assert!(
        done["progress"]["at"].is_string(),
        "progress was reported: {done}"
    );
    stop.send(()).ok();
    let report = running.await.expect("join").expect("run");
    assert_eq!(report.completed, 1);
}
