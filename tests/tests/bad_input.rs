//! Bad input gets a clear error (status, code, sentence), never a 500.

use orchestrator_tests::{MAX_BODY_BYTES, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn task(overrides: Value) -> Value {
    let mut body = json!({ "task_type": "verify", "title": "Verify droplet 14" });
    if let (Some(body), Some(overrides)) = (body.as_object_mut(), overrides.as_object()) {
        body.extend(overrides.clone());
    }
    body
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let token = app.writer("alice");
    for raw in [&b"{\"title\":"[..], b"not json", b"{\"a\":1}}", b"\xff\xfe"] {
        let reply = app
            .send(Method::POST, "/tasks", Some(&token), Some(raw.to_vec()))
            .await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "malformed_json"),
            "{raw:?}: {reply:?}"
        );
        assert!(
            reply.payload()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let token = app.writer("alice");
    let cases = [
        (json!({ "priority": 0 }), Some("priority")),
        (json!({ "priority": 11 }), Some("priority")),
        (json!({ "title": "" }), Some("title")),
        (json!({ "title": "   " }), Some("title")),
        (json!({ "task_type": "x".repeat(51) }), Some("task_type")),
        (json!({ "title": "x".repeat(256) }), Some("title")),
        (json!({ "max_retries": -1 }), Some("max_retries")),
        (json!({ "payload": [1, 2] }), Some("payload")),
        (json!({ "deadline": "2001-01-01T00:00:00Z" }), Some("deadline")),
        (
            json!({ "required_capability": "has spaces" }),
            Some("required_capability"),
        ),
        (json!({ "priority": "urgent" }), None),
        (json!({ "priority": 2.5 }), None),
        (json!({ "deadline": "tomorrow" }), None),
        (json!({ "colour": "blue" }), None),
    ];
    for (overrides, field) in cases {
        let reply = app.post("/tasks", &token, task(overrides.clone())).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{overrides}: {reply:?}"
        );
        if let Some(field) = field {
            assert_eq!(reply.payload()["error"]["details"]["field"], field, "{overrides}");
        }
    }
    let missing = app.post("/tasks", &token, json!({ "title": "no type" })).await;
    assert_eq!(missing.status, 422, "{missing:?}");
    let empty = app
        .send(Method::POST, "/tasks", Some(&token), Some(Vec::new()))
        .await;
    assert_eq!(
        empty.status, 422,
        "an empty body reads as {{}} and misses fields: {empty:?}"
    );
}

#[tokio::test]
async fn bad_registrations_and_heartbeats_are_422() {
    let app = spawn_app().await;
    let admin = app.admin();
    let cases = [
        json!({ "droplet_id": 0, "name": "a", "endpoint": "http://a" }),
        json!({ "droplet_id": 3_000_000_000_i64, "name": "a", "endpoint": "http://a" }),
        json!({ "droplet_id": 1, "name": "", "endpoint": "http://a" }),
        json!({ "droplet_id": 1, "name": "a", "endpoint": "ftp://a" }),
        json!({ "droplet_id": 1, "name": "a", "endpoint": "http://a", "capabilities": [""] }),
        json!({ "droplet_id": 1, "name": "a", "endpoint": "http://a", "max_concurrent_tasks": 0 }),
        json!({ "droplet_id": "one", "name": "a", "endpoint": "http://a" }),
    ];
    for body in cases {
        let reply = app.post("/droplets/register", &admin, body.clone()).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{body}: {reply:?}"
        );
    }
    app.register(1, &[], 1).await;
    let bad_status = app
        .post("/droplets/1/heartbeat", &admin, json!({ "status": "sleepy" }))
        .await;
    assert_eq!(bad_status.status, 422);
    // A struct's fields given as an array, or a body that is no object at all.
    for body in [json!([]), json!(["active"]), json!(7), json!("active")] {
        let reply = app.post("/droplets/1/heartbeat", &admin, body.clone()).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{body}: {reply:?}"
        );
    }
    let as_array = app
        .post("/tasks", &app.writer("alice"), json!(["verify", "a title"]))
        .await;
    assert_eq!(as_array.status, 422, "{as_array:?}");
    let bad_patch = app.patch("/tasks/1", &admin, json!({ "status": "done" })).await;
    assert_eq!(bad_patch.status, 422, "unknown status value: {bad_patch:?}");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app().await;
    let huge = task(json!({ "description": "x".repeat(MAX_BODY_BYTES) }));
    let reply = app.post("/tasks", &app.writer("alice"), huge).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (413, "payload_too_large"),
        "{reply:?}"
    );
    assert_eq!(reply.payload()["error"]["details"]["limit_bytes"], MAX_BODY_BYTES);
}

#[tokio::test]
async fn unknown_ids_are_404_and_non_numeric_ids_400() {
    let app = spawn_app().await;
    let admin = app.admin();
    for path in [
        "/tasks/999999",
        "/tasks/0",
        "/tasks/-4",
        "/droplets/4242",
        "/droplets/4242/capabilities",
    ] {
        let reply = app.get(path, &admin).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (404, "not_found"),
            "{path}: {reply:?}"
        );
    }
    let patch = app.set_status(999_999, &admin, "in_progress").await;
    assert_eq!(patch.status, 404);
    assert_eq!(app.delete("/tasks/999999", &admin).await.status, 404);
    assert_eq!(
        app.post("/droplets/4242/heartbeat", &admin, json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        app.post("/droplets/4242/activate", &admin, json!({}))
            .await
            .status,
        404
    );
    for path in [
        "/tasks/abc",
        "/tasks/1.5",
        "/tasks/99999999999999999999",
        "/droplets/x",
        "/droplets/x/capabilities",
    ] {
        let reply = app.get(path, &admin).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_path"),
            "{path}: {reply:?}"
        );
    }
}

#[tokio::test]
async fn bad_query_parameters_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin();
    for query in [
        "limit=0",
        "limit=501",
        "status=done",
        "priority_min=0",
        "priority_max=11",
        "priority_min=8&priority_max=2",
    ] {
        let reply = app.get(&format!("/tasks?{query}"), &admin).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{query}: {reply:?}"
        );
    }
    for query in ["limit=abc", "offset=-1", "color=red"] {
        let reply = app.get(&format!("/tasks?{query}"), &admin).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_query"),
            "{query}: {reply:?}"
        );
    }
    assert_eq!(app.get("/tasks?limit=500", &admin).await.status, 200);
    assert_eq!(app.get("/droplets?status=sleepy", &admin).await.status, 422);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let admin = app.admin();
    let nowhere = app.get("/nowhere", &admin).await;
    assert_eq!((nowhere.status, nowhere.error_code()), (404, "not_found"));
    let wrong = app.send(Method::PUT, "/tasks", Some(&admin), None).await;
    assert_eq!((wrong.status, wrong.error_code()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn wrapped_requests_are_unwrapped_and_keep_their_trace_id() {
    let app = spawn_app().await;
    let trace = Uuid::new_v4();
    let envelope = json!({
        "udc_version": "1.0",
        "trace_id": trace,
        "source": "droplet-5",
        "target": "droplet-10",
        "message_type": "command",
        "timestamp": "2026-01-01T00:00:00Z",
        "payload": { "task_type": "verify", "title": "wrapped" },
    });
    let reply = app.post("/tasks", &app.writer("alice"), envelope).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.body["trace_id"], json!(trace));
    assert_eq!(reply.header("x-trace-id"), Some(trace.to_string().as_str()));
}

#[tokio::test]
async fn values_the_database_cannot_hold_are_422_naming_the_field() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let nul = "bad\u{0}value";
    let cases = [
        (task(json!({ "payload": { "note": nul } })), "payload"),
        (task(json!({ "payload": { nul: 1 } })), "payload"),
        (task(json!({ "title": nul })), "title"),
        (task(json!({ "description": nul })), "description"),
        (task(json!({ "task_type": nul })), "task_type"),
    ];
    for (body, field) in cases {
        let reply = app.post("/tasks", &writer, body.clone()).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{body}: {reply:?}"
        );
        assert_eq!(reply.payload()["error"]["details"]["field"], field, "{body}");
    }
    let long_name = json!({ "droplet_id": 1, "name": "n".repeat(101), "endpoint": "http://a" });
    let reply = app.post("/droplets/register", &app.admin(), long_name).await;
    assert_eq!(
        (
            reply.status,
            reply.payload()["error"]["details"]["field"].as_str()
        ),
        (422, Some("name"))
    );

    app.register(8, &["x"], 5).await;
    let metrics = app
        .post(
            "/droplets/8/heartbeat",
            &app.droplet(8),
            json!({ "metrics": { "m": nul } }),
        )
        .await;
    assert_eq!(
        (
            metrics.status,
            metrics.payload()["error"]["details"]["field"].as_str()
        ),
        (422, Some("metrics"))
    );
    let id = app.create_task(5, Some("x")).await;
    app.wait_for_status(id, "assigned", std::time::Duration::from_secs(1))
        .await;
    app.set_status(id, &app.droplet(8), "in_progress").await;
    let result = app
        .patch(
            &format!("/tasks/{id}"),
            &app.droplet(8),
            json!({ "status": "completed", "result": { "r": nul } }),
        )
        .await;
    assert_eq!(
        (
            result.status,
            result.payload()["error"]["details"]["field"].as_str()
        ),
        (422, Some("result"))
    );
    let failed = app
        .patch(
            &format!("/tasks/{id}"),
            &app.droplet(8),
            json!({ "status": "failed", "error_message": nul }),
        )
        .await;
    assert_eq!(failed.status, 422, "{failed:?}");
    assert_eq!(app.task(id).await["status"], "in_progress", "nothing was stored");

    let long_subject = app.token(&"s".repeat(101), &[orchestrator_domain::Permission::Write], None);
    assert_eq!(app.get("/tasks", &long_subject).await.status, 401);
}

/// Deeply nested JSON, huge numbers, duplicate keys and bodies that are not
/// JSON get a clear 4xx, never a 5xx or a guess.
#[tokio::test]
async fn hostile_bodies_get_clear_4xx() {
    let app = spawn_app().await;
    let token = app.writer("alice");
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (
            format!(r#"{{"task_type":"a","title":"t","payload":{{"x":{nested}}}}}"#),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            r#"{"task_type":"a","title":"t","priority":1e400}"#.into(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            r#"{"task_type":"a","title":"t","priority":123456789012345678901234567890}"#.into(),
            "application/json",
            422,
            "validation_failed",
        ),
        (
            r#"{"task_type":"a","task_type":"b","title":"t"}"#.into(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            r#"{"task_type":"a","title":"t","payload":{"k":1,"k":2}}"#.into(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            r#"{"task_type":"a","title":"t"}"#.into(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            "task_type=a&title=t".into(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (
            r#"{"task_type":"a","title":"t","colour":"red"}"#.into(),
            "application/json",
            422,
            "validation_failed",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let reply = app
            .client
            .post(format!("{}/tasks", app.address))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(
            reply.status().as_u16(),
            status,
            "{content_type} {}",
            &body[..body.len().min(80)]
        );
        let json: Value = reply.json().await.expect("a JSON error body");
        assert_eq!(json["payload"]["error"]["code"], code, "{json}");
    }
    let twice = app
        .client
        .post(format!("{}/tasks", app.address))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"task_type":"a","title":"t","title":"u"}"#)
        .send()
        .await
        .expect("send");
    let json: Value = twice.json().await.expect("json");
    assert!(
        json["payload"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"title\" appears twice")),
        "{json}"
    );
    let vendor = app
        .client
        .post(format!("{}/tasks", app.address))
        .bearer_auth(&token)
        .header("content-type", "application/vnd.udc+json; charset=utf-8")
        .body(r#"{"task_type":"a","title":"t"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(vendor.status(), 201, "a +json type is JSON");
}
