//! The OpenAPI document describes every endpoint, and Swagger UI serves it
//! when enabled.

use std::collections::BTreeSet;

use orchestrator_tests::spawn_app_with;
use reqwest::Method;
use serde_json::Value;

/// The methods a path item of the document may have.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The documented operations: each path with its methods.
fn operations(doc: &Value) -> Vec<(String, BTreeSet<&'static str>)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = METHODS.into_iter().filter(|m| item.get(*m).is_some()).collect();
            (path.clone(), methods)
        })
        .collect()
}

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
    for (path, methods) in operations(&doc) {
        for method in methods {
            let operation = &paths[&path][method];
            let responses = operation["responses"].as_object().expect("responses");
            for status in ["400", "404", "415", "422", "429", "503"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
            // Which operations need a token is the server's one list
            // (openapi.rs); the_document_describes_the_routes_the_server_serves
            // holds it to what each answers without one.
            if let Some(security) = operation.get("security") {
                assert_eq!(security, &serde_json::json!([{"bearer": []}]), "{method} {path}");
            }
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

/// Asks the live server for every documented operation, and for every
/// other method on each documented path, without a token: a documented one
/// must be routed (neither 404 nor 405), any other must be 405 naming
/// exactly the documented methods.
#[tokio::test]
async fn the_document_describes_the_routes_the_server_serves() {
    let app = spawn_app_with(&[]).await;
    let doc = app.send(Method::GET, "/openapi.json", None, None).await.body;
    let operations = operations(&doc);
    assert!(operations.len() > 40, "{operations:?}");
    for (path, methods) in operations {
        let url = concrete(&path);
        let allow: BTreeSet<String> = methods.iter().map(|m| m.to_uppercase()).collect();
        for method in METHODS {
            let reply = app
                .send(method.to_uppercase().parse().expect("method"), &url, None, None)
                .await;
            if methods.contains(method) {
                assert!(
                    !matches!(reply.status, 404 | 405),
                    "{method} {path} is documented but not served: {reply:?}"
                );
                let needs_a_token = doc["paths"][&path][method]["security"][0].get("bearer").is_some();
                assert_eq!(
                    reply.status == 401,
                    needs_a_token,
                    "{method} {path} without a token, documented as needing one: {needs_a_token}: {reply:?}"
                );
            } else {
                assert_eq!(reply.status, 405, "{method} {path} is served but not documented");
                let named: BTreeSet<String> = reply
                    .header("allow")
                    .unwrap_or_default()
                    .split(", ")
                    .map(str::to_owned)
                    .collect();
                assert_eq!(named, allow, "{path}: the Allow header");
            }
        }
    }
}

/// Every route the server registers is in the document, with the methods
/// it takes: a route registered and never documented fails here. The
/// Swagger UI's pages (`/docs`) are not operations of the API.
#[tokio::test]
async fn every_registered_route_is_documented() {
    let doc = document().await;
    let documented: std::collections::BTreeMap<String, BTreeSet<String>> = operations(&doc)
        .into_iter()
        .map(|(path, methods)| (path, methods.iter().map(|m| m.to_uppercase()).collect()))
        .collect();
    let registered = orchestrator_server::routes::registered();
    assert!(registered.len() > 40, "{registered:?}");
    for (path, allow) in registered {
        if path == "/docs" || path.starts_with("/docs/") {
            continue;
        }
        let takes: BTreeSet<String> = allow.split(", ").map(str::to_owned).collect();
        assert_eq!(
            documented.get(&path),
            Some(&takes),
            "{path} is registered for {allow}"
        );
    }
}

/// A documented path with a value for each parameter: `/tasks/{task_id}`
/// becomes `/tasks/1`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{job_id}" => "task_router",
            s if s.starts_with('{') => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
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

/// A job's path parameter lists the jobs the scheduler has, and no other.
#[tokio::test]
async fn the_job_parameter_names_the_schedulers_jobs() {
    let app = spawn_app_with(&[]).await;
    let doc = app.send(Method::GET, "/openapi.json", None, None).await.body;
    let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
    let scheduled: BTreeSet<&str> = jobs.payload()["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["id"].as_str().expect("id"))
        .collect();
    for action in ["pause", "resume"] {
        let path = format!("/management/scheduler/jobs/{{job_id}}/{action}");
        let parameter = &doc["paths"][&path]["post"]["parameters"][0];
        assert_eq!(parameter["name"], "job_id");
        let named: BTreeSet<&str> = parameter["schema"]["enum"]
            .as_array()
            .expect("an enum of job ids")
            .iter()
            .map(|id| id.as_str().expect("an id"))
            .collect();
        assert_eq!(named, scheduled, "{path}");
    }
}

/// Clients are generated from the document: each operation needs an id of
/// its own, and a path parameter is one its path template names.
#[tokio::test]
async fn operation_ids_are_unique_and_path_parameters_are_in_the_path() {
    let doc = document().await;
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "{id} is the id of two operations");
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "path" {
                    let name = parameter["name"].as_str().expect("a name");
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is not in the path"
                    );
                }
            }
        }
    }
}
