//! The auth matrix of API.md: 401 for no or bad token, 403 for a missing
//! permission or someone else's task or droplet.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use orchestrator_domain::Permission;
use orchestrator_tests::{SECRET, spawn_app};
use reqwest::Method;
use serde_json::json;

/// Protected endpoints, one of each kind.
const PROTECTED: [(&str, &str); 9] = [
    ("GET", "/tasks"),
    ("POST", "/tasks"),
    ("GET", "/tasks/1"),
    ("PATCH", "/tasks/1"),
    ("DELETE", "/tasks/1"),
    ("GET", "/droplets"),
    ("POST", "/droplets/register"),
    ("POST", "/droplets/1/heartbeat"),
    ("POST", "/droplets/1/activate"),
];

fn signed(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn claims(exp_offset: i64) -> serde_json::Value {
    let now = Utc::now().timestamp();
    json!({ "sub": "mallory", "permissions": ["admin"], "iat": now, "exp": now + exp_offset })
}

#[tokio::test]
async fn bad_or_missing_tokens_are_401_everywhere() {
    let app = spawn_app().await;
    let unsigned = {
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let body = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(600),
            &EncodingKey::from_secret(b"x"),
        )
        .expect("sign");
        let payload = body.split('.').nth(1).expect("claims part").to_owned();
        format!("{header}.{payload}.")
    };
    let no_exp = signed(json!({ "sub": "mallory", "permissions": ["admin"] }), SECRET);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("Bearer not-a-jwt".into())),
        (
            "wrong scheme",
            Some(format!("Basic {}", signed(claims(600), SECRET))),
        ),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                signed(claims(600), "another-secret-that-is-long-enough!")
            )),
        ),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        (
            "expired",
            Some(format!("Bearer {}", signed(claims(-3600), SECRET))),
        ),
        ("no exp", Some(format!("Bearer {no_exp}"))),
    ];
    for (case, header) in &cases {
        for (method, path) in PROTECTED {
            let method: Method = method.parse().expect("method");
            let mut request = app
                .client
                .request(method.clone(), format!("{}{path}", app.address));
            if let Some(header) = header {
                request = request.header("authorization", header);
            }
            let response = request.json(&json!({})).send().await.expect("send");
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").cloned();
            let body: serde_json::Value = response.json().await.expect("json body");
            assert_eq!(status, 401, "{case}: {method} {path}: {body}");
            assert_eq!(body["payload"]["error"]["code"], "unauthorized", "{case}");
            assert!(challenge.is_some(), "{case}: WWW-Authenticate is set");
        }
    }
}

#[tokio::test]
async fn a_token_with_the_right_secret_is_accepted() {
    let app = spawn_app().await;
    let token = signed(claims(600), SECRET);
    assert_eq!(app.get("/tasks", &token).await.status, 200);
}

#[tokio::test]
async fn missing_permissions_are_403() {
    let app = spawn_app().await;
    app.register(8, &["x"], 5).await;
    let reader = app.token("reader", &[Permission::Read], None);
    let writer = app.writer("alice");
    assert_eq!(app.get("/tasks", &reader).await.status, 200, "read may list");
    let create = app
        .post("/tasks", &reader, json!({ "task_type": "a", "title": "b" }))
        .await;
    assert_eq!((create.status, create.error_code()), (403, "forbidden"));
    for action in ["activate", "deactivate"] {
        let reply = app
            .post(&format!("/droplets/8/{action}"), &writer, json!({}))
            .await;
        assert_eq!(reply.status, 403, "{action} needs admin");
    }
    let read_droplet = app.token("droplet-8", &[Permission::Read], Some(8));
    assert_eq!(
        app.post("/droplets/8/heartbeat", &read_droplet, json!({}))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn droplets_act_only_for_themselves() {
    let app = spawn_app().await;
    app.register(8, &["x"], 5).await;
    app.register(9, &["y"], 5).await;
    let nine = app.droplet(9);
    let as_eight = json!({ "droplet_id": 8, "name": "impostor", "endpoint": "http://evil.example" });
    assert_eq!(app.post("/droplets/register", &nine, as_eight).await.status, 403);
    assert_eq!(
        app.post("/droplets/8/heartbeat", &nine, json!({})).await.status,
        403
    );

    let id = app.create_task(5, Some("x")).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    let stolen = app.set_status(id, &nine, "in_progress").await;
    assert_eq!(
        (stolen.status, stolen.error_code()),
        (403, "forbidden"),
        "another droplet's task"
    );
    assert_eq!(
        app.set_status(id, &app.writer("alice"), "in_progress")
            .await
            .status,
        403,
        "not a droplet"
    );
    assert_eq!(
        app.set_status(id, &app.droplet(8), "in_progress").await.status,
        200
    );
}

#[tokio::test]
async fn only_the_creator_or_an_admin_cancels() {
    let app = spawn_app().await;
    let first = app.create_task(5, Some("none")).await;
    let second = app.create_task(5, Some("none")).await;
    let bob = app.delete(&format!("/tasks/{first}"), &app.writer("bob")).await;
    assert_eq!((bob.status, bob.error_code()), (403, "forbidden"));
    assert_eq!(
        app.delete(&format!("/tasks/{first}"), &app.writer("alice"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.delete(&format!("/tasks/{second}"), &app.admin()).await.status,
        200
    );
}

#[tokio::test]
async fn public_endpoints_need_no_token() {
    let app = spawn_app().await;
    for path in ["/health", "/capabilities", "/state", "/dependencies"] {
        let reply = app.send(Method::GET, path, None, None).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert!(
            reply.body.get("payload").is_none(),
            "{path} is not enveloped: {reply:?}"
        );
    }
}
