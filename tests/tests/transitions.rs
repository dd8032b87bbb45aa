//! Every move the state machine refuses is a 409 naming the current status.

use std::time::Duration;

use orchestrator_tests::{TestApp, spawn_app};
use serde_json::json;

const STATUSES: [&str; 6] = [
    "pending",
    "assigned",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
];

/// Moves an admin may make by PATCH (spec section 8: what the assigned
/// droplet or the creator may do; the router's and recovery's moves are the
/// system's alone).
const ALLOWED_BY_PATCH: [(&str, &str); 5] = [
    ("pending", "cancelled"),
    ("assigned", "in_progress"),
    ("assigned", "cancelled"),
    ("in_progress", "completed"),
    ("in_progress", "failed"),
];

async fn task_in(app: &TestApp, status: &str) -> i64 {
    let droplet = app.droplet(8);
    if matches!(status, "pending" | "cancelled") {
        let id = app.create_task(5, Some("nobody-has-this")).await;
        if status == "cancelled" {
            assert_eq!(
                app.delete(&format!("/tasks/{id}"), &app.admin()).await.status,
                200
            );
        }
        return id;
    }
    // No retries: a failed task stays failed instead of going back to pending.
    let body = json!({ "task_type": "t", "title": status, "required_capability": "x", "max_retries": 0 });
    let created = app.post("/tasks", &app.writer("alice"), body).await;
    let id = created.payload()["task_id"].as_i64().expect("task id");
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    if status == "assigned" {
        return id;
    }
    assert_eq!(app.set_status(id, &droplet, "in_progress").await.status, 200);
    if status != "in_progress" {
        assert_eq!(app.set_status(id, &droplet, status).await.status, 200);
    }
    id
}

#[tokio::test]
async fn every_refused_patch_is_a_409_invalid_transition() {
    let app = spawn_app().await;
    app.register(8, &["x"], 100).await;
    let admin = app.admin();
    let mut refused = 0;
    for from in STATUSES {
        let id = task_in(&app, from).await;
        assert_eq!(app.task(id).await["status"], from);
        for to in STATUSES {
            if ALLOWED_BY_PATCH.contains(&(from, to)) {
                continue;
            }
            let reply = app.set_status(id, &admin, to).await;
            assert_eq!(reply.status, 409, "{from} -> {to}: {reply:?}");
            assert_eq!(reply.error_code(), "invalid_transition", "{from} -> {to}");
            assert_eq!(reply.payload()["error"]["details"]["current_status"], from);
            assert_eq!(reply.body["message_type"], "error");
            refused += 1;
        }
        assert_eq!(
            app.task(id).await["status"],
            from,
            "a refused move changes nothing"
        );
    }
    assert_eq!(refused, 36 - ALLOWED_BY_PATCH.len());
}

#[tokio::test]
async fn cancelling_after_the_start_is_a_409() {
    let app = spawn_app().await;
    app.register(8, &["x"], 100).await;
    for from in ["in_progress", "completed", "failed", "cancelled"] {
        let id = task_in(&app, from).await;
        let reply = app.delete(&format!("/tasks/{id}"), &app.admin()).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (409, "invalid_transition"),
            "cancel {from}: {reply:?}"
        );
        let history = app.task(id).await["state_history"].as_array().map(Vec::len);
        let again = app.delete(&format!("/tasks/{id}"), &app.admin()).await;
        assert_eq!(again.status, 409);
        assert_eq!(
            app.task(id).await["state_history"].as_array().map(Vec::len),
            history,
            "no history row"
        );
    }
}

#[tokio::test]
async fn the_assigned_droplet_reports_only_forward_moves() {
    let app = spawn_app().await;
    app.register(8, &["x"], 100).await;
    let id = task_in(&app, "assigned").await;
    let droplet = app.droplet(8);
    for to in ["pending", "assigned", "completed", "failed"] {
        let reply = app.set_status(id, &droplet, to).await;
        assert_eq!(reply.status, 409, "assigned -> {to}: {reply:?}");
    }
    assert_eq!(app.set_status(id, &droplet, "in_progress").await.status, 200);
}

fn history_len(task: &serde_json::Value) -> Option<usize> {
    task["state_history"].as_array().map(Vec::len)
}

#[tokio::test]
async fn a_report_repeated_by_its_droplet_is_answered_and_written_once() {
    let app = spawn_app().await;
    app.register(8, &["x"], 100).await;
    app.register(9, &["y"], 100).await;
    let droplet = app.droplet(8);
    let id = task_in(&app, "in_progress").await;
    let rows = history_len(&app.task(id).await);
    let again = app.set_status(id, &droplet, "in_progress").await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.payload()["task"]["status"], "in_progress");
    assert_eq!(history_len(&app.task(id).await), rows, "no second history row");

    let path = format!("/tasks/{id}");
    let done = json!({ "status": "completed", "result": { "answer": 42 }, "attempt": 1 });
    assert_eq!(app.patch(&path, &droplet, done.clone()).await.status, 200);
    let rows = history_len(&app.task(id).await);
    let repeated = app.patch(&path, &droplet, done).await;
    assert_eq!(repeated.status, 200, "{repeated:?}");
    assert_eq!(repeated.payload()["task"]["result"], json!({ "answer": 42 }));
    assert_eq!(history_len(&app.task(id).await), rows, "no second history row");
    for different in [
        json!({ "status": "completed", "result": { "answer": 43 } }),
        json!({ "status": "failed", "error_message": "boom" }),
        json!({ "status": "completed", "result": { "answer": 42 }, "attempt": 2 }),
    ] {
        let reply = app.patch(&path, &droplet, different.clone()).await;
        assert_eq!(reply.status, 409, "{different}: {reply:?}");
    }
    let stranger = app
        .patch(
            &path,
            &app.droplet(9),
            json!({ "status": "completed", "result": { "answer": 42 } }),
        )
        .await;
    assert_eq!(stranger.status, 403, "{stranger:?}");

    let failed = task_in(&app, "in_progress").await;
    let path = format!("/tasks/{failed}");
    let fail = json!({ "status": "failed", "error_message": "disk full" });
    assert_eq!(app.patch(&path, &droplet, fail.clone()).await.status, 200);
    let rows = history_len(&app.task(failed).await);
    assert_eq!(app.patch(&path, &droplet, fail).await.status, 200);
    let other_error = app
        .patch(
            &path,
            &droplet,
            json!({ "status": "failed", "error_message": "cpu on fire" }),
        )
        .await;
    assert_eq!(other_error.status, 409, "{other_error:?}");
    assert_eq!(history_len(&app.task(failed).await), rows);
}
