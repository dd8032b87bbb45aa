//! UDC messaging: `/message` commands and queries, `/send` and `/broadcast`
//! against fake droplets that record what they receive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use orchestrator_tests::{TestApp, serve, spawn_app, spawn_app_with};
use serde_json::{Value, json};

/// A droplet's `/message` endpoint: records each envelope, then answers
/// `status` with `{"echo": payload}` after `delay`.
struct FakeDroplet {
    received: Mutex<Vec<Value>>,
    status: u16,
    delay: Duration,
}

async fn receive(fake: web::Data<FakeDroplet>, body: web::Json<Value>) -> HttpResponse {
    let envelope = body.into_inner();
    let echo = json!({ "echo": envelope["payload"].clone() });
    fake.received.lock().expect("lock").push(envelope);
    tokio::time::sleep(fake.delay).await;
    let status = actix_web::http::StatusCode::from_u16(fake.status).expect("status");
    HttpResponse::build(status).json(echo)
}

fn fake_droplet(status: u16, delay: Duration) -> (String, Arc<FakeDroplet>) {
    let fake = web::Data::new(FakeDroplet {
        received: Mutex::new(Vec::new()),
        status,
        delay,
    });
    let state = fake.clone();
    let url = serve(move |routes| {
        routes
            .app_data(state.clone())
            .route("/message", web::post().to(receive));
    });
    (url, fake.into_inner())
}

async fn register_at(app: &TestApp, id: i64, endpoint: &str, capabilities: &[&str]) {
    let body = json!({ "droplet_id": id, "name": format!("d{id}"), "endpoint": endpoint, "capabilities": capabilities });
    let reply = app.post("/droplets/register", &app.droplet(id), body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

fn envelope(message_type: &str, payload: Value) -> Value {
    json!({
        "udc_version": "1.0",
        "trace_id": "550e8400-e29b-41d4-a716-446655440000",
        "source": "droplet-5",
        "target": "droplet-10",
        "message_type": message_type,
        "timestamp": "2026-11-25T10:30:00Z",
        "payload": payload,
    })
}

#[tokio::test]
async fn message_runs_every_command_and_query() {
    let app = spawn_app().await;
    app.register(8, &["x"], 5).await;
    let writer = app.writer("droplet-5-user");
    let create = envelope(
        "command",
        json!({ "command": "create_task", "task_data": { "task_type": "a", "title": "t", "required_capability": "none" } }),
    );
    let reply = app.post("/message", &writer, create).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["message_type"], "response");
    assert_eq!(reply.body["trace_id"], "550e8400-e29b-41d4-a716-446655440000");
    let id = reply.payload()["task_id"].as_i64().expect("task_id");
    assert_eq!(reply.payload()["status"], "pending");

    let status = app
        .post(
            "/message",
            &writer,
            envelope("query", json!({ "query": "task_status", "task_id": id })),
        )
        .await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.payload()["task"]["id"], id);
    assert_eq!(
        status.payload()["task"]["state_history"][0]["to_status"],
        "pending"
    );

    let cancel = app
        .post(
            "/message",
            &writer,
            envelope("command", json!({ "command": "cancel_task", "task_id": id })),
        )
        .await;
    assert_eq!(cancel.status, 200, "{cancel:?}");
    assert_eq!(cancel.payload()["status"], "cancelled");

    let droplets = app
        .post(
            "/message",
            &writer,
            envelope("query", json!({ "query": "droplet_list" })),
        )
        .await;
    assert_eq!(droplets.payload()["total"], 1, "{droplets:?}");
    assert_eq!(droplets.payload()["droplets"][0]["droplet_id"], 8);

    let system = app
        .post(
            "/message",
            &writer,
            envelope("query", json!({ "query": "system_status" })),
        )
        .await;
    assert_eq!(system.status, 200, "{system:?}");
    assert_eq!(system.payload()["tasks"]["pending"], 0);
    assert_eq!(system.payload()["droplets"]["active"], 1);
}

#[tokio::test]
async fn message_refuses_what_it_cannot_run_with_a_clear_error() {
    let app = spawn_app().await;
    let writer = app.writer("someone");
    let mut no_timestamp = envelope("query", json!({ "query": "droplet_list" }));
    no_timestamp.as_object_mut().expect("object").remove("timestamp");
    let mut elsewhere = envelope("query", json!({ "query": "droplet_list" }));
    elsewhere["target"] = json!("droplet-3");
    let mut old_version = envelope("query", json!({ "query": "droplet_list" }));
    old_version["udc_version"] = json!("0.9");
    let cases = [
        (
            envelope("command", json!({ "command": "launch_rocket" })),
            "payload.command",
        ),
        (envelope("query", json!({})), "payload.query"),
        (envelope("gossip", json!({})), "message_type"),
        (
            envelope(
                "command",
                json!({ "command": "create_task", "task_data": { "title": "no type" } }),
            ),
            "payload.task_data",
        ),
        (
            envelope("query", json!({ "query": "task_status", "task_id": "seven" })),
            "payload.task_id",
        ),
        (elsewhere, "target"),
        (old_version, "udc_version"),
    ];
    for (body, field) in cases {
        let reply = app.post("/message", &writer, body).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{field}: {reply:?}"
        );
        assert_eq!(reply.payload()["error"]["details"]["field"], field, "{reply:?}");
    }
    let reply = app.post("/message", &writer, no_timestamp).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (422, "validation_failed"),
        "{reply:?}"
    );
    let bare = app
        .post("/message", &writer, json!({ "query": "droplet_list" }))
        .await;
    assert_eq!(bare.status, 422, "a bare payload is not an envelope: {bare:?}");
    let unknown_task = app
        .post(
            "/message",
            &writer,
            envelope("query", json!({ "query": "task_status", "task_id": 999 })),
        )
        .await;
    assert_eq!(unknown_task.status, 404, "{unknown_task:?}");
    let reader_only = app.token("reader", &[orchestrator_domain::Permission::Read], None);
    let create = envelope(
        "command",
        json!({ "command": "create_task", "task_data": { "task_type": "a", "title": "t" } }),
    );
    assert_eq!(app.post("/message", &reader_only, create).await.status, 403);
}

#[tokio::test]
async fn send_forwards_an_envelope_and_returns_the_answer() {
    let app = spawn_app_with(&[("SEND_TIMEOUT_SECONDS", "1")]).await;
    let (endpoint, fake) = fake_droplet(200, Duration::ZERO);
    register_at(&app, 21, &endpoint, &["x"]).await;
    let writer = app.writer("droplet-5");
    let body = json!({ "target_droplet_id": 21, "message_type": "status_update", "payload": { "hello": 1 } });
    let reply = app.post("/send", &writer, body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.payload()["status"], 200);
    assert_eq!(reply.payload()["response"], json!({ "echo": { "hello": 1 } }));
    let received = fake.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["target"], "droplet-21");
    assert_eq!(received[0]["source"], "droplet-10");
    assert_eq!(received[0]["message_type"], "status_update");
    assert_eq!(
        received[0]["trace_id"], reply.body["trace_id"],
        "the trace id travels along"
    );

    // The spec's form: query parameters, the payload as JSON text.
    let path = "/send?target_droplet_id=21&message_type=query&payload=%7B%22q%22%3A2%7D";
    let reply = app.post(path, &writer, json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.payload()["response"], json!({ "echo": { "q": 2 } }));
}

#[tokio::test]
async fn send_says_which_way_a_droplet_failed() {
    let app = spawn_app_with(&[("SEND_TIMEOUT_SECONDS", "1")]).await;
    app.expect_server_errors();
    let (slow, _) = fake_droplet(200, Duration::from_secs(3));
    register_at(&app, 22, &slow, &[]).await;
    register_at(&app, 23, "http://127.0.0.1:9", &[]).await;
    let writer = app.writer("droplet-5");
    let to = |id: i64| json!({ "target_droplet_id": id, "message_type": "ping" });
    let reply = app.post("/send", &writer, to(22)).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (504, "droplet_timeout"),
        "{reply:?}"
    );
    let reply = app.post("/send", &writer, to(23)).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (502, "droplet_unreachable"),
        "{reply:?}"
    );
    let reply = app.post("/send", &writer, to(99)).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (404, "not_found"),
        "{reply:?}"
    );
    let reply = app
        .post("/send", &writer, json!({ "message_type": "ping" }))
        .await;
    assert_eq!(reply.status, 422, "{reply:?}");
    let reply = app
        .post(
            "/send?target_droplet_id=22&message_type=ping&payload=%7Bnope",
            &writer,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 422, "{reply:?}");
}

#[tokio::test]
async fn endpoints_on_the_orchestrators_host_are_refused_unless_allowed() {
    let app = spawn_app_with(&[("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "false")]).await;
    let app = &app;
    let register = |id: i64, endpoint: &str| {
        let body = json!({ "droplet_id": id, "name": format!("d{id}"), "endpoint": endpoint, "capabilities": ["x"] });
        let token = app.droplet(id);
        async move { app.post("/droplets/register", &token, body).await }
    };
    for endpoint in [
        "http://127.0.0.1:8021",
        "http://[::ffff:127.0.0.1]:8021",
        "http://2130706433",
        "http://localhost:8021",
        "http://169.254.169.254",
        "http://metadata.google.internal",
    ] {
        let reply = register(31, endpoint).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{endpoint}: {reply:?}"
        );
        assert_eq!(
            reply.payload()["error"]["details"]["field"],
            "endpoint",
            "{reply:?}"
        );
        let message = reply.payload()["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("ALLOW_PRIVATE_DROPLET_ENDPOINTS"), "{message}");
    }
    let missing = app.get("/droplets/31", &app.admin()).await;
    assert_eq!(missing.status, 404, "nothing was registered: {missing:?}");
    for (id, endpoint) in [
        (32, "http://10.0.3.7:8021"),
        (33, "http://echo:8021"),
        (34, "https://droplets.example.com"),
    ] {
        assert_eq!(register(id, endpoint).await.status, 201, "{endpoint}");
    }

    let (local, fake) = fake_droplet(200, Duration::ZERO);
    let allowing = spawn_app_with(&[("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true")]).await;
    register_at(&allowing, 35, &local, &["x"]).await;
    let reply = allowing
        .post(
            "/send",
            &allowing.writer("w"),
            json!({ "target_droplet_id": 35, "message_type": "ping" }),
        )
        .await;
    assert_eq!(reply.status, 200, "a mesh on one host may allow them: {reply:?}");
    assert_eq!(fake.received.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn answers_longer_than_max_reply_bytes_are_refused_with_a_clear_error() {
    let app = spawn_app_with(&[("MAX_REPLY_BYTES", "1024")]).await;
    app.expect_server_errors();
    let (endpoint, fake) = fake_droplet(200, Duration::ZERO);
    register_at(&app, 36, &endpoint, &[]).await;
    let writer = app.writer("droplet-5");
    let echoed = |text: String| json!({ "target_droplet_id": 36, "message_type": "echo", "payload": { "text": text } });

    let reply = app.post("/send", &writer, echoed("y".repeat(2048))).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (502, "droplet_reply_too_large"),
        "{reply:?}"
    );
    let message = reply.payload()["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("more than 1024 bytes (MAX_REPLY_BYTES)"),
        "{message}"
    );
    assert_eq!(fake.received.lock().expect("lock").len(), 1, "it was delivered");

    let reply = app.post("/send", &writer, echoed("short".into())).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.payload()["response"]["echo"]["text"], "short");
}

#[tokio::test]
async fn broadcast_reaches_every_active_droplet_and_reports_each() {
    let app = spawn_app_with(&[
        ("SEND_TIMEOUT_SECONDS", "1"),
        ("BROADCAST_RATE_LIMIT_PER_MINUTE", "3"),
    ])
    .await;
    let (ok, ok_fake) = fake_droplet(200, Duration::ZERO);
    let (refusing, _) = fake_droplet(503, Duration::ZERO);
    register_at(&app, 31, &ok, &["x"]).await;
    register_at(&app, 32, &refusing, &["x"]).await;
    register_at(&app, 33, "http://127.0.0.1:9", &["y"]).await;
    let (off, off_fake) = fake_droplet(200, Duration::ZERO);
    register_at(&app, 34, &off, &["x"]).await;
    assert_eq!(
        app.post("/droplets/34/deactivate", &app.admin(), json!({}))
            .await
            .status,
        200
    );

    let body = json!({ "message_type": "announcement", "payload": { "text": "hi" } });
    let reply = app.post("/broadcast", &app.admin(), body.clone()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.payload()["targets"], 3);
    assert_eq!(reply.payload()["delivered"], 1);
    let outcomes: Vec<(i64, String)> = reply.payload()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["droplet_id"].as_i64().expect("id"),
                r["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (31, "delivered".to_owned()),
            (32, "refused".to_owned()),
            (33, "unreachable".to_owned())
        ]
    );
    assert_eq!(ok_fake.received.lock().expect("lock").len(), 1);
    assert!(
        off_fake.received.lock().expect("lock").is_empty(),
        "an inactive droplet gets nothing"
    );

    let only_y = app
        .post(
            "/broadcast?capability_filter=y&message_type=announcement",
            &app.admin(),
            json!({}),
        )
        .await;
    assert_eq!(only_y.payload()["targets"], 1, "{only_y:?}");
    assert_eq!(
        app.post("/broadcast", &app.writer("someone"), body.clone())
            .await
            .status,
        403
    );

    app.post("/broadcast", &app.admin(), body.clone()).await;
    let limited = app.post("/broadcast", &app.admin(), body).await;
    assert_eq!(
        (limited.status, limited.error_code()),
        (429, "rate_limited"),
        "{limited:?}"
    );
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{limited:?}"
    );
}
