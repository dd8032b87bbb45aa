//! Work keeps moving when droplets die or stall, over HTTP with short timers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_tests::{TestApp, spawn_app_with};
use reqwest::Method;
use serde_json::json;

const CHECK_INTERVAL: u64 = 1;
const HEARTBEAT_TIMEOUT: u64 = 2;

async fn app_with_short_timers(ack_timeout: &str) -> Arc<TestApp> {
    let check = CHECK_INTERVAL.to_string();
    let timeout = HEARTBEAT_TIMEOUT.to_string();
    Arc::new(
        spawn_app_with(&[
            ("HEARTBEAT_CHECK_INTERVAL", check.as_str()),
            ("HEARTBEAT_TIMEOUT", timeout.as_str()),
            ("ASSIGNMENT_ACK_TIMEOUT", ack_timeout),
            ("RETRY_BACKOFF_BASE_SECONDS", "1"),
        ])
        .await,
    )
}

/// A droplet that beats every 200 ms and runs whatever it is assigned.
fn live_worker(app: Arc<TestApp>, id: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let token = app.droplet(id);
        loop {
            app.post(&format!("/droplets/{id}/heartbeat"), &token, json!({}))
                .await;
            let mine = app
                .get(
                    &format!("/tasks?assigned_droplet_id={id}&status=assigned"),
                    &token,
                )
                .await;
            for task in mine.payload()["tasks"].as_array().cloned().unwrap_or_default() {
                let task_id = task["id"].as_i64().unwrap_or_default();
                app.set_status(task_id, &token, "in_progress").await;
                let done = json!({ "status": "completed", "result": { "by": id } });
                app.patch(&format!("/tasks/{task_id}"), &token, done).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_killed_mid_task_has_its_work_finished_by_another_in_time() {
    let app = app_with_short_timers("60").await;
    app.register(1, &["x"], 5).await;
    let id = app.create_task(5, Some("x")).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    assert_eq!(
        app.set_status(id, &app.droplet(1), "in_progress").await.status,
        200
    );
    // Droplet 1 dies here: no more heartbeats, no report.
    let killed = Instant::now();
    app.register(2, &["x"], 5).await;
    let _worker = live_worker(app.clone(), 2);

    let bound = Duration::from_secs(HEARTBEAT_TIMEOUT + CHECK_INTERVAL + 1);
    let task = app.wait_for_status(id, "completed", bound).await;
    let took = killed.elapsed();
    assert!(took <= bound, "finished after {took:?}, bound {bound:?}");
    assert_eq!(task["result"], json!({ "by": 2 }));
    assert_eq!(task["retry_count"], 1);
    let moves: Vec<(String, String)> = task["state_history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["to_status"].as_str().unwrap_or("").to_owned(),
                h["changed_by"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        moves.contains(&("failed".into(), "system:recovery".into())),
        "{moves:?}"
    );
    assert!(
        moves.contains(&("pending".into(), "system:recovery".into())),
        "{moves:?}"
    );

    let late = app.set_status(id, &app.droplet(1), "completed").await;
    assert_eq!(
        (late.status, late.error_code()),
        (409, "stale_attempt"),
        "the dead droplet's late report: {late:?}"
    );
    let droplet = app.get("/droplets/1", &app.admin()).await;
    assert_eq!(droplet.payload()["droplet"]["status"], "inactive");
}

#[tokio::test]
async fn an_assignment_not_started_in_time_is_taken_back() {
    let app = app_with_short_timers("1").await;
    app.register(1, &["x"], 5).await;
    let id = app.create_task(5, Some("x")).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let task = app.task(id).await;
        let history = task["state_history"].as_array().cloned().unwrap_or_default();
        let requeued = history.iter().any(|h| {
            h["from_status"] == "assigned"
                && h["to_status"] == "pending"
                && h["changed_by"] == "system:recovery"
        });
        if requeued {
            break;
        }
        assert!(Instant::now() < deadline, "not taken back: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_task_past_its_deadline_fails() {
    let app = app_with_short_timers("60").await;
    let deadline = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let body =
        json!({ "task_type": "t", "title": "soon", "required_capability": "nobody", "deadline": deadline });
    let created = app.post("/tasks", &app.writer("alice"), body).await;
    let id = created.payload()["task_id"].as_i64().expect("id");
    let task = app.wait_for_status(id, "failed", Duration::from_secs(4)).await;
    assert!(
        task["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("deadline")),
        "{task}"
    );
    assert_eq!(task["retry_count"], 0, "no retry after a deadline");
}

#[tokio::test]
async fn a_silent_droplet_goes_inactive_and_its_next_heartbeat_revives_it() {
    let app = app_with_short_timers("60").await;
    app.register(1, &["x"], 5).await;
    let admin = app.admin();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.get("/droplets/1", &admin).await.payload()["droplet"]["status"] != "inactive" {
        assert!(Instant::now() < deadline, "never marked inactive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = app.create_task(5, Some("x")).await;
    app.await_routing_pass(99).await;
    assert_eq!(
        app.task(id).await["status"],
        "pending",
        "no work for an inactive droplet"
    );
    let beat = app
        .post("/droplets/1/heartbeat", &app.droplet(1), json!({}))
        .await;
    assert_eq!(beat.payload()["status"], "active");
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, 200);
}
