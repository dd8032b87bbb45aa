//! CORS from `CORS_ORIGINS` only, and the security headers of every response.

use orchestrator_tests::{spawn_app, spawn_app_with};
use reqwest::Method;

const DASHBOARD: &str = "https://dash.example";

async fn preflight(app: &orchestrator_tests::TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}/tasks", app.address))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn only_the_configured_origins_may_call_from_a_browser() {
    let app = spawn_app_with(&[("CORS_ORIGINS", DASHBOARD), ("CORS_ALLOW_CREDENTIALS", "true")]).await;
    let allowed = preflight(&app, DASHBOARD).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(DASHBOARD));
    assert_eq!(header(&allowed, "access-control-allow-credentials"), Some("true"));
    assert!(header(&allowed, "access-control-allow-methods").is_some_and(|m| m.contains("PATCH")));

    let allowed_headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );
    assert_eq!(header(&allowed, "access-control-max-age"), Some("3600"));

    let refused = preflight(&app, "https://evil.example").await;
    assert_eq!(refused.status(), 400, "{refused:?}");
    assert_no_cors_grant(&refused);
    let simple = app
        .client
        .get(format!("{}/health", app.address))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("health");
    // Answered, as a request without CORS would be; the browser keeps the
    // answer from the page for want of an allowed origin.
    assert_eq!(simple.status(), 200, "{simple:?}");
    assert_eq!(header(&simple, "access-control-allow-origin"), None, "{simple:?}");

    let health = app
        .client
        .get(format!("{}/health", app.address))
        .header("Origin", DASHBOARD)
        .send()
        .await
        .expect("health");
    assert_eq!(header(&health, "access-control-allow-origin"), Some(DASHBOARD));
    assert!(
        header(&health, "access-control-expose-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("x-trace-id"))
    );
}

#[tokio::test]
async fn without_origins_no_browser_origin_is_allowed() {
    let app = spawn_app().await;
    let response = preflight(&app, DASHBOARD).await;
    assert_eq!(response.status(), 400, "{response:?}");
    assert_no_cors_grant(&response);
}

/// No header that would let a browser read the answer or send the request.
fn assert_no_cors_grant(response: &reqwest::Response) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
    ] {
        assert_eq!(header(response, name), None, "{name}: {response:?}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for (path, status) in [("/health", 200), ("/tasks", 401), ("/nowhere", 404)] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), status, "{path}");
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(header(&response, name), Some(value), "{path}: {name}");
        }
        assert!(
            header(&response, "content-security-policy").is_some_and(|c| c.contains("default-src 'none'"))
        );
    }
}
