//! The management endpoints: version, jobs, pause and resume, emergency stop.

use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_tests::{spawn_app, spawn_app_with, wait_until_refused};
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn registry_sync_is_listed_idle_without_a_registry_and_can_be_paused() {
    let app = spawn_app().await;
    let admin = app.admin();
    let jobs = app.get("/management/scheduler/jobs", &admin).await;
    let sync = jobs.payload()["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == "registry_sync").cloned())
        .expect("registry_sync is listed");
    let reason = sync["idle_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("REGISTRY_URL"), "{sync}");
    assert_eq!(
        (sync["runs"].as_u64(), sync["next_run_at"].is_null()),
        (Some(0), true),
        "{sync}"
    );
    let others_idle = jobs.payload()["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["id"] != "registry_sync" && !j["idle_reason"].is_null())
        .count();
    assert_eq!(others_idle, 0, "only the Registry's job lacks its service");
    let paused = app
        .post(
            "/management/scheduler/jobs/registry_sync/pause",
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(paused.status, 200, "{paused:?}");
    assert_eq!(paused.payload()["job"]["paused"], true, "{paused:?}");
    let resumed = app
        .post(
            "/management/scheduler/jobs/registry_sync/resume",
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(resumed.payload()["job"]["paused"], false, "{resumed:?}");
}

/// The jobs the spec names (section 6); the orchestrator adds its own.
const SPEC_JOBS: [&str; 5] = [
    "health_monitor",
    "task_router",
    "heartbeat_cleanup",
    "websocket_ping",
    "registry_sync",
];

/// The jobs the application declares, in their order.
fn declared_jobs() -> Vec<&'static str> {
    orchestrator_app::jobs::ALL
        .iter()
        .map(|job| job.spec.id)
        .collect()
}

#[tokio::test]
async fn admins_see_the_jobs_and_others_are_refused() {
    let app = spawn_app().await;
    let reply = app.get("/management/scheduler/jobs", &app.admin()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let jobs = reply.payload()["jobs"].as_array().cloned().expect("jobs");
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, declared_jobs(), "every job of jobs::ALL, in its order");
    for of_the_spec in SPEC_JOBS {
        assert!(
            ids.contains(&of_the_spec),
            "{of_the_spec} is one of the spec's jobs"
        );
    }
    for field in [
        "interval_seconds",
        "paused",
        "last_run_at",
        "next_run_at",
        "last_error",
        "runs",
    ] {
        assert!(jobs[1].get(field).is_some(), "{field} in {}", jobs[1]);
    }
    assert_eq!(jobs[1]["interval_seconds"], 3600, "ROUTER_INTERVAL of the suite");
    assert_eq!(
        app.get("/management/scheduler/jobs", &app.writer("alice"))
            .await
            .status,
        403
    );
    assert_eq!(
        app.send(Method::GET, "/management/scheduler/jobs", None, None)
            .await
            .status,
        401
    );
    let version = app.get("/management/version", &app.admin()).await;
    assert_eq!(version.payload()["version"], env!("CARGO_PKG_VERSION"));
    let unknown = app
        .post("/management/scheduler/jobs/nope/pause", &app.admin(), json!({}))
        .await;
    assert_eq!((unknown.status, unknown.error_code()), (404, "not_found"));
}

#[tokio::test]
async fn a_paused_router_assigns_nothing_until_resumed() {
    let app = spawn_app().await;
    let admin = app.admin();
    let paused = app
        .post("/management/scheduler/jobs/task_router/pause", &admin, json!({}))
        .await;
    assert_eq!(paused.payload()["job"]["paused"], true);
    app.register(1, &["x"], 5).await;
    let id = app.create_task(5, Some("x")).await;
    let next = app.after_a_routing_pass(app.create_task(5, Some("x"))).await;
    assert_eq!(app.task(id).await["status"], "pending");
    assert_eq!(app.task(next).await["status"], "pending");
    let resumed = app
        .post("/management/scheduler/jobs/task_router/resume", &admin, json!({}))
        .await;
    assert_eq!(resumed.payload()["job"]["paused"], false);
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_emergency_stop_halts_routing_but_keeps_reads() {
    let app = spawn_app().await;
    let admin = app.admin();
    app.register(1, &["x"], 5).await;
    let stop = app.post("/management/emergency-stop", &admin, json!({})).await;
    assert_eq!(stop.status, 200, "{stop:?}");
    let jobs = stop.payload()["jobs"].as_array().cloned().expect("jobs");
    assert!(jobs.iter().all(|j| j["paused"] == true), "{jobs:?}");
    let id = app.create_task(5, Some("x")).await;
    app.after_a_routing_pass(app.create_task(5, Some("x"))).await;
    assert_eq!(
        app.task(id).await["status"],
        "pending",
        "no routing during the stop"
    );
    assert_eq!(app.get("/tasks", &admin).await.status, 200, "reads go on");
    assert_eq!(
        app.post("/management/emergency-stop", &app.writer("x"), json!({}))
            .await
            .status,
        403
    );
    app.post("/management/scheduler/jobs/task_router/resume", &admin, json!({}))
        .await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_is_graceful_and_admin_only() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/management/shutdown", &app.writer("x"), json!({}))
            .await
            .status,
        403
    );
    let cleared = app.post("/management/cache/clear", &app.admin(), json!({})).await;
    assert_eq!(
        (cleared.status, cleared.payload()["cleared"].clone()),
        (200, json!(["service_directory"]))
    );
    let mut feed = app.feed(&format!("/ws/tasks?token={}", app.admin())).await;
    let reply = app.post("/management/shutdown", &app.admin(), json!({})).await;
    assert_eq!(
        (
            reply.status,
            &reply.payload()["shutting_down"],
            &reply.payload()["graceful"],
            &reply.payload()["abandoned_requests"]
        ),
        (200, &json!(true), &json!(true), &json!(0)),
        "{reply:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("the feed is closed");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame saying 'going away': {other:?}"),
    }
    wait_until_refused(&app.address, Duration::from_secs(10)).await;
}

/// A `CONFIG_FILE` of this test's own, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(contents: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("orchestrator-reload-{}.env", uuid::Uuid::new_v4()));
        let file = ConfigFile(path);
        file.write(contents);
        file
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).expect("write the config file");
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn router_interval(app: &orchestrator_tests::TestApp) -> serde_json::Value {
    interval_of(app, "task_router").await
}

async fn interval_of(app: &orchestrator_tests::TestApp, job: &str) -> serde_json::Value {
    let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
    jobs.payload()["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == job))
        .map(|j| j["interval_seconds"].clone())
        .unwrap_or_else(|| panic!("the {job} job"))
}

#[tokio::test]
async fn reload_config_applies_a_changed_file_and_names_what_needs_a_restart() {
    let file = ConfigFile::new("ROUTER_INTERVAL=3600\n");
    let app = spawn_app_with(&[("CONFIG_FILE", &file.path())]).await;
    assert_eq!(
        app.post("/management/reload-config", &app.writer("x"), json!({}))
            .await
            .status,
        403
    );
    let unchanged = app
        .post("/management/reload-config", &app.admin(), json!({}))
        .await;
    assert_eq!(
        (
            unchanged.status,
            &unchanged.payload()["changed"],
            &unchanged.payload()["requires_restart"]
        ),
        (200, &json!([]), &json!([])),
        "{unchanged:?}"
    );

    file.write(
        "# faster routing\nROUTER_INTERVAL=5\nWORKERS=3\nTASK_RETENTION_INTERVAL=120\nTASK_RETENTION_DAYS=7\n",
    );
    let reply = app
        .post("/management/reload-config", &app.admin(), json!({}))
        .await;
    assert_eq!(
        (
            reply.status,
            &reply.payload()["changed"],
            &reply.payload()["requires_restart"]
        ),
        (
            200,
            &json!(["ROUTER_INTERVAL", "TASK_RETENTION_INTERVAL"]),
            &json!(["TASK_RETENTION_DAYS", "WORKERS"])
        ),
        "{reply:?}"
    );
    assert_eq!(router_interval(&app).await, 5, "applied at once");
    assert_eq!(interval_of(&app, "task_retention").await, 120);
}

#[tokio::test]
async fn reload_config_refuses_an_invalid_file_and_changes_nothing() {
    let file = ConfigFile::new("ROUTER_INTERVAL=5\n");
    let app = spawn_app_with(&[("CONFIG_FILE", &file.path())]).await;
    file.write("ROUTER_INTERVAL=soon\nHEARTBEAT_TIMEOUT=0\n");
    let reply = app
        .post("/management/reload-config", &app.admin(), json!({}))
        .await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (422, "validation_failed"),
        "{reply:?}"
    );
    assert_eq!(reply.payload()["error"]["details"]["field"], "configuration");
    let error = reply.payload()["error"].to_string();
    assert!(
        error.contains("ROUTER_INTERVAL") && error.contains("soon") && error.contains("HEARTBEAT_TIMEOUT"),
        "every bad variable is named: {error}"
    );
    assert_eq!(router_interval(&app).await, 5, "nothing changed");

    drop(file);
    let missing = app
        .post("/management/reload-config", &app.admin(), json!({}))
        .await;
    assert_eq!(missing.status, 422, "{missing:?}");
    assert_eq!(router_interval(&app).await, 5, "nothing changed");
}

#[tokio::test]
async fn the_background_services_are_listed_by_name() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/management/services", &app.writer("x")).await.status,
        403
    );
    let reply = app.get("/management/services", &app.admin()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let names: Vec<&str> = reply.payload()["services"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for expected in [
        "router: routing passes",
        "router: alarm for waiting tasks",
        "schedules: fire when due",
        "job: task_router",
        "job: health_monitor",
        "recovery: retries on failure",
        "feeds: fan-out",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    // Push delivery is off in the suite, there is no Registry, and an idle job never starts.
    for absent in [
        "delivery: push to droplets",
        "registry: registration",
        "job: registry_sync",
    ] {
        assert!(!names.contains(&absent), "{absent} listed in {names:?}");
    }
    assert_eq!(reply.payload()["running"], names.len(), "all of them run");
}

/// On PostgreSQL the store's own loops are services too: the event bus's
/// two connections from the start, the heartbeat writer once a heartbeat
/// is held. The memory store has no loops of its own.
#[tokio::test]
async fn the_stores_loops_are_listed_with_the_services() {
    let on_postgres = orchestrator_tests::on_postgres();
    let app = spawn_app().await;
    let names = |reply: orchestrator_tests::Reply| -> Vec<String> {
        reply.payload()["services"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    let before = names(app.get("/management/services", &app.admin()).await);
    for bus in [
        "events: notify other replicas",
        "events: listen to other replicas",
    ] {
        assert_eq!(
            before.iter().any(|n| n == bus),
            on_postgres,
            "{bus} in {before:?}"
        );
    }
    assert_eq!(app.register(8, &["echo"], 2).await.status, 201);
    // The first heartbeat of a droplet is written at once; later ones are
    // held and written together.
    for _ in 0..2 {
        let beat = app
            .post("/droplets/8/heartbeat", &app.droplet(8), json!({}))
            .await;
        assert_eq!(beat.status, 200, "{beat:?}");
    }
    let after = names(app.get("/management/services", &app.admin()).await);
    assert_eq!(
        after.iter().any(|n| n == "heartbeats: write those held"),
        on_postgres,
        "{after:?}"
    );
}
