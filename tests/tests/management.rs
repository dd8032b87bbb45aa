//! The management endpoints: version, jobs, pause and resume, emergency stop.

use std::time::Duration;

use orchestrator_tests::spawn_app;
use reqwest::Method;
use serde_json::json;

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

#[tokio::test]
async fn admins_see_the_jobs_and_others_are_refused() {
    let app = spawn_app().await;
    let reply = app.get("/management/scheduler/jobs", &app.admin()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let jobs = reply.payload()["jobs"].as_array().cloned().expect("jobs");
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "health_monitor",
            "task_router",
            "heartbeat_cleanup",
            "websocket_ping",
            "registry_sync",
            "idempotency_cleanup"
        ]
    );
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
    let reply = app.post("/management/shutdown", &app.admin(), json!({})).await;
    assert_eq!(
        (reply.status, reply.payload()["shutting_down"].as_bool()),
        (200, Some(true))
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = app
            .client
            .get(format!("{}/health", app.address))
            .send()
            .await
            .is_err();
        if refused {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still serving after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reload_config_reports_what_changed_or_why_it_cannot() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/management/reload-config", &app.writer("x"), json!({}))
            .await
            .status,
        403
    );
    // The server re-reads this test process's environment, which is not the
    // one the test app was built from: either it is valid and the reply
    // names the differences, or it is not and nothing changes.
    let reply = app
        .post("/management/reload-config", &app.admin(), json!({}))
        .await;
    match reply.status {
        200 => {
            assert!(reply.payload()["changed"].is_array(), "{reply:?}");
            assert!(reply.payload()["requires_restart"].is_array(), "{reply:?}");
        }
        422 => {
            assert_eq!(reply.error_code(), "validation_failed");
            assert_eq!(reply.payload()["error"]["details"]["field"], "environment");
            let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
            assert_eq!(
                jobs.payload()["jobs"][1]["interval_seconds"],
                3600,
                "nothing changed"
            );
        }
        other => panic!("unexpected {other}: {reply:?}"),
    }
}
