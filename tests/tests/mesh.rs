//! The mesh's own dialect, as `droplet-integration-guide.md` and the UDC
//! template write it: `POST /heartbeat` with the Registry's service id,
//! the Registry's tokens as it issues them (no `permissions`), and the
//! guide's task body (`data`, a priority word, no title).

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_tests::fake_registry::{
    FIRST_SERVICE_ID, FakeRegistry, OTHER_PRIVATE, REGISTRY_PRIVATE, service_token, sign,
};
use orchestrator_tests::{TestApp, eventually, spawn_app, spawn_app_with};
use serde_json::{Value, json};

async fn app_on(registry: &FakeRegistry) -> TestApp {
    let url = registry.uri();
    // The periodic sync is an hour away: a service found is found by asking.
    spawn_app_with(&[("REGISTRY_URL", url.as_str()), ("REGISTRY_SYNC_INTERVAL", "3600")]).await
}

/// What a droplet built from the guide sends to the Registry.
fn guide_registration(droplet_id: i64, name: &str, capabilities: &[&str]) -> Value {
    json!({
        "name": name,
        "droplet_id": droplet_id,
        "port": 9,
        "health_endpoint": "/health",
        "capabilities": capabilities,
        "version": "1.0.0",
        "udc_compliant": true,
    })
}

/// Waits until the orchestrator has the Registry's key (fetched at start).
async fn key_is_cached(app: &TestApp, token: &str) {
    eventually(5, "the Registry's key fetched", || async {
        app.get("/tasks", token).await.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_task_body_is_accepted() {
    let app = spawn_app().await;
    let writer = app.writer("mesh-service");
    let body = json!({ "task_type": "verify", "data": { "code": "def f(): pass" }, "priority": "normal" });
    let created = app.post("/tasks", &writer, body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.payload()["task_id"]
        .as_i64()
        .expect("task_id inside the envelope's payload");
    let task = app.task(id).await;
    assert_eq!(task["title"], "verify", "the title is the type when absent");
    assert_eq!(task["payload"], json!({ "code": "def f(): pass" }));
    assert_eq!(task["priority"], 5);

    for (word, level) in [("critical", 1), ("high", 3), ("low", 8), ("HIGH", 3)] {
        let reply = app
            .post("/tasks", &writer, json!({ "task_type": "t", "priority": word }))
            .await;
        assert_eq!(reply.status, 201, "{word}: {reply:?}");
        let task = app.task(reply.payload()["task_id"].as_i64().expect("id")).await;
        assert_eq!(task["priority"], level, "{word}");
    }
    let spec = app
        .post(
            "/tasks",
            &writer,
            json!({ "task_type": "t", "title": "spec", "priority": 2, "payload": {} }),
        )
        .await;
    assert_eq!(spec.status, 201, "the spec's body still works: {spec:?}");

    for (body, field) in [
        (json!({ "task_type": "t", "priority": "urgent" }), "urgent"),
        (json!({ "task_type": "t", "priority": 11 }), "priority"),
        (json!({ "task_type": "t", "datum": {} }), "datum"),
        (json!({ "task_type": "t", "data": [1] }), "payload"),
        (json!({ "task_type": "t", "title": "" }), "title"),
        (json!({ "task_type": "t", "data": {}, "payload": {} }), "payload"),
    ] {
        let refused = app.post("/tasks", &writer, body.clone()).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, "validation_failed"),
            "{body}: {refused:?}"
        );
        assert!(
            refused.payload()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "the message names {field}: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_takes_the_droplet_id_or_the_callers_own() {
    let app = spawn_app().await;
    app.register(31, &["x"], 1).await;
    let own = app.droplet(31);
    let beat = app
        .post(
            "/heartbeat",
            &own,
            json!({ "droplet_id": 31, "status": "active", "metrics": { "rpm": 4 } }),
        )
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");
    assert_eq!(beat.payload()["droplet_id"], 31);
    assert_eq!(beat.payload()["status"], "active");
    assert!(beat.payload()["next_heartbeat_deadline"].is_number(), "{beat:?}");
    let spec = app.post("/droplets/31/heartbeat", &own, json!({})).await;
    let keys = |reply: &orchestrator_tests::Reply| {
        let mut keys: Vec<String> = reply
            .payload()
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&beat), keys(&spec), "the same answer as the spec's endpoint");

    let quiet = app.post("/heartbeat", &own, json!({ "status": "error" })).await;
    assert_eq!(quiet.status, 200, "no id: the caller's own droplet: {quiet:?}");
    assert_eq!(quiet.payload()["status"], "error");
    let droplet = app.get("/droplets/31", &app.admin()).await;
    assert_eq!(droplet.payload()["droplet"]["status"], "error", "the same effect");

    app.register(32, &["x"], 1).await;
    let other = app.post("/heartbeat", &own, json!({ "droplet_id": 32 })).await;
    assert_eq!(
        (other.status, other.error_code()),
        (403, "forbidden"),
        "{other:?}"
    );
    let nameless = app.post("/heartbeat", &app.admin(), json!({})).await;
    assert_eq!(
        (nameless.status, nameless.error_code()),
        (422, "validation_failed"),
        "{nameless:?}"
    );
    let reader = app.token("viewer", &[Permission::Read], Some(31));
    let read_only = app.post("/heartbeat", &reader, json!({})).await;
    assert_eq!(read_only.status, 403, "{read_only:?}");
    let unknown = app
        .post("/heartbeat", &app.admin(), json!({ "service_id": 9999 }))
        .await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "not_found"),
        "{unknown:?}"
    );
    let strange = app
        .post("/heartbeat", &own, json!({ "status": "active", "cpu": 3 }))
        .await;
    assert_eq!(strange.status, 422, "unknown fields are named: {strange:?}");
    let wrong_method = app.get("/heartbeat", &own).await;
    assert_eq!(wrong_method.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_of_the_mesh_beats_and_works_with_the_registrys_token() {
    let registry = FakeRegistry::start().await;
    let app = app_on(&registry).await;
    // Registered with the Registry after the orchestrator's sync at start.
    let (token, service_id) = registry
        .register(guide_registration(41, "echo-py", &["echo"]))
        .await;
    assert!(
        service_id >= FIRST_SERVICE_ID,
        "the Registry's id, not the droplet's: {service_id}"
    );
    key_is_cached(&app, &token).await;

    let beat = app
        .post(
            "/heartbeat",
            &token,
            json!({ "service_id": service_id, "status": "active", "metrics": {} }),
        )
        .await;
    assert_eq!(beat.status, 200, "found by asking the Registry: {beat:?}");
    assert_eq!(beat.payload()["droplet_id"], 41);
    let droplet = app.get("/droplets/41", &app.admin()).await.payload()["droplet"].clone();
    assert_eq!(
        (droplet["status"].clone(), droplet["service_id"].clone()),
        (json!("active"), json!(service_id))
    );
    assert!(
        app.get("/droplets/10", &app.admin()).await.status == 404,
        "the orchestrator's own listing is no droplet"
    );

    // The token acts as droplet 41: it submits work, and reports its own.
    let created = app
        .post(
            "/tasks",
            &token,
            json!({ "task_type": "echo", "data": { "text": "hi" }, "priority": "high" }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.payload()["task_id"].as_i64().expect("id");
    let task = app.task(id).await;
    assert_eq!(task["created_by"], "echo-py", "the token's subject");
    let routed = app
        .post(
            "/tasks",
            &app.writer("client"),
            json!({ "task_type": "echo", "required_capability": "echo" }),
        )
        .await;
    let routed = routed.payload()["task_id"].as_i64().expect("id");
    app.wait_for_status(routed, "assigned", Duration::from_secs(5))
        .await;
    let started = app.set_status(routed, &token, "in_progress").await;
    assert_eq!(
        started.status, 200,
        "the Registry's token is droplet 41: {started:?}"
    );

    let admin_only = app.post("/droplets/41/deactivate", &token, json!({})).await;
    assert_eq!(admin_only.status, 403, "never admin: {admin_only:?}");
    let someone_else = app.post("/heartbeat", &token, json!({ "droplet_id": 10 })).await;
    assert_eq!(someone_else.status, 403, "{someone_else:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_tokens_are_read_by_each_claim_and_only_from_the_registry() {
    let registry = FakeRegistry::start().await;
    let app = app_on(&registry).await;
    let (_, service_id) = registry
        .register(guide_registration(42, "scanner", &["scan"]))
        .await;
    let by_id = sign(REGISTRY_PRIVATE, json!({ "service_id": service_id.to_string() }));
    key_is_cached(&app, &by_id).await;
    let beat = app.post("/heartbeat", &by_id, json!({})).await;
    assert_eq!(beat.status, 200, "service_id alone, as digits: {beat:?}");
    assert_eq!(beat.payload()["droplet_id"], 42);
    let by_name = sign(REGISTRY_PRIVATE, json!({ "service_name": "scanner" }));
    assert_eq!(
        app.post("/heartbeat", &by_name, json!({})).await.status,
        200,
        "service_name alone"
    );
    let by_sub = sign(REGISTRY_PRIVATE, json!({ "sub": "scanner" }));
    assert_eq!(
        app.post("/heartbeat", &by_sub, json!({})).await.status,
        200,
        "sub alone"
    );

    let not_a_droplet = service_token(9000, "dashboard");
    let reads = app.get("/tasks", &not_a_droplet).await;
    assert_eq!(
        reads.status, 200,
        "a service that is no droplet still reads: {reads:?}"
    );
    let beats = app
        .post("/heartbeat", &not_a_droplet, json!({ "droplet_id": 42 }))
        .await;
    assert_eq!(beats.status, 403, "but is no droplet: {beats:?}");
    let reads_before = registry.directory_reads().await;
    for _ in 0..5 {
        app.get("/tasks", &not_a_droplet).await;
    }
    assert!(
        registry.directory_reads().await <= reads_before + 1,
        "unknown services do not make the Registry be asked on every request"
    );

    let nameless = sign(REGISTRY_PRIVATE, json!({}));
    let refused = app.get("/tasks", &nameless).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.body.to_string().contains("names no service"),
        "{refused:?}"
    );
    let forged = app
        .get(
            "/tasks",
            &sign(OTHER_PRIVATE, json!({ "service_id": service_id })),
        )
        .await;
    assert_eq!(forged.status, 401, "{forged:?}");

    // Tokens signed with JWT_SECRET_KEY still need their permissions.
    let keys = jsonwebtoken::EncodingKey::from_secret(orchestrator_tests::SECRET.as_bytes());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": "scanner", "service_id": service_id, "iat": now, "exp": now + 600 });
    let ours = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &keys).expect("sign");
    let refused = app.get("/tasks", &ours).await;
    assert_eq!(refused.status, 401, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_named_like_a_new_service_does_not_become_it() {
    let registry = FakeRegistry::start().await;
    let app = app_on(&registry).await;
    // Droplet 45 registers itself under the name a service is about to take.
    let squatter = json!({ "droplet_id": 45, "name": "billing", "endpoint": "http://127.0.0.1:9", "capabilities": ["x"] });
    let registered = app.post("/droplets/register", &app.droplet(45), squatter).await;
    assert_eq!(registered.status, 201, "{registered:?}");

    let (token, _) = registry
        .register(guide_registration(46, "billing", &["bill"]))
        .await;
    key_is_cached(&app, &token).await;
    let beat = app
        .post("/heartbeat", &token, json!({ "status": "active" }))
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");
    assert_eq!(
        beat.payload()["droplet_id"],
        46,
        "the service id wins over a name: {beat:?}"
    );
}
