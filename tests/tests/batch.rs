//! `POST /tasks/batch`: many tasks in one request and one commit, all or
//! none, answered in the order sent.

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_tests::{MAX_BODY_BYTES, TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

fn draft(n: usize) -> Value {
    json!({ "task_type": "render", "title": format!("frame {n}"), "priority": 1 + n % 10, "payload": { "n": n } })
}

async fn total_tasks(app: &TestApp) -> u64 {
    let page = app.get("/tasks?limit=1", &app.admin()).await;
    page.payload()["total"].as_u64().expect("a total")
}

#[tokio::test]
async fn a_batch_is_created_in_the_order_sent_and_routed() {
    let app = spawn_app().await;
    app.register(4, &["render"], 10).await;
    let tasks: Vec<Value> = (0..5).map(draft).collect();
    let created = app
        .post("/tasks/batch", &app.writer("alice"), json!({ "tasks": tasks }))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let answers = created.payload()["tasks"].as_array().cloned().expect("tasks");
    assert_eq!(answers.len(), 5);
    let ids: Vec<i64> = answers
        .iter()
        .map(|t| t["task_id"].as_i64().expect("id"))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let task = app.wait_for_status(*id, "assigned", Duration::from_secs(5)).await;
        assert_eq!(
            task["title"],
            format!("frame {n}"),
            "answer {n} is the task sent {n}th"
        );
        assert_eq!(task["payload"]["n"], n);
        assert_eq!(task["created_by"], "alice");
        assert_eq!(task["state_history"][0]["to_status"], "pending");
    }
}

#[tokio::test]
async fn one_invalid_task_creates_none_and_is_named() {
    let app = spawn_app().await;
    let mut tasks: Vec<Value> = (0..4).map(draft).collect();
    tasks[2]["priority"] = json!(11);
    let refused = app
        .post("/tasks/batch", &app.writer("alice"), json!({ "tasks": tasks }))
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.error_code(), "validation_failed");
    let field = &refused.payload()["error"]["details"]["field"];
    assert_eq!(field, "tasks[2].priority", "{refused:?}");
    assert_eq!(total_tasks(&app).await, 0, "nothing of the batch was created");
}

#[tokio::test]
async fn a_batch_must_hold_one_to_a_thousand_tasks() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "1048576")]).await;
    let writer = app.writer("alice");
    let empty = app.post("/tasks/batch", &writer, json!({ "tasks": [] })).await;
    assert_eq!(empty.status, 422, "{empty:?}");
    let too_many: Vec<Value> = (0..1001).map(|_| json!({ "task_type": "t" })).collect();
    let refused = app
        .post("/tasks/batch", &writer, json!({ "tasks": too_many }))
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    let message = refused.payload()["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("1000") && message.contains("1001"), "{message}");
    let most: Vec<Value> = (0..1000).map(|_| json!({ "task_type": "t" })).collect();
    let created = app.post("/tasks/batch", &writer, json!({ "tasks": most })).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(total_tasks(&app).await, 1000);
}

#[tokio::test]
async fn a_batch_larger_than_the_body_limit_is_413() {
    let app = spawn_app().await;
    let tasks: Vec<Value> = (0..MAX_BODY_BYTES / 50).map(draft).collect();
    let refused = app
        .post("/tasks/batch", &app.writer("alice"), json!({ "tasks": tasks }))
        .await;
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(total_tasks(&app).await, 0);
}

#[tokio::test]
async fn a_batch_needs_write_and_a_body_of_tasks() {
    let app = spawn_app().await;
    let reader = app.token("viewer", &[Permission::Read], None);
    let body = json!({ "tasks": [draft(0)] });
    assert_eq!(app.post("/tasks/batch", &reader, body).await.status, 403);
    let unknown = app
        .post(
            "/tasks/batch",
            &app.writer("alice"),
            json!({ "tasks": [draft(0)], "extra": 1 }),
        )
        .await;
    assert_eq!(unknown.status, 422, "{unknown:?}");
    let bare = app
        .post("/tasks/batch", &app.writer("alice"), json!([draft(0)]))
        .await;
    assert_eq!(bare.status, 422, "{bare:?}");
    assert_eq!(total_tasks(&app).await, 0);
}
