//! Explainable placement: an assignment's history row says what it was
//! chosen among; a pending task says why it waits.

use std::time::Duration;

use orchestrator_tests::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

async fn routing_of(app: &TestApp, id: i64) -> Value {
    app.task(id).await["routing"].clone()
}

#[tokio::test]
async fn an_assignment_records_the_candidates_and_the_rule() {
    let app = spawn_app().await;
    app.register(8, &["x"], 3).await;
    app.register(9, &["x"], 3).await;
    app.register(10, &["y"], 3).await;
    let first = app.create_task(5, Some("x")).await;
    app.wait_for_status(first, "assigned", SOON).await;
    let second = app.create_task(5, Some("x")).await;
    let task = app.wait_for_status(second, "assigned", SOON).await;
    let chosen = task["assigned_droplet_id"].as_i64().expect("droplet");

    let history = app.get(&format!("/tasks/{second}"), &app.admin()).await;
    let rows = history.payload()["task"]["state_history"]
        .as_array()
        .cloned()
        .expect("history");
    let assigned = rows
        .iter()
        .find(|r| r["to_status"] == "assigned")
        .expect("assigned row");
    let metadata = &assigned["metadata"];
    assert_eq!(metadata["droplet_id"], chosen);
    assert_eq!(
        metadata["rule"], "least_loaded",
        "the first task made the other droplet busier: {metadata}"
    );
    assert_eq!(
        metadata["candidates_total"], 2,
        "droplet 10 lacks the capability: {metadata}"
    );
    let candidates = metadata["candidates"].as_array().expect("candidates");
    assert_eq!(candidates[0]["droplet_id"], chosen, "the chosen one ranks first");
    for candidate in candidates {
        assert_eq!(candidate["capacity"], 3);
        assert!(
            candidate["active_tasks"].is_u64() && candidate["eligible"] == true,
            "{candidate}"
        );
    }
    assert!(
        app.task(second).await.get("routing").is_none(),
        "only pending tasks explain themselves"
    );
}

#[tokio::test]
async fn a_pending_task_says_why_it_waits() {
    let app = spawn_app().await;
    let stranded = app.create_task(5, Some("x")).await;
    assert_eq!(
        routing_of(&app, stranded).await,
        json!({ "state": "no_active_droplet_with_capability", "capability": "x" })
    );

    app.register(8, &["x"], 1).await;
    app.wait_for_status(stranded, "assigned", SOON).await;
    let queued = app.create_task(5, Some("x")).await;
    assert_eq!(
        routing_of(&app, queued).await,
        json!({ "state": "all_capable_droplets_full", "capability": "x", "droplets": 1 })
    );

    let paused = app
        .post(
            "/management/scheduler/jobs/task_router/pause",
            &app.admin(),
            json!({}),
        )
        .await;
    assert_eq!(paused.status, 200, "{paused:?}");
    app.register(9, &["x"], 1).await;
    assert_eq!(
        routing_of(&app, queued).await,
        json!({ "state": "router_paused" })
    );
}

#[tokio::test]
async fn a_task_waiting_out_its_retry_backoff_says_until_when() {
    let app = spawn_app_with(&[
        ("RETRY_BACKOFF_BASE_SECONDS", "120"),
        ("RETRY_BACKOFF_MAX_SECONDS", "300"),
    ])
    .await;
    app.register(8, &["x"], 1).await;
    let id = app.create_task(5, Some("x")).await;
    app.wait_for_status(id, "assigned", SOON).await;
    let droplet = app.droplet(8);
    assert_eq!(app.set_status(id, &droplet, "in_progress").await.status, 200);
    assert_eq!(app.set_status(id, &droplet, "failed").await.status, 200);
    app.wait_for_status(id, "pending", SOON).await;
    let routing = routing_of(&app, id).await;
    assert_eq!(routing["state"], "retry_backoff", "{routing}");
    let until: chrono::DateTime<chrono::Utc> =
        routing["until"].as_str().expect("until").parse().expect("time");
    assert!(
        until > chrono::Utc::now() + chrono::Duration::seconds(30),
        "{routing}"
    );
}

#[tokio::test]
async fn a_large_fleet_records_only_the_best_few_candidates() {
    let app = spawn_app().await;
    // Paused while the fleet registers: each registration wakes the
    // router, and a pass that read the droplets before the last one came
    // could place the task among fewer candidates.
    let router = |action: &str| format!("/management/scheduler/jobs/task_router/{action}");
    let paused = app.post(&router("pause"), &app.admin(), json!({})).await;
    assert_eq!(paused.status, 200, "{paused:?}");
    for id in 20..28 {
        app.register(id, &["x"], 3).await;
    }
    let id = app.create_task(5, Some("x")).await;
    let resumed = app.post(&router("resume"), &app.admin(), json!({})).await;
    assert_eq!(resumed.status, 200, "{resumed:?}");
    app.wait_for_status(id, "assigned", SOON).await;
    let history = app.get(&format!("/tasks/{id}"), &app.admin()).await;
    let rows = history.payload()["task"]["state_history"]
        .as_array()
        .cloned()
        .expect("history");
    let metadata = &rows
        .iter()
        .find(|r| r["to_status"] == "assigned")
        .expect("assigned row")["metadata"];
    assert_eq!(metadata["candidates_total"], 8, "{metadata}");
    assert_eq!(
        metadata["candidates"].as_array().map(Vec::len),
        Some(5),
        "{metadata}"
    );
}
