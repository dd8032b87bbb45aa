//! `POST /token`: admins sign tokens, never above their own permissions;
//! in development it is open.

use orchestrator_tests::{spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn an_admin_signs_a_working_token_for_a_droplet() {
    let app = spawn_app_with(&[("JWT_EXPIRATION_SECONDS", "600")]).await;
    let body = json!({ "droplet_id": 5, "steward": "Ada", "permissions": ["read", "write"] });
    let reply = app.post("/token", &app.admin(), body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.payload()["token_type"], "bearer");
    assert_eq!(reply.payload()["expires_in"], 600);
    let token = reply.payload()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let register =
        json!({ "droplet_id": 5, "name": "five", "endpoint": "http://127.0.0.1:9", "capabilities": ["x"] });
    let registered = app.post("/droplets/register", &token, register).await;
    assert_eq!(
        registered.status, 201,
        "the token acts as droplet 5: {registered:?}"
    );
    let other =
        json!({ "droplet_id": 6, "name": "six", "endpoint": "http://127.0.0.1:9", "capabilities": [] });
    assert_eq!(
        app.post("/droplets/register", &token, other).await.status,
        403,
        "and as no other"
    );
}

#[tokio::test]
async fn tokens_are_refused_to_non_admins_and_above_the_issuers_permissions() {
    let app = spawn_app().await;
    let body = json!({ "subject": "svc", "permissions": ["read"] });
    assert_eq!(
        app.post("/token", &app.writer("w"), body.clone()).await.status,
        403
    );
    let reply = app
        .send(Method::POST, "/token", None, Some(body.to_string().into_bytes()))
        .await;
    assert_eq!(
        reply.status, 401,
        "outside development a token is needed: {reply:?}"
    );
    let cases = [
        (json!({ "permissions": ["read"] }), 422),
        (json!({ "subject": "svc", "permissions": [] }), 422),
        (json!({ "subject": "svc", "permissions": ["root"] }), 422),
        (json!({ "subject": "", "permissions": ["read"] }), 422),
        (json!({ "droplet_id": 0, "permissions": ["read"] }), 422),
        (
            json!({ "subject": "svc", "permissions": ["read"], "colour": "red" }),
            422,
        ),
    ];
    for (body, status) in cases {
        let reply = app.post("/token", &app.admin(), body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {reply:?}");
    }
}

#[tokio::test]
async fn in_development_token_signing_is_open() {
    let app = spawn_app_with(&[("ENVIRONMENT", "development")]).await;
    let body = json!({ "subject": "dashboard", "permissions": ["read"] });
    let reply = app
        .send(Method::POST, "/token", None, Some(body.to_string().into_bytes()))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = reply.payload()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(app.get("/tasks", &token).await.status, 200);
    assert_eq!(
        app.post("/tasks", &token, json!({ "task_type": "a", "title": "t" }))
            .await
            .status,
        403
    );
}
