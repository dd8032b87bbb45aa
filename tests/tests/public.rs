//! The public UDC endpoints and the trace id every response carries.

use orchestrator_tests::spawn_app;
use reqwest::Method;
use uuid::Uuid;

#[tokio::test]
async fn health_names_the_orchestrator() {
    let app = spawn_app().await;
    let reply = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        (reply.body["id"].as_i64(), reply.body["name"].as_str()),
        (Some(10), Some("Orchestrator"))
    );
    assert_eq!(reply.body["status"], "active");
    for field in ["steward", "endpoint", "updated_at", "message"] {
        assert!(reply.body[field].is_string(), "{field}: {reply:?}");
    }
}

#[tokio::test]
async fn capabilities_and_dependencies_follow_the_udc_shape() {
    let app = spawn_app().await;
    let caps = app.send(Method::GET, "/capabilities", None, None).await;
    assert_eq!(caps.body["udc_version"], "1.0");
    assert!(
        caps.body["features"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "task_routing"))
    );
    let deps = app.send(Method::GET, "/dependencies", None, None).await;
    assert_eq!(deps.body["required"][0]["name"], "Registry v2");
    assert_eq!(deps.body["required"][0]["status"], "not_configured");
    assert!(deps.body["missing"].is_array());
}

#[tokio::test]
async fn state_reports_real_process_figures_and_counts() {
    let app = spawn_app().await;
    app.register(3, &["x"], 5).await;
    app.create_task(5, Some("nobody")).await;
    let reply = app.send(Method::GET, "/state", None, None).await;
    let body = &reply.body;
    assert!(body["memory_mb"].as_f64().is_some_and(|mb| mb > 1.0), "{body}");
    assert!(body["cpu_percent"].as_f64().is_some_and(|p| p >= 0.0), "{body}");
    assert!(body["uptime_seconds"].is_u64());
    let metrics = &body["custom_metrics"];
    assert_eq!(
        (
            metrics["tasks_pending"].as_u64(),
            metrics["droplets_active"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(metrics["droplets_total"], 1);
    assert!(metrics["num_threads"].as_u64().is_some_and(|n| n >= 1));
}

#[tokio::test]
async fn every_response_carries_a_trace_id_and_echoes_the_callers() {
    let app = spawn_app().await;
    let plain = app.send(Method::GET, "/health", None, None).await;
    assert!(
        plain
            .header("x-trace-id")
            .and_then(|t| Uuid::parse_str(t).ok())
            .is_some()
    );
    let mine = Uuid::new_v4();
    let response = app
        .client
        .get(format!("{}/tasks", app.address))
        .header("x-trace-id", mine.to_string())
        .bearer_auth(app.admin())
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-trace-id"], mine.to_string().as_str());
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["trace_id"], mine.to_string());
    let not_a_uuid = app
        .client
        .get(format!("{}/health", app.address))
        .header("x-trace-id", "abc")
        .send()
        .await;
    let header = not_a_uuid.expect("send").headers()["x-trace-id"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        Uuid::parse_str(&header).is_ok(),
        "a non-UUID trace id is replaced"
    );
}
