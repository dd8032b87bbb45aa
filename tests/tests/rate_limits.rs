//! `RATE_LIMIT_PER_MINUTE`: per caller on authenticated requests, per client
//! address on the others; 429 with `Retry-After` and the error body.

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_server::{JwtKeys, TokenRequest};
use orchestrator_tests::spawn_app_with;
use reqwest::Method;

#[tokio::test]
async fn a_caller_past_its_quota_waits_while_others_go_on() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "3")]).await;
    let alice = app.writer("alice");
    for _ in 0..3 {
        assert_eq!(app.get("/tasks", &alice).await.status, 200);
    }
    let refused = app.get("/tasks", &alice).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (429, "rate_limited"),
        "{refused:?}"
    );
    let wait: u64 = refused
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=21).contains(&wait), "one request every 20 s refills: {wait}");
    assert_eq!(refused.body["error"]["details"]["limit_per_minute"], 3);
    assert_eq!(
        app.get("/tasks", &app.writer("bob")).await.status,
        200,
        "bob has his own quota"
    );
}

#[tokio::test]
async fn anonymous_requests_are_limited_per_address() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        assert_eq!(
            app.send(Method::GET, "/capabilities", None, None).await.status,
            200
        );
    }
    assert_eq!(
        app.send(Method::GET, "/capabilities", None, None).await.status,
        429
    );
    // A bad token counts against the address, which is spent already.
    assert_eq!(app.get("/tasks", "forged.token.here").await.status, 429);
    assert_eq!(
        app.get("/tasks", &app.writer("carol")).await.status,
        200,
        "a valid caller is not an address"
    );
}

#[tokio::test]
async fn forged_tokens_naming_a_caller_spend_the_address_not_that_callers_quota() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "3")]).await;
    let forger = JwtKeys::hs256(b"not-the-server-secret-but-just-as-long-as-it");
    let forged = forger
        .issue(&TokenRequest {
            subject: "victim".into(),
            permissions: vec![Permission::Write],
            droplet_id: None,
            steward: None,
            ttl: Duration::from_secs(600),
        })
        .expect("sign");
    for _ in 0..3 {
        assert_eq!(app.get("/tasks", &forged).await.status, 401);
    }
    assert_eq!(
        app.get("/tasks", &forged).await.status,
        429,
        "past the quota of the address, the only key a forged token has"
    );
    let victim = app.writer("victim");
    for _ in 0..3 {
        assert_eq!(
            app.get("/tasks", &victim).await.status,
            200,
            "the victim's quota is whole"
        );
    }
    assert_eq!(app.get("/tasks", &victim).await.status, 429, "and it is 3");
}

#[tokio::test]
async fn probes_are_answered_after_a_flood_of_anonymous_requests() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "3")]).await;
    for _ in 0..20 {
        app.send(Method::GET, "/state", None, None).await;
    }
    assert_eq!(
        app.send(Method::GET, "/state", None, None).await.status,
        429,
        "the flood is limited"
    );
    for probe in ["/health", "/readyz", "/v1/metadata", "/metrics"] {
        for _ in 0..5 {
            let answer = app.send(Method::GET, probe, None, None).await;
            assert_eq!(answer.status, 200, "{probe}: {answer:?}");
        }
    }
}

/// Sends an anonymous `GET /capabilities` as forwarded for `client`.
async fn forwarded(app: &orchestrator_tests::TestApp, client: &str) -> u16 {
    app.client
        .get(format!("{}/capabilities", app.address))
        .header("X-Forwarded-For", format!("198.51.100.1, {client}"))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_PER_MINUTE", "2"),
        ("TRUSTED_PROXIES", "127.0.0.0/8, ::1"),
    ])
    .await;
    for _ in 0..2 {
        assert_eq!(forwarded(&app, "203.0.113.7").await, 200);
    }
    assert_eq!(forwarded(&app, "203.0.113.7").await, 429);
    assert_eq!(
        forwarded(&app, "203.0.113.8").await,
        200,
        "another client behind the proxy"
    );

    let untrusted = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    for _ in 0..2 {
        assert_eq!(forwarded(&untrusted, "203.0.113.7").await, 200);
    }
    assert_eq!(
        forwarded(&untrusted, "203.0.113.8").await,
        429,
        "without TRUSTED_PROXIES the header is the client's word: one address"
    );
}
