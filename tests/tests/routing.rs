//! Routing by capability, load and priority, driven by events.

use std::time::Duration;

use orchestrator_tests::spawn_app;
use serde_json::json;

const SOON: Duration = Duration::from_secs(1);

#[tokio::test]
async fn tasks_go_to_droplets_with_the_capability() {
    let app = spawn_app().await;
    app.register(1, &["build"], 10).await;
    app.register(2, &["verify"], 10).await;
    let verify = app.create_task(5, Some("verify")).await;
    let build = app.create_task(5, Some("build")).await;
    let any = app.create_task(5, None).await;
    assert_eq!(
        app.wait_for_status(verify, "assigned", SOON).await["assigned_droplet_id"],
        2
    );
    assert_eq!(
        app.wait_for_status(build, "assigned", SOON).await["assigned_droplet_id"],
        1
    );
    assert!(app.wait_for_status(any, "assigned", SOON).await["assigned_droplet_id"].is_i64());
}

#[tokio::test]
async fn a_task_waits_for_its_capability_and_goes_as_soon_as_it_appears() {
    let app = spawn_app().await;
    app.register(1, &["build"], 10).await;
    let id = app.create_task(5, Some("gpu")).await;
    app.await_routing_pass(99).await;
    assert_eq!(app.task(id).await["status"], "pending");
    app.register(7, &["gpu"], 1).await;
    assert_eq!(
        app.wait_for_status(id, "assigned", SOON).await["assigned_droplet_id"],
        7
    );
}

#[tokio::test]
async fn the_least_loaded_droplet_gets_the_next_task() {
    let app = spawn_app().await;
    app.register(1, &["x"], 10).await;
    let first = app.create_task(5, Some("x")).await;
    app.wait_for_status(first, "assigned", SOON).await;
    app.register(2, &["x"], 10).await;
    let second = app.create_task(5, Some("x")).await;
    assert_eq!(
        app.wait_for_status(second, "assigned", SOON).await["assigned_droplet_id"],
        2
    );
    let third = app.create_task(5, Some("x")).await;
    let droplet = app.wait_for_status(third, "assigned", SOON).await["assigned_droplet_id"].clone();
    assert_eq!(
        droplet, 1,
        "tied at one task each: droplet 1 has been idle longer"
    );
}

#[tokio::test]
async fn higher_priority_goes_first_when_slots_are_scarce() {
    let app = spawn_app().await;
    let low = app.create_task(9, Some("x")).await;
    let high = app.create_task(1, Some("x")).await;
    let middle = app.create_task(5, Some("x")).await;
    app.register(1, &["x"], 1).await;
    app.wait_for_status(high, "assigned", SOON).await;
    assert_eq!(app.task(middle).await["status"], "pending");
    assert_eq!(app.task(low).await["status"], "pending");

    // Finishing frees the slot, which wakes the router for the next in line.
    let droplet = app.droplet(1);
    assert_eq!(app.set_status(high, &droplet, "in_progress").await.status, 200);
    assert_eq!(app.set_status(high, &droplet, "completed").await.status, 200);
    app.wait_for_status(middle, "assigned", SOON).await;
    assert_eq!(app.task(low).await["status"], "pending");
}

#[tokio::test]
async fn a_droplet_never_holds_more_than_its_capacity() {
    let app = spawn_app().await;
    app.register(1, &["x"], 3).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.create_task(5, Some("x")).await);
    }
    app.await_routing_pass(99).await;
    let admin = app.admin();
    let held = app.get("/tasks?assigned_droplet_id=1", &admin).await;
    assert_eq!(held.payload()["total"], 3);
    let state = app.send(reqwest::Method::GET, "/state", None, None).await;
    assert_eq!(state.body["custom_metrics"]["tasks_pending"], 3);
    assert_eq!(
        state.body["custom_metrics"]["tasks_active"], 4,
        "three and the witness"
    );
}

#[tokio::test]
async fn the_assignment_estimate_follows_the_recent_waits() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let slow = json!({ "task_type": "render", "required_capability": "slow" });
    let first = app.post("/tasks", &writer, slow.clone()).await;
    assert_eq!(
        first.payload()["estimated_assignment_seconds"],
        0,
        "nothing seen yet"
    );
    let id = first.payload()["task_id"].as_i64().expect("id");
    // The task waits for a capable droplet, which comes after 1.6 s: the
    // wait the estimate must then report. With one slot, held by that
    // task, the next ones wait and add no wait of their own before their
    // answers are written.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.register(5, &["slow", "fast"], 1).await;
    let assigned = app.wait_for_status(id, "assigned", Duration::from_secs(5)).await;
    let waited = seconds_between(&assigned["created_at"], &assigned["assigned_at"]);
    assert!(waited >= 1.6, "{assigned}");
    let second = app.post("/tasks", &writer, slow).await;
    assert_eq!(
        second.payload()["estimated_assignment_seconds"].as_f64(),
        Some(waited.round()),
        "the {waited} s the first one waited, rounded"
    );
    let other = app
        .post(
            "/tasks",
            &writer,
            json!({ "task_type": "t", "required_capability": "fast" }),
        )
        .await;
    assert_eq!(
        other.payload()["estimated_assignment_seconds"],
        0,
        "another capability"
    );
}

fn seconds_between(from: &serde_json::Value, to: &serde_json::Value) -> f64 {
    let at = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
    };
    (at(to) - at(from)).as_seconds_f64()
}
