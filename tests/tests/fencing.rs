//! Fenced results: every assignment has an attempt number, and a report
//! about an earlier one (or from a droplet the task was taken from) is
//! refused with 409 `stale_attempt`, recorded in the history, never applied.

use std::time::Duration;

use orchestrator_tests::{TestApp, spawn_app_with};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

async fn report(app: &TestApp, id: i64, droplet: i64, body: Value) -> (u16, String, Value) {
    let reply = app
        .patch(&format!("/tasks/{id}"), &app.droplet(droplet), body)
        .await;
    let code = reply.error_code().to_owned();
    (reply.status, code, reply.payload().clone())
}

#[tokio::test]
async fn a_droplet_that_wakes_up_after_its_task_was_completed_elsewhere_is_refused() {
    let app = spawn_app_with(&[("HEARTBEAT_CHECK_INTERVAL", "1")]).await;
    app.register(8, &["x"], 1).await;
    let id = app.create_task(5, Some("x")).await;
    let first = app.wait_for_status(id, "assigned", SOON).await;
    assert_eq!(
        (first["assigned_droplet_id"].as_i64(), first["attempt"].as_u64()),
        (Some(8), Some(1))
    );

    // Droplet 8 goes quiet; an admin takes it out of service with its
    // work, and the router hands the task to droplet 9.
    assert_eq!(
        app.post("/droplets/8/deactivate?requeue=true", &app.admin(), json!({}))
            .await
            .status,
        200
    );
    app.register(9, &["x"], 1).await;
    let deadline = tokio::time::Instant::now() + SOON;
    let second = loop {
        let task = app.task(id).await;
        if task["assigned_droplet_id"] == 9 {
            break task;
        }
        assert!(tokio::time::Instant::now() < deadline, "not reassigned: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(second["attempt"], 2);
    assert_eq!(
        report(&app, id, 9, json!({ "status": "in_progress", "attempt": 2 }))
            .await
            .0,
        200
    );
    let done = json!({ "status": "completed", "attempt": 2, "result": { "by": 9 } });
    assert_eq!(report(&app, id, 9, done).await.0, 200);

    // Droplet 8 wakes up and reports on its old assignment.
    let late = json!({ "status": "completed", "attempt": 1, "result": { "by": 8 } });
    let (status, code, body) = report(&app, id, 8, late).await;
    assert_eq!((status, code.as_str()), (409, "stale_attempt"), "{body}");
    assert_eq!(
        body["error"]["details"],
        json!({ "current_status": "completed", "attempt": 2 })
    );
    let (status, code, _) = report(&app, id, 8, json!({ "status": "completed" })).await;
    assert_eq!(
        (status, code.as_str()),
        (409, "stale_attempt"),
        "without an attempt, the droplet it was taken from"
    );

    let task = app.task(id).await;
    assert_eq!(
        (task["status"].as_str(), &task["result"]),
        (Some("completed"), &json!({ "by": 9 }))
    );
    let refused: Vec<&Value> = task["state_history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|row| row["metadata"]["refused"] == true)
        .collect();
    assert_eq!(refused.len(), 2, "{task}");
    assert_eq!(refused[0]["from_status"], "completed");
    assert_eq!(
        refused[0]["to_status"], "completed",
        "a refused report changes nothing"
    );
    assert_eq!(refused[0]["metadata"]["reported_attempt"], 1);
    assert_eq!(refused[0]["metadata"]["reporter_droplet_id"], 8);
    assert_eq!(refused[0]["changed_by"], "droplet-8");
}

#[tokio::test]
async fn the_holder_naming_an_old_attempt_is_refused_too() {
    let app = spawn_app_with(&[]).await;
    app.register(8, &["x"], 1).await;
    let id = app.create_task(5, Some("x")).await;
    app.wait_for_status(id, "assigned", SOON).await;
    let (status, code, _) = report(&app, id, 8, json!({ "status": "in_progress", "attempt": 7 })).await;
    assert_eq!((status, code.as_str()), (409, "stale_attempt"));
    assert_eq!(app.task(id).await["status"], "assigned", "not applied");
    assert_eq!(
        report(&app, id, 8, json!({ "status": "in_progress", "attempt": 1 }))
            .await
            .0,
        200
    );
}
