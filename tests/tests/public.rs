//! The public UDC endpoints and the trace id every response carries.

use orchestrator_tests::spawn_app;
use reqwest::Method;
use serde_json::{Value, json};
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
async fn optional_dependencies_are_the_droplets_as_their_heartbeats_tell() {
    let app = spawn_app().await;
    let optional = |deps: &Value| {
        deps["optional"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| {
                (
                    d["id"].as_i64().unwrap_or(0),
                    d["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let deps = app.send(Method::GET, "/dependencies", None, None).await.body;
    assert_eq!(
        optional(&deps),
        [(5, "not_registered".to_owned()), (8, "not_registered".to_owned())]
    );

    app.register(8, &["verify"], 1).await;
    let beat = app
        .post("/droplets/8/heartbeat", &app.droplet(8), json!({}))
        .await;
    let deps = app.send(Method::GET, "/dependencies", None, None).await.body;
    assert_eq!(optional(&deps)[1], (8, "connected".to_owned()), "{deps}");
    assert_eq!(
        deps["optional"][1]["last_check"],
        beat.payload()["last_heartbeat"],
        "the last check is the Verifier's last heartbeat"
    );

    app.post("/droplets/8/deactivate", &app.admin(), json!({})).await;
    let deps = app.send(Method::GET, "/dependencies", None, None).await.body;
    assert_eq!(optional(&deps)[1], (8, "disconnected".to_owned()), "{deps}");
    assert_eq!(deps["optional"][1]["last_error"], "the droplet is inactive");
    assert_eq!(optional(&deps)[0], (5, "not_registered".to_owned()));
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

#[tokio::test]
async fn readiness_says_ready_with_each_check() {
    let app = spawn_app().await;
    let reply = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        serde_json::json!({
            "status": "ready",
            "checks": { "store": "ok", "migrations": "current", "shutting_down": false },
            "reasons": [],
        })
    );
}

#[tokio::test]
async fn metadata_describes_the_service_and_its_endpoints() {
    let app = spawn_app().await;
    let reply = app.send(Method::GET, "/v1/metadata", None, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = &reply.body;
    assert_eq!(
        (
            body["name"].as_str(),
            body["droplet_id"].as_i64(),
            body["service"].as_str()
        ),
        (Some("Orchestrator"), Some(10), Some("orchestrator"))
    );
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["readiness_endpoint"], "/readyz");
    assert!(
        body["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "task_routing")),
        "{body}"
    );
    let endpoints = body["endpoints"].as_array().expect("endpoints");
    let find = |method: &str, path: &str| {
        endpoints
            .iter()
            .find(|e| e["method"] == method && e["path"] == path)
            .unwrap_or_else(|| panic!("{method} {path} is listed: {body}"))
    };
    assert_eq!(find("POST", "/tasks")["authenticated"], true);
    assert_eq!(find("POST", "/heartbeat")["authenticated"], true);
    assert_eq!(find("GET", "/readyz")["authenticated"], false);
    assert_eq!(find("GET", "/health")["authenticated"], false);
    assert!(find("GET", "/tasks/{task_id}")["summary"].is_string());
}

#[tokio::test]
async fn readiness_is_lost_as_soon_as_a_graceful_stop_begins() {
    let vars = [
        ("ENVIRONMENT", "test"),
        ("JWT_SECRET_KEY", orchestrator_tests::SECRET),
        ("WORKERS", "1"),
    ];
    let settings = orchestrator_server::Settings::from_vars(
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .expect("settings");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let app = orchestrator_server::Application::build(settings, listener)
        .await
        .expect("build");
    let url = format!("http://127.0.0.1:{}/readyz", app.port());
    let state = app.state();
    let served = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.expect("readyz").status(), 200);

    // A request in flight holds the stop in its drain; readiness is gone
    // meanwhile. The keep-alive connection is still served; a new one would
    // wait, as none is accepted once the stop has begun.
    let writer = orchestrator_server::JwtKeys::hs256(orchestrator_tests::SECRET.as_bytes())
        .issue(&orchestrator_server::TokenRequest {
            subject: "alice".into(),
            permissions: vec![orchestrator_domain::Permission::Write],
            droplet_id: None,
            steward: None,
            ttl: std::time::Duration::from_secs(60),
        })
        .expect("token");
    let (mut in_flight, rest) = half_sent_creation(&url, &writer);
    orchestrator_tests::eventually(5, "the request is in flight", || {
        let counted = state.stopping.in_flight() == 1;
        async move { counted }
    })
    .await;
    let stopper = state.clone();
    let stopping = tokio::spawn(async move {
        let drained = stopper.begin_stop(0).await.expect("the first stop");
        stopper.finish_stop(drained).await;
        drained
    });
    let reply = loop {
        let reply = client.get(&url).send().await.expect("readyz");
        if reply.status() != 200 {
            break reply;
        }
    };
    assert_eq!(reply.status(), 503);
    let body: serde_json::Value = reply.json().await.expect("JSON");
    assert_eq!(body["checks"]["shutting_down"], true, "{body}");
    assert_eq!(body["reasons"], serde_json::json!(["the process is stopping"]));
    std::io::Write::write_all(&mut in_flight, rest.as_bytes()).expect("the rest");
    let drained = stopping.await.expect("stopped");
    assert!(drained.graceful(), "{drained:?}");
    served.await.expect("joined").expect("served");
}

/// A `POST /tasks` with half its body sent, and the other half.
fn half_sent_creation(readyz: &str, token: &str) -> (std::net::TcpStream, String) {
    let address = readyz
        .trim_start_matches("http://")
        .trim_end_matches("/readyz")
        .to_owned();
    let body = r#"{"task_type": "a", "title": "in flight"}"#;
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    std::io::Write::write_all(&mut stream, format!("{head}{first}").as_bytes()).expect("write");
    (stream, rest.to_owned())
}
