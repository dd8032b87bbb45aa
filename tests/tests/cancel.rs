//! Cancelling running work: `DELETE` refuses a running task and names the
//! way out; `POST /tasks/{id}/cancel-request` asks its droplet to stop it.

use std::time::Duration;

use orchestrator_tests::{TestApp, next_event, spawn_app_with};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

/// A task of alice's (3 retries) that droplet 3 is running.
async fn running_task(app: &TestApp) -> i64 {
    app.register(3, &["x"], 5).await;
    let body =
        json!({ "task_type": "render", "title": "long", "required_capability": "x", "max_retries": 3 });
    let created = app.post("/tasks", &app.writer("alice"), body).await;
    let id = created.payload()["task_id"].as_i64().expect("id");
    app.wait_for_status(id, "assigned", SOON).await;
    assert_eq!(
        app.set_status(id, &app.droplet(3), "in_progress").await.status,
        200
    );
    id
}

async fn request_cancel(app: &TestApp, id: i64, token: &str) -> orchestrator_tests::Reply {
    app.post(&format!("/tasks/{id}/cancel-request"), token, json!({}))
        .await
}

fn history(task: &Value) -> Vec<Value> {
    task["state_history"].as_array().cloned().unwrap_or_default()
}

fn cancel_requests(task: &Value) -> usize {
    history(task)
        .iter()
        .filter(|h| h["metadata"]["cancel_requested"] == true)
        .count()
}

#[tokio::test]
async fn delete_on_a_running_task_names_the_way_out() {
    let app = spawn_app_with(&[]).await;
    let id = running_task(&app).await;
    let refused = app.delete(&format!("/tasks/{id}"), &app.writer("alice")).await;
    assert_eq!(refused.status, 409, "{refused:?}");
    let message = refused.payload()["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("/tasks/{id}/cancel-request")),
        "{message}"
    );
    assert_eq!(app.task(id).await["status"], "in_progress");
}

#[tokio::test]
async fn a_droplet_asked_to_stop_fails_the_task_and_it_is_not_retried() {
    let app = spawn_app_with(&[("RETRY_BACKOFF_BASE_SECONDS", "1")]).await;
    let id = running_task(&app).await;
    let mut feed = app.feed(&format!("/ws/tasks?token={}", app.admin())).await;

    let asked = request_cancel(&app, id, &app.writer("alice")).await;
    assert_eq!(asked.status, 200, "{asked:?}");
    let requested_at = asked.payload()["task"]["cancel_requested_at"].clone();
    assert!(requested_at.is_string(), "{asked:?}");
    assert_eq!(asked.payload()["task"]["status"], "in_progress");
    let event = loop {
        let event = next_event(&mut feed, SOON).await;
        if event["event"] == "task_cancel_requested" {
            break event;
        }
    };
    assert_eq!(event["data"]["id"], id, "{event}");

    let again = request_cancel(&app, id, &app.admin()).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.payload()["task"]["cancel_requested_at"],
        requested_at,
        "asking again changes nothing"
    );
    assert_eq!(cancel_requests(&app.task(id).await), 1);

    let stop = json!({ "status": "failed", "error_message": "stopped at the creator's request" });
    assert_eq!(
        app.patch(&format!("/tasks/{id}"), &app.droplet(3), stop)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let task = app.task(id).await;
    assert_eq!(task["status"], "failed", "not retried: {task}");
    assert_eq!(task["retry_count"], 0, "{task}");
    let moves: Vec<(Value, Value)> = history(&task)
        .iter()
        .map(|h| (h["from_status"].clone(), h["to_status"].clone()))
        .collect();
    assert_eq!(
        moves[moves.len() - 2..],
        [
            (json!("in_progress"), json!("in_progress")),
            (json!("in_progress"), json!("failed"))
        ],
        "{task}"
    );
}

#[tokio::test]
async fn a_droplet_may_finish_anyway() {
    let app = spawn_app_with(&[]).await;
    let id = running_task(&app).await;
    assert_eq!(request_cancel(&app, id, &app.admin()).await.status, 200);
    let done = json!({ "status": "completed", "result": { "frames": 240 } });
    assert_eq!(
        app.patch(&format!("/tasks/{id}"), &app.droplet(3), done)
            .await
            .status,
        200
    );
    let task = app.task(id).await;
    assert_eq!(task["status"], "completed");
    assert!(
        task["cancel_requested_at"].is_string(),
        "the record shows both: {task}"
    );
    assert_eq!(cancel_requests(&task), 1);
}

#[tokio::test]
async fn only_the_creator_or_an_admin_may_ask_and_only_for_running_work() {
    let app = spawn_app_with(&[]).await;
    let id = running_task(&app).await;
    let stranger = request_cancel(&app, id, &app.writer("bob")).await;
    assert_eq!(
        (stranger.status, stranger.error_code()),
        (403, "forbidden"),
        "{stranger:?}"
    );
    let droplet = request_cancel(&app, id, &app.droplet(3)).await;
    assert_eq!(droplet.status, 403, "{droplet:?}");

    let waiting = app.create_task(5, Some("nobody")).await;
    let early = request_cancel(&app, waiting, &app.writer("alice")).await;
    assert_eq!(early.status, 409, "{early:?}");
    let message = early.payload()["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("DELETE"), "{message}");

    let done = json!({ "status": "completed" });
    app.patch(&format!("/tasks/{id}"), &app.droplet(3), done).await;
    let late = request_cancel(&app, id, &app.writer("alice")).await;
    assert_eq!(late.status, 409, "{late:?}");

    assert_eq!(request_cancel(&app, 999_999, &app.admin()).await.status, 404);
    let wrong_verb = app
        .get(&format!("/tasks/{id}/cancel-request"), &app.admin())
        .await;
    assert_eq!(wrong_verb.status, 405);
}
