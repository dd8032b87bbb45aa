//! The worker runtime against a real server: tasks complete, a panicking
//! handler fails its task, a worker shut down mid-task hands it back, and a
//! killed worker's task is finished by another.

use std::time::Duration;

use orchestrator_client::{Client, HANDED_BACK, Worker, WorkerBuilder};
use orchestrator_domain::RegistrationDraft;
use orchestrator_tests::{TestApp, spawn_app_with};
use serde_json::{Value, json};
use tokio::sync::oneshot;

fn worker(app: &TestApp, id: i64) -> WorkerBuilder {
    let client = Client::new(&app.address)
        .expect("url")
        .with_token(app.droplet(id));
    let me = RegistrationDraft {
        droplet_id: id,
        name: format!("worker {id}"),
        endpoint: format!("http://127.0.0.1:9/{id}"),
        ..RegistrationDraft::default()
    };
    Worker::builder(client, me).poll_interval(Duration::from_millis(50))
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
            .capability("slow", |_task| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Value::Null)
            })
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
            .capability("work", |_task| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Value::Null)
            })
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
