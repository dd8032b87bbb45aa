//! The analytics endpoints against a known set of tasks.

use std::time::Duration;

use orchestrator_tests::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

async fn payload(app: &TestApp, path: &str) -> Value {
    let reply = app.get(path, &app.writer("analyst")).await;
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
    reply.payload().clone()
}

/// Droplet 8 completes two tasks and fails one; one task needs a
/// capability no droplet offers.
async fn known_tasks(app: &TestApp) {
    app.register(8, &["x"], 5).await;
    let droplet = app.droplet(8);
    for outcome in ["completed", "completed", "failed"] {
        let body =
            json!({ "task_type": "verify", "title": "t", "required_capability": "x", "max_retries": 0 });
        let reply = app.post("/tasks", &app.writer("alice"), body).await;
        let id = reply.payload()["task_id"].as_i64().expect("id");
        app.wait_for_status(id, "assigned", SOON).await;
        assert_eq!(app.set_status(id, &droplet, "in_progress").await.status, 200);
        assert_eq!(app.set_status(id, &droplet, outcome).await.status, 200);
    }
    app.create_task(5, Some("y")).await;
}

#[tokio::test]
async fn the_metrics_describe_what_happened() {
    let app = spawn_app().await;
    known_tasks(&app).await;

    let summary = payload(&app, "/metrics/summary").await;
    assert_eq!(summary["time_range"], "24h");
    assert_eq!(summary["throughput"], json!({ "created": 4, "finished": 3 }));
    assert_eq!(
        summary["tasks_by_status"],
        json!({ "pending": 1, "completed": 2, "failed": 1 })
    );
    assert_eq!(summary["droplets_by_status"], json!({ "active": 1 }));
    assert_eq!(
        (
            summary["tasks_total"].as_u64(),
            summary["droplets_total"].as_u64()
        ),
        (Some(4), Some(1))
    );

    let performance = payload(&app, "/metrics/tasks/performance?time_range=1h").await;
    assert_eq!(
        (
            performance["finished"].as_u64(),
            performance["completed"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert!((performance["success_rate"].as_f64().expect("rate") - 2.0 / 3.0).abs() < 1e-9);
    assert!(
        performance["queue_wait_seconds"]["p99"]
            .as_f64()
            .is_some_and(|s| (0.0..5.0).contains(&s))
    );
    assert!(
        performance["run_seconds"]["p50"]
            .as_f64()
            .is_some_and(|s| s >= 0.0)
    );
    let other_type = payload(&app, "/metrics/tasks/performance?task_type=scan").await;
    assert_eq!(
        (other_type["finished"].as_u64(), other_type["task_type"].as_str()),
        (Some(0), Some("scan"))
    );
    assert!(other_type["success_rate"].is_null());

    let types = payload(&app, "/metrics/tasks/by-type?time_range=7d").await;
    assert_eq!(
        types["types"],
        json!([{ "task_type": "verify", "total": 4, "by_status": { "pending": 1, "completed": 2, "failed": 1 } }])
    );

    let on_8 = payload(&app, "/metrics/droplets/8/performance?time_range=30d").await;
    assert_eq!(
        (on_8["droplet_id"].as_i64(), on_8["finished"].as_u64()),
        (Some(8), Some(3))
    );

    let routing = payload(&app, "/metrics/routing").await;
    assert_eq!(routing["assignments_per_droplet"], json!({ "8": 3 }));
    assert_eq!(routing["assignments_total"], 3);
    assert_eq!(routing["pending_without_capable_droplet"], json!({ "y": 1 }));
    assert!(routing["time_to_assign_seconds"]["p95"].as_f64().is_some());

    let health = payload(&app, "/metrics/system/health").await;
    assert_eq!(health["store"]["status"], "up");
    assert!(health["store"]["latency_ms"].as_f64().is_some());
    assert_eq!(health["jobs"].as_array().map(Vec::len), Some(7));
    assert_eq!(
        health["droplets"],
        json!({ "total": 1, "by_status": { "active": 1 }, "late_heartbeats": 0, "heartbeat_interval_seconds": 60 })
    );
    assert_eq!(health["websockets"]["total_connections"], 0);
}

#[tokio::test]
async fn droplets_late_on_their_heartbeat_are_counted() {
    let app = spawn_app_with(&[("HEARTBEAT_CHECK_INTERVAL", "1"), ("HEARTBEAT_TIMEOUT", "3600")]).await;
    app.register(1, &["x"], 5).await;
    app.register(2, &["x"], 5).await;
    let admin = app.admin();
    let deactivated = app.post("/droplets/2/deactivate", &admin, json!({})).await;
    assert_eq!(deactivated.status, 200, "{deactivated:?}");
    // Droplet 1 was told to beat every second and stays silent; droplet 2
    // is inactive, so nobody waits for its heartbeat.
    orchestrator_tests::eventually(5, "droplet 1 counted late", || async {
        let health = payload(&app, "/metrics/system/health").await;
        health["droplets"]["late_heartbeats"] == 1
    })
    .await;
    let health = payload(&app, "/metrics/system/health").await;
    assert_eq!(
        health["droplets"]["by_status"],
        json!({ "active": 1, "inactive": 1 })
    );
    let beat = app
        .post("/droplets/1/heartbeat", &app.droplet(1), json!({}))
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");
    let health = payload(&app, "/metrics/system/health").await;
    assert_eq!(health["droplets"]["late_heartbeats"], 0, "{health}");
}

#[tokio::test]
async fn bad_ranges_unknown_droplets_and_missing_permissions_are_refused() {
    let app = spawn_app().await;
    let reader = app.writer("analyst");
    for path in [
        "/metrics/summary?time_range=2h",
        "/metrics/routing?time_range=",
        "/metrics/tasks/by-type?time_range=1w",
    ] {
        let reply = app.get(path, &reader).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{path}: {reply:?}"
        );
        assert_eq!(reply.payload()["error"]["details"]["field"], "time_range");
    }
    let reply = app.get("/metrics/droplets/99/performance", &reader).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (404, "not_found"),
        "{reply:?}"
    );
    let reply = app.get("/metrics/summary?colour=red", &reader).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let nobody = app.token("nobody", &[], None);
    assert_eq!(app.get("/metrics/summary", &nobody).await.status, 403);
    assert_eq!(app.get("/metrics/summary", "not-a-token").await.status, 401);
}

/// The value of the first sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn prometheus_exposes_requests_transitions_queue_depth_and_jobs() {
    let app = spawn_app().await;
    known_tasks(&app).await;
    for _ in 0..2 {
        app.create_task(3, Some("nobody")).await;
    }
    let reply = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scrape");
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/plain")),
        "{:?}",
        reply.headers()
    );
    let text = reply.text().await.expect("text");
    let created = sample(
        &text,
        "orchestrator_http_requests_total",
        &[r#"route="/tasks""#, r#"status="201""#],
    );
    assert!(created.is_some_and(|n| n >= 6.0), "{text}");
    let completed = sample(
        &text,
        "orchestrator_task_transitions_total",
        &[r#"event="task_completed""#],
    );
    assert!(completed.is_some_and(|n| n >= 2.0), "{text}");
    assert_eq!(
        sample(&text, "orchestrator_queue_depth", &[r#"priority="3""#]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orchestrator_queue_depth", &[r#"priority="5""#]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "orchestrator_routing_latency_seconds_count", &[]).is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        sample(&text, "orchestrator_job_runs_total", &[r#"job="task_router""#]).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orchestrator_websocket_clients", &[r#"feed="tasks""#]),
        Some(0.0)
    );
}

#[tokio::test]
async fn prometheus_can_be_turned_off() {
    let app = orchestrator_tests::spawn_app_with(&[("ENABLE_METRICS", "false")]).await;
    let reply = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scrape");
    assert_eq!(reply.status(), 404);
}

/// Waits until `check` holds of a fresh scrape of `/metrics/routing`.
async fn rescues_until(app: &TestApp, check: impl Fn(&Value) -> bool) -> Value {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let routing = payload(app, "/metrics/routing?time_range=1h").await;
        if check(&routing["rescues"]) || tokio::time::Instant::now() > give_up {
            return routing["rescues"].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rescue<'a>(rescues: &'a Value, capability: &str) -> &'a Value {
    rescues
        .as_array()
        .and_then(|all| all.iter().find(|r| r["capability"] == capability))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn rescues_are_counted_by_capability() {
    let app = orchestrator_tests::spawn_app_with(&[
        ("HEARTBEAT_CHECK_INTERVAL", "1"),
        ("ASSIGNMENT_ACK_TIMEOUT", "1"),
    ])
    .await;
    // A droplet that never starts its task: taken back, then given again.
    app.register(4, &["slowpoke"], 1).await;
    let slow = app.create_task(5, Some("slowpoke")).await;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(6);
    while app.task(slow).await["attempt"].as_i64() < Some(2) {
        assert!(tokio::time::Instant::now() < give_up, "never reassigned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A report about the first assignment comes too late.
    let stale = json!({ "status": "in_progress", "attempt": 1 });
    let refused = app.patch(&format!("/tasks/{slow}"), &app.droplet(4), stale).await;
    assert_eq!(refused.error_code(), "stale_attempt", "{refused:?}");
    // A task nobody can run, due in a second: warned, then failed.
    let deadline = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let body =
        json!({ "task_type": "t", "title": "soon", "required_capability": "late", "deadline": deadline });
    app.post("/tasks", &app.writer("alice"), body).await;

    let rescues = rescues_until(&app, |r| rescue(r, "late")["deadline_failures"] == 1).await;
    let late = rescue(&rescues, "late");
    assert_eq!(late["deadline_failures"], 1, "{rescues}");
    assert_eq!(late["deadline_at_risk"], 1, "{rescues}");
    assert_eq!(late["reassignments"], 0, "{rescues}");
    let slowpoke = rescue(&rescues, "slowpoke");
    assert!(slowpoke["ack_timeouts"].as_u64() >= Some(1), "{rescues}");
    assert_eq!(slowpoke["reassignments"], slowpoke["ack_timeouts"], "{rescues}");
    assert_eq!(slowpoke["stale_reports_refused"], 1, "{rescues}");

    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let count = |kind: &str, capability: &str| {
        let labels = [
            format!(r#"kind="{kind}""#),
            format!(r#"capability="{capability}""#),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        sample(&text, "orchestrator_rescues_total", &labels)
    };
    assert!(count("ack_timeout", "slowpoke") >= Some(1.0), "{text}");
    assert_eq!(count("stale_report_refused", "slowpoke"), Some(1.0), "{text}");
    assert_eq!(count("deadline_failure", "late"), Some(1.0), "{text}");
    assert_eq!(count("deadline_at_risk", "late"), Some(1.0), "{text}");
}
