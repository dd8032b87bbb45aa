//! Joining the mesh through a fake Registry that signs real RS256 tokens:
//! registration at start, the directory copied into the store, Registry
//! tokens verified with its published key, and work going on while the
//! Registry is down.

use std::time::Duration;

use orchestrator_tests::fake_registry::{OTHER_PRIVATE, REGISTRY_PRIVATE, REGISTRY_PUBLIC, sign};
use orchestrator_tests::{TestApp, eventually, spawn_app_with};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A Registry that knows droplets 14 and 15 and publishes its key.
async fn registry(directory: Value) -> MockServer {
    let server = MockServer::start().await;
    mount(&server, directory).await;
    server
}

async fn mount(server: &MockServer, directory: Value) {
    Mock::given(method("POST"))
        .and(path("/register"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "token": "t", "service_id": 42 })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/auth/public-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "public_key": REGISTRY_PUBLIC })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services"))
        .respond_with(ResponseTemplate::new(200).set_body_json(directory))
        .mount(server)
        .await;
}

fn directory(verifier_capabilities: &[&str]) -> Value {
    json!([
        { "droplet_id": 14, "name": "verifier", "endpoint": "http://127.0.0.1:9/14", "capabilities": verifier_capabilities },
        { "id": 15, "name": "scanner", "host": "127.0.0.1", "port": 9, "capabilities": ["scan"] },
    ])
}

async fn app_on(registry: &MockServer) -> TestApp {
    let url = registry.uri();
    spawn_app_with(&[("REGISTRY_URL", url.as_str()), ("REGISTRY_SYNC_INTERVAL", "1")]).await
}

/// A token the Registry (or whoever holds `key`) signed for droplet `id`,
/// with its permissions.
fn registry_token(key: &str, id: i64) -> String {
    sign(
        key,
        json!({ "sub": format!("droplet-{id}"), "permissions": ["read", "write"], "droplet_id": id }),
    )
}

async fn droplet(app: &TestApp, id: i64) -> Value {
    let reply = app.get(&format!("/droplets/{id}"), &app.admin()).await;
    reply.payload()["droplet"].clone()
}

async fn registry_dependency(app: &TestApp) -> Value {
    let reply = app
        .client
        .get(format!("{}/dependencies", app.address))
        .send()
        .await
        .expect("dependencies");
    let body: Value = reply.json().await.expect("json");
    body["required"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_registers_and_keeps_a_copy_of_the_directory() {
    let registry = registry(directory(&["verify"])).await;
    let app = app_on(&registry).await;

    eventually(5, "registered", || async {
        let requests = registry.received_requests().await.unwrap_or_default();
        requests.iter().any(|r| r.url.path() == "/register")
    })
    .await;
    let requests = registry.received_requests().await.unwrap_or_default();
    let registration: Value = requests
        .iter()
        .find(|r| r.url.path() == "/register")
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .expect("a registration");
    assert_eq!(registration["droplet_id"], 10);
    assert_eq!(registration["name"], "Orchestrator");
    assert_eq!(registration["health_endpoint"], "/health");
    assert_eq!(registration["udc_compliant"], true);

    eventually(5, "directory copied", || async {
        droplet(&app, 15).await.is_object()
    })
    .await;
    let verifier = droplet(&app, 14).await;
    assert_eq!(
        verifier["status"], "inactive",
        "listed droplets work once they beat: {verifier}"
    );
    assert_eq!(verifier["capabilities"], json!(["verify"]));
    assert_eq!(droplet(&app, 15).await["endpoint"], "http://127.0.0.1:9");

    let dependency = registry_dependency(&app).await;
    assert_eq!(dependency["status"], "connected", "{dependency}");
    assert!(dependency["last_check"].is_string(), "{dependency}");
    let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
    assert!(jobs.payload().to_string().contains("registry_sync"), "{jobs:?}");

    registry.reset().await;
    mount(&registry, directory(&["verify", "lint"])).await;
    eventually(5, "directory change picked up", || async {
        droplet(&app, 14).await["capabilities"] == json!(["verify", "lint"])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_signed_tokens_are_accepted_and_others_refused() {
    let registry = registry(directory(&["verify"])).await;
    let app = app_on(&registry).await;
    let signed = registry_token(REGISTRY_PRIVATE, 14);
    let mut reply = app.get("/tasks", &signed).await;
    for _ in 0..50 {
        if reply.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = app.get("/tasks", &signed).await;
    }
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["target"], "droplet-14");

    let cleared = app.post("/management/cache/clear", &app.admin(), json!({})).await;
    assert_eq!(
        cleared.payload()["cleared"],
        json!(["service_directory", "registry_signing_key"]),
        "{cleared:?}"
    );
    assert_eq!(
        app.get("/tasks", &signed).await.status,
        200,
        "the key is fetched again"
    );

    let forged = app.get("/tasks", &registry_token(OTHER_PRIVATE, 14)).await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (401, "unauthorized"),
        "{forged:?}"
    );
    assert_eq!(
        app.get("/tasks", &app.admin()).await.status,
        200,
        "HS256 tokens still work"
    );

    let standalone = spawn_app_with(&[]).await;
    let refused = standalone.get("/tasks", &signed).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.to_string().contains("REGISTRY_URL"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_goes_on_while_the_registry_is_down() {
    let registry = registry(directory(&["verify"])).await;
    let app = app_on(&registry).await;
    let token = registry_token(REGISTRY_PRIVATE, 14);
    eventually(5, "directory copied and key cached", || async {
        droplet(&app, 14).await.is_object() && app.get("/tasks", &token).await.status == 200
    })
    .await;

    registry.reset().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(503))
        .mount(&registry)
        .await;
    eventually(5, "the outage is noticed", || async {
        registry_dependency(&app).await["status"] == "disconnected"
    })
    .await;
    let dependency = registry_dependency(&app).await;
    assert!(
        dependency["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{dependency}"
    );

    // The droplet the Registry listed beats with its Registry token and gets work.
    let beat = app.post("/droplets/14/heartbeat", &token, json!({})).await;
    assert_eq!(beat.status, 200, "{beat:?}");
    assert_eq!(beat.payload()["status"], "active");
    let id = app.create_task(5, Some("verify")).await;
    let task = app.wait_for_status(id, "assigned", Duration::from_secs(5)).await;
    assert_eq!(task["assigned_droplet_id"], 14);
}

#[tokio::test]
async fn an_unreachable_registry_does_not_hold_up_the_start() {
    let app = spawn_app_with(&[
        ("REGISTRY_URL", "http://127.0.0.1:9"),
        ("REGISTRY_SYNC_INTERVAL", "1"),
    ])
    .await;
    let health = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    assert_eq!(app.get("/tasks", &app.admin()).await.status, 200);
    eventually(5, "the failure is reported", || async {
        registry_dependency(&app).await["status"] == "disconnected"
    })
    .await;
}

#[tokio::test]
async fn with_an_audience_set_only_tokens_issued_for_this_orchestrator_are_accepted() {
    let registry = registry(directory(&["verify"])).await;
    let url = registry.uri();
    let app = spawn_app_with(&[
        ("REGISTRY_URL", url.as_str()),
        ("REGISTRY_AUDIENCE", "orchestrator"),
    ])
    .await;
    let token = |aud: Option<&str>| {
        let mut claims = json!({ "sub": "droplet-14", "permissions": ["read"], "droplet_id": 14 });
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        sign(REGISTRY_PRIVATE, claims)
    };
    assert_eq!(app.get("/tasks", &token(Some("orchestrator"))).await.status, 200);
    let other = app.get("/tasks", &token(Some("billing"))).await;
    assert_eq!(other.status, 401, "a token for another service: {other:?}");
    assert!(other.body.to_string().contains("another service"), "{other:?}");
    assert_eq!(
        app.get("/tasks", &token(None)).await.status,
        401,
        "no audience at all"
    );

    let open = app_on(&registry).await;
    assert_eq!(
        open.get("/tasks", &token(Some("billing"))).await.status,
        200,
        "without REGISTRY_AUDIENCE the mesh's tokens all go"
    );
}

#[tokio::test]
async fn a_listed_droplet_on_the_orchestrators_host_is_never_called_unless_allowed() {
    let local = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/message"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "secret": "from this host" })))
        .mount(&local)
        .await;
    let listing =
        json!([{ "droplet_id": 16, "name": "local", "endpoint": local.uri(), "capabilities": ["x"] }]);
    let registry = registry(listing).await;
    let url = registry.uri();
    let app = spawn_app_with(&[
        ("REGISTRY_URL", url.as_str()),
        ("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "false"),
    ])
    .await;
    app.expect_server_errors();
    eventually(5, "directory copied", || async {
        droplet(&app, 16).await.is_object()
    })
    .await;

    let to_16 = json!({ "target_droplet_id": 16, "message_type": "ping" });
    let reply = app.post("/send", &app.writer("w"), to_16).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (502, "droplet_endpoint_refused"),
        "{reply:?}"
    );
    let message = reply.payload()["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("127.0.0.1 is a loopback address"), "{message}");
    let received = local.received_requests().await.unwrap_or_default();
    assert!(received.is_empty(), "nothing reached it: {received:?}");
}

#[tokio::test]
async fn a_name_a_droplet_chose_for_itself_never_makes_a_token_that_droplet() {
    let registry = registry(directory(&["verify"])).await;
    let app = app_on(&registry).await;
    eventually(5, "directory copied", || async {
        droplet(&app, 14).await.is_object()
    })
    .await;
    for (id, name) in [(31, "payments"), (32, "verifier")] {
        let body = json!({ "droplet_id": id, "name": name, "endpoint": "http://127.0.0.1:9", "capabilities": ["x"] });
        let reply = app.post("/droplets/register", &app.droplet(id), body).await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }
    // A Registry token naming its service only by name, as another service
    // of the mesh may hold one.
    let named = |name: &str| sign(REGISTRY_PRIVATE, json!({ "service_name": name }));
    let beat = |id: i64, token: String| {
        let app = &app;
        async move {
            app.post(&format!("/droplets/{id}/heartbeat"), &token, json!({}))
                .await
        }
    };

    let impostor = beat(31, named("payments")).await;
    assert_eq!(
        (impostor.status, impostor.error_code()),
        (403, "forbidden"),
        "a self-chosen name vouches for no one: {impostor:?}"
    );
    let listed = beat(14, named("verifier")).await;
    assert_eq!(
        listed.status, 200,
        "the directory's name is the Registry's word, and a droplet calling itself the same takes nothing: {listed:?}"
    );
    assert_eq!(beat(32, named("verifier")).await.status, 403);
    let by_name_only = app.get("/tasks", &named("payments")).await;
    assert_eq!(
        by_name_only.status, 200,
        "it is still a service of the mesh that may read: {by_name_only:?}"
    );
}
