//! `Idempotency-Key` on `POST /tasks`, `POST /tasks/batch` and the
//! `create_task` message: a request repeated after a lost answer creates
//! nothing and gets the first request's tasks.

use orchestrator_client::Client;
use orchestrator_domain::TaskDraft;
use orchestrator_tests::{TestApp, spawn_app};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

async fn post(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> (u16, HeaderMap, Value) {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await.expect("a JSON answer");
    (status, headers, body)
}

async fn total(app: &TestApp) -> u64 {
    let page = app.get("/tasks?limit=1", &app.admin()).await;
    page.payload()["total"].as_u64().expect("total")
}

fn replayed(headers: &HeaderMap) -> bool {
    headers.get("idempotent-replayed").is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_repeated_post_gets_the_same_task_and_creates_none() {
    let app = spawn_app().await;
    let alice = app.writer("alice");
    let body = json!({ "task_type": "render", "title": "frame 1" });
    let (status, headers, first) = post(&app, "/tasks", &alice, "key-1", &body).await;
    assert_eq!(status, 201, "{first}");
    assert!(!replayed(&headers));
    let (status, headers, again) = post(&app, "/tasks", &alice, "key-1", &body).await;
    assert_eq!(status, 201, "{again}");
    assert!(replayed(&headers), "{headers:?}");
    assert_eq!(again["payload"]["task_id"], first["payload"]["task_id"]);
    assert_eq!(again["payload"]["trace_id"], first["payload"]["trace_id"]);
    assert_eq!(total(&app).await, 1);

    let other = json!({ "task_type": "render", "title": "frame 2" });
    let (status, _, reused) = post(&app, "/tasks", &alice, "key-1", &other).await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["payload"]["error"]["code"], "idempotency_key_reused");
    let (status, _, bobs) = post(&app, "/tasks", &app.writer("bob"), "key-1", &body).await;
    assert_eq!(status, 201, "another caller's key is another key");
    assert_ne!(bobs["payload"]["task_id"], first["payload"]["task_id"]);
    assert_eq!(total(&app).await, 2);
}

#[tokio::test]
async fn a_repeated_batch_and_message_create_once() {
    let app = spawn_app().await;
    let alice = app.writer("alice");
    let batch = json!({ "tasks": [{ "task_type": "a" }, { "task_type": "b" }] });
    let (status, _, first) = post(&app, "/tasks/batch", &alice, "batch-1", &batch).await;
    assert_eq!(status, 201, "{first}");
    let (_, headers, again) = post(&app, "/tasks/batch", &alice, "batch-1", &batch).await;
    assert!(replayed(&headers));
    let ids = |v: &Value| -> Vec<Value> {
        v["payload"]["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["task_id"].clone())
            .collect()
    };
    assert_eq!(ids(&again), ids(&first));
    let (status, _, single) = post(&app, "/tasks", &alice, "batch-1", &json!({ "task_type": "a" })).await;
    assert_eq!(status, 422, "a batch's key is not a single task's: {single}");

    let message = json!({
        "udc_version": "1.0",
        "trace_id": "550e8400-e29b-41d4-a716-446655440000",
        "source": "droplet-5",
        "target": "droplet-10",
        "message_type": "command",
        "timestamp": "2026-11-25T10:30:00Z",
        "payload": { "command": "create_task", "task_data": { "task_type": "c" } },
    });
    let (status, _, sent) = post(&app, "/message", &alice, "msg-1", &message).await;
    assert_eq!(status, 200, "{sent}");
    let (_, _, resent) = post(&app, "/message", &alice, "msg-1", &message).await;
    assert_eq!(
        resent["payload"]["task_id"], sent["payload"]["task_id"],
        "{resent}"
    );
    assert_eq!(total(&app).await, 3);
}

#[tokio::test]
async fn a_bad_key_is_refused() {
    let app = spawn_app().await;
    let body = json!({ "task_type": "a" });
    for bad in ["has space", &"k".repeat(256)] {
        let (status, _, reply) = post(&app, "/tasks", &app.writer("alice"), bad, &body).await;
        assert_eq!(status, 422, "{bad}: {reply}");
        assert_eq!(reply["payload"]["error"]["details"]["field"], "Idempotency-Key");
    }
    assert_eq!(total(&app).await, 0);
}

#[tokio::test]
async fn concurrent_repeats_make_one_task() {
    let app = spawn_app().await;
    let alice = app.writer("alice");
    let body = json!({ "task_type": "render" });
    let sends = (0..10).map(|_| post(&app, "/tasks", &alice, "same", &body));
    let answers = futures_util::future::join_all(sends).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(_, _, b)| b["payload"]["task_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|(status, _, _)| *status == 201));
    assert_eq!(total(&app).await, 1);
}

#[tokio::test]
async fn the_client_sends_a_key_of_its_own() {
    let app = spawn_app().await;
    let alice = Client::new(&app.address)
        .expect("url")
        .with_token(app.writer("alice"));
    let draft = TaskDraft {
        task_type: "echo".into(),
        ..TaskDraft::default()
    };
    let first = alice.create_task(&draft).await.expect("create");
    let second = alice.create_task(&draft).await.expect("create");
    assert_ne!(first.task_id, second.task_id, "each call is a request of its own");
}

#[tokio::test]
async fn a_retry_serialised_again_in_another_key_order_is_a_replay() {
    let app = spawn_app().await;
    let send = |body: &'static str| {
        app.client
            .post(format!("{}/tasks", app.address))
            .bearer_auth(app.writer("alice"))
            .header("Idempotency-Key", "reordered")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let first = send(r#"{"task_type":"render","payload":{"a":1,"b":{"x":1,"y":[{"p":1,"q":2}]}}}"#)
        .await
        .expect("send");
    assert_eq!(first.status().as_u16(), 201);
    let again = send(r#"{"payload":{"b":{"y":[{"q":2,"p":1}],"x":1},"a":1},"task_type":"render"}"#)
        .await
        .expect("send");
    assert_eq!(again.status().as_u16(), 201, "the same request, not 422");
    assert!(replayed(again.headers()), "{:?}", again.headers());
    assert_eq!(total(&app).await, 1);
}
