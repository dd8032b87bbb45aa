//! The OpenAPI document describes every endpoint, and Swagger UI serves it
//! when enabled.

use std::collections::BTreeSet;

use orchestrator_tests::spawn_app_with;
use serde_json::Value;

/// Every path the server routes, with its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/health", &["get"]),
    ("/readyz", &["get"]),
    ("/v1/metadata", &["get"]),
    ("/heartbeat", &["post"]),
    ("/capabilities", &["get"]),
    ("/state", &["get"]),
    ("/dependencies", &["get"]),
    ("/openapi.json", &["get"]),
    ("/tasks", &["get", "post"]),
    ("/tasks/batch", &["post"]),
    ("/tasks/{task_id}", &["get", "patch", "delete"]),
    ("/tasks/{task_id}/cancel-request", &["post"]),
    ("/tasks/{task_id}/retry", &["post"]),
    ("/droplets", &["get"]),
    ("/droplets/register", &["post"]),
    ("/droplets/{droplet_id}", &["get"]),
    ("/droplets/{droplet_id}/heartbeat", &["post"]),
    ("/droplets/{droplet_id}/activate", &["post"]),
    ("/droplets/{droplet_id}/deactivate", &["post"]),
    ("/droplets/{droplet_id}/capabilities", &["get"]),
    ("/management/version", &["get"]),
    ("/management/scheduler/jobs", &["get"]),
    ("/management/scheduler/jobs/{job_id}/pause", &["post"]),
    ("/management/scheduler/jobs/{job_id}/resume", &["post"]),
    ("/management/emergency-stop", &["post"]),
    ("/management/shutdown", &["post"]),
    ("/management/reload-config", &["post"]),
    ("/management/cache/clear", &["post"]),
    ("/message", &["post"]),
    ("/send", &["post"]),
    ("/broadcast", &["post"]),
    ("/metrics", &["get"]),
    ("/metrics/summary", &["get"]),
    ("/metrics/tasks/performance", &["get"]),
    ("/metrics/tasks/by-type", &["get"]),
    ("/metrics/droplets/{droplet_id}/performance", &["get"]),
    ("/metrics/routing", &["get"]),
    ("/metrics/system/health", &["get"]),
    ("/ws/tasks", &["get"]),
    ("/ws/droplets", &["get"]),
    ("/ws/status", &["get"]),
    ("/token", &["post"]),
];

async fn document() -> Value {
    let app = spawn_app_with(&[]).await;
    let reply = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("fetch");
    assert_eq!(reply.status(), 200);
    reply.json().await.expect("JSON")
}

#[tokio::test]
async fn every_route_is_documented_with_its_errors_and_security() {
    let doc = document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    assert_eq!(documented, routed);
    for (path, methods) in ROUTES {
        for method in *methods {
            let operation = &paths[*path][*method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            let responses = operation["responses"].as_object().expect("responses");
            for status in ["400", "404", "415", "422", "429", "503"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
            let open = [
                "/health",
                "/readyz",
                "/v1/metadata",
                "/capabilities",
                "/state",
                "/dependencies",
                "/openapi.json",
                "/metrics",
            ];
            assert_eq!(
                operation["security"][0].get("bearer").is_some(),
                !open.contains(path),
                "{method} {path}"
            );
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test]
async fn answers_and_bodies_are_described_in_the_envelope() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let task =
        &doc["paths"]["/tasks/{task_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        task["allOf"][0]["$ref"], "#/components/schemas/Envelope",
        "{task}"
    );
    assert_eq!(
        task["allOf"][1]["properties"]["payload"]["$ref"],
        "#/components/schemas/TaskReply"
    );
    let body = schemas["TaskBody"].to_string();
    assert!(body.contains("PendingReason"), "a pending task says why: {body}");
    assert!(
        schemas["PendingReason"]
            .to_string()
            .contains("all_capable_droplets_full")
    );
    assert!(schemas["Task"]["properties"]["cancel_requested_at"].is_object());
    assert!(schemas["Task"]["properties"]["attempt"].is_object());
    assert!(schemas["RoutingStats"]["properties"]["rescues"].is_object());
    let placement = format!("{} {}", schemas["PlacementRecord"], schemas["Considered"]);
    for field in [
        "candidates",
        "candidates_total",
        "rule",
        "active_tasks",
        "capacity",
        "eligible",
    ] {
        assert!(placement.contains(field), "an assignment says why: {placement}");
    }
    let create = &doc["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(create["$ref"], "#/components/schemas/TaskDraft");
    let codes = schemas["ErrorBody"]["properties"]["error"]["properties"]["code"]["enum"].to_string();
    for code in [
        "stale_attempt",
        "invalid_transition",
        "rate_limited",
        "validation_failed",
    ] {
        assert!(codes.contains(code), "{codes}");
    }
}

#[tokio::test]
async fn swagger_ui_is_served_only_when_enabled() {
    let off = spawn_app_with(&[("ENABLE_SWAGGER", "false")]).await;
    let reply = off
        .client
        .get(format!("{}/docs", off.address))
        .send()
        .await
        .expect("docs");
    assert_eq!(reply.status(), 404);

    let on = spawn_app_with(&[("ENABLE_SWAGGER", "true")]).await;
    let page = on
        .client
        .get(format!("{}/docs", on.address))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("/docs/swagger-ui-bundle.js")
    );
    let bundle = on
        .client
        .get(format!("{}/docs/swagger-ui-bundle.js", on.address))
        .send()
        .await
        .expect("bundle");
    assert_eq!(bundle.status(), 200);
    assert!(
        bundle.bytes().await.expect("bytes").len() > 100_000,
        "the vendored bundle"
    );
    let missing = on
        .client
        .get(format!("{}/docs/nothing.js", on.address))
        .send()
        .await
        .expect("asset");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_naming_the_ones_it_does() {
    let app = spawn_app_with(&[]).await;
    for (method, path, allow) in [
        ("PUT", "/tasks", "GET, POST"),
        ("POST", "/tasks/1", "GET, PATCH, DELETE"),
        ("DELETE", "/health", "GET"),
        ("GET", "/message", "POST"),
        ("POST", "/ws/status", "GET"),
    ] {
        let reply = app
            .client
            .request(method.parse().expect("method"), format!("{}{path}", app.address))
            .header("Authorization", format!("Bearer {}", app.admin()))
            .send()
            .await
            .expect("send");
        assert_eq!(reply.status(), 405, "{method} {path}");
        assert_eq!(reply.headers()["allow"], allow, "{method} {path}");
    }
}

/// Every `propertyNames` schema in `value`, with where it is.
fn property_names<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "propertyNames" {
                    found.push((at.clone(), inner));
                }
                property_names(inner, format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                property_names(inner, format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn maps_are_described_with_string_keys_as_json_has_them() {
    let doc = document().await;
    let mut found = Vec::new();
    property_names(&doc, String::new(), &mut found);
    let not_strings: Vec<_> = found
        .iter()
        .filter(|(_, names)| names.get("type").is_some_and(|t| t != "string"))
        .collect();
    assert!(
        not_strings.is_empty(),
        "JSON object keys are strings: {not_strings:?}"
    );
    let routing = &doc["components"]["schemas"]["RoutingStats"]["properties"]["assignments_per_droplet"];
    assert_eq!(routing["type"], "object", "{routing}");
}
