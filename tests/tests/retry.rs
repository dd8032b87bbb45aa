//! `POST /tasks/{id}/retry`: a person gives a failed task whose retries are
//! spent one more attempt.

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_tests::{TestApp, spawn_app};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

/// A task of alice's with no retries, failed by droplet 3.
async fn spent_task(app: &TestApp) -> i64 {
    app.register(3, &["x"], 5).await;
    let body = json!({ "task_type": "render", "required_capability": "x", "max_retries": 0 });
    let created = app.post("/tasks", &app.writer("alice"), body).await;
    let id = created.payload()["task_id"].as_i64().expect("id");
    app.wait_for_status(id, "assigned", SOON).await;
    let droplet = app.droplet(3);
    assert_eq!(app.set_status(id, &droplet, "in_progress").await.status, 200);
    let failed = app
        .patch(
            &format!("/tasks/{id}"),
            &droplet,
            json!({ "status": "failed", "error_message": "boom" }),
        )
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");
    id
}

async fn retry(app: &TestApp, id: i64, token: &str, body: Value) -> orchestrator_tests::Reply {
    app.post(&format!("/tasks/{id}/retry"), token, body).await
}

#[tokio::test]
async fn a_spent_task_goes_back_to_pending_and_runs_again() {
    let app = spawn_app().await;
    let id = spent_task(&app).await;
    let reply = retry(
        &app,
        id,
        &app.writer("alice"),
        json!({ "reason": "the input is fixed" }),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let task = &reply.payload()["task"];
    assert_eq!(task["error_message"], Value::Null, "{task}");
    let task = app.wait_for_status(id, "assigned", SOON).await;
    assert_eq!(
        (task["attempt"].as_u64(), task["retry_count"].as_u64()),
        (Some(2), Some(0))
    );
    let history = task["state_history"].as_array().cloned().unwrap_or_default();
    let retried = history
        .iter()
        .find(|h| h["from_status"] == "failed" && h["to_status"] == "pending")
        .expect("a history row for the retry");
    assert_eq!(retried["changed_by"], "alice");
    assert_eq!(retried["reason"], "retried by alice: the input is fixed");
    assert_eq!(retried["metadata"]["manual_retry"], true);
    assert_eq!(retried["metadata"]["previous_error"], "boom");
    assert_eq!(
        app.set_status(id, &app.droplet(3), "in_progress").await.status,
        200
    );
    assert_eq!(app.set_status(id, &app.droplet(3), "completed").await.status, 200);
}

#[tokio::test]
async fn only_its_creator_or_an_admin_may_retry_it() {
    let app = spawn_app().await;
    let id = spent_task(&app).await;
    let reader = app.token("alice", &[Permission::Read], None);
    assert_eq!(retry(&app, id, &reader, json!({})).await.status, 403);
    let bob = retry(&app, id, &app.writer("bob"), json!({})).await;
    assert_eq!(bob.status, 403, "{bob:?}");
    assert!(
        bob.payload()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("retry")
    );
    assert_eq!(app.task(id).await["status"], "failed");
    let admin = app
        .post(&format!("/tasks/{id}/retry"), &app.admin(), json!({}))
        .await;
    assert_eq!(admin.status, 200, "{admin:?}");
    let task = app.wait_for_status(id, "assigned", SOON).await;
    let history = task["state_history"].as_array().cloned().unwrap_or_default();
    assert!(
        history.iter().any(|h| h["reason"] == "retried by admin"),
        "{history:?}"
    );
}

#[tokio::test]
async fn any_other_status_is_a_conflict() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let pending = app.create_task(5, Some("nobody")).await;
    let reply = retry(&app, pending, &writer, json!({})).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (409, "invalid_transition"),
        "{reply:?}"
    );
    let id = spent_task(&app).await;
    assert_eq!(retry(&app, id, &writer, json!({})).await.status, 200);
    app.wait_for_status(id, "assigned", SOON).await;
    let again = retry(&app, id, &writer, json!({})).await;
    assert_eq!(again.status, 409, "an assigned task is not retried: {again:?}");
    let missing = retry(&app, 999_999, &writer, json!({})).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_cancelled_task_is_not_retried() {
    let app = spawn_app().await;
    app.register(3, &["x"], 5).await;
    let body = json!({ "task_type": "render", "required_capability": "x", "max_retries": 2 });
    let created = app.post("/tasks", &app.writer("alice"), body).await;
    let id = created.payload()["task_id"].as_i64().expect("id");
    app.wait_for_status(id, "assigned", SOON).await;
    assert_eq!(
        app.delete(&format!("/tasks/{id}"), &app.writer("alice"))
            .await
            .status,
        200
    );
    let reply = retry(&app, id, &app.writer("alice"), json!({})).await;
    assert_eq!(reply.status, 409, "{reply:?}");
}

#[tokio::test]
async fn a_bad_reason_is_refused() {
    let app = spawn_app().await;
    let id = spent_task(&app).await;
    let writer = app.writer("alice");
    let long = retry(&app, id, &writer, json!({ "reason": "x".repeat(501) })).await;
    assert_eq!(long.status, 422, "{long:?}");
    let unknown = retry(&app, id, &writer, json!({ "why": "because" })).await;
    assert_eq!(unknown.status, 422, "{unknown:?}");
    assert_eq!(app.task(id).await["status"], "failed");
}
