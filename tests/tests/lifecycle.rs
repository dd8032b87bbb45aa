//! A task's whole life over HTTP, and the droplet endpoints around it.

use std::time::Duration;

use orchestrator_tests::{spawn_app, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn a_task_is_routed_run_and_completed_with_its_history() {
    let app = spawn_app().await;
    app.register(8, &["verify"], 5).await;
    let id = app.create_task(3, Some("verify")).await;

    // The sweep is an hour away: only the creation event can have routed it.
    let assigned = app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    assert_eq!(assigned["assigned_droplet_id"], 8);
    assert_eq!(assigned["assigned_droplet_name"], "droplet 8");

    let droplet = app.droplet(8);
    let started = app.set_status(id, &droplet, "in_progress").await;
    assert_eq!(
        (started.status, started.payload()["task"]["status"].as_str()),
        (200, Some("in_progress"))
    );
    let body = json!({ "status": "completed", "result": { "verdict": "pass" } });
    let done = app.patch(&format!("/tasks/{id}"), &droplet, body).await;
    assert_eq!(done.status, 200, "{done:?}");

    let task = app.task(id).await;
    assert_eq!(task["status"], "completed");
    assert_eq!(task["result"], json!({ "verdict": "pass" }));
    for field in ["created_at", "assigned_at", "started_at", "completed_at"] {
        assert!(task[field].is_string(), "{field} is set: {task}");
    }
    let history = task["state_history"].as_array().expect("history");
    let rows: Vec<(String, String, String)> = history
        .iter()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or("null").to_owned();
            (s("from_status"), s("to_status"), s("changed_by"))
        })
        .collect();
    let expected = [
        ("null", "pending", "alice"),
        ("pending", "assigned", "system:router"),
        ("assigned", "in_progress", "droplet-8"),
        ("in_progress", "completed", "droplet-8"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn creating_answers_with_the_spec_fields_in_an_envelope() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/tasks",
            &app.writer("alice"),
            json!({ "task_type": "verify", "title": "t" }),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["udc_version"], "1.0");
    assert_eq!(
        (reply.body["message_type"].as_str(), reply.body["source"].as_str()),
        (Some("response"), Some("droplet-10"))
    );
    assert_eq!(reply.body["target"], "alice");
    assert_eq!(reply.body["trace_id"].as_str(), reply.header("x-trace-id"));
    for field in [
        "task_id",
        "trace_id",
        "status",
        "created_at",
        "estimated_assignment_seconds",
    ] {
        assert!(!reply.payload()[field].is_null(), "{field}: {reply:?}");
    }
    assert_eq!(reply.payload()["status"], "pending");
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let app = spawn_app().await;
    app.register(8, &["verify"], 10).await;
    for priority in [1, 4, 7, 9] {
        app.create_task(priority, Some("verify")).await;
    }
    let unroutable = app.create_task(2, Some("deploy")).await;
    let admin = app.admin();
    let total = |path: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let reply = app.get(&path, &admin).await;
            assert_eq!(reply.status, 200, "{path}: {reply:?}");
            reply.payload()["total"].as_u64().expect("total")
        }
    };
    app.wait_for_status(unroutable - 1, "assigned", Duration::from_secs(1))
        .await;
    assert_eq!(total("/tasks".into()).await, 5);
    assert_eq!(total("/tasks?status=pending".into()).await, 1);
    assert_eq!(total("/tasks?priority_min=4&priority_max=7".into()).await, 2);
    assert_eq!(
        total("/tasks?assigned_droplet_id=8&status=assigned".into()).await,
        4
    );
    assert_eq!(total("/tasks?task_type=build".into()).await, 0);

    let page = app.get("/tasks?limit=2&offset=1", &admin).await;
    let payload = page.payload();
    assert_eq!(
        (payload["limit"].as_u64(), payload["offset"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (
            payload["tasks"].as_array().map(Vec::len),
            payload["has_more"].as_bool()
        ),
        (Some(2), Some(true))
    );
    let last = app.get("/tasks?limit=2&offset=4", &admin).await;
    assert_eq!(last.payload()["has_more"], false);
    assert_eq!(
        last.payload()["tasks"][0]["id"],
        1,
        "newest first, so the first task comes last"
    );
}

#[tokio::test]
async fn the_list_pages_by_cursor_both_ways_as_it_does_by_offset() {
    let app = spawn_app().await;
    for n in 0..7 {
        app.create_task(1 + n % 10, Some("nobody-has-this")).await;
    }
    let admin = app.admin();
    let ids = |reply: &orchestrator_tests::Reply| -> Vec<i64> {
        reply.payload()["tasks"]
            .as_array()
            .map(|tasks| tasks.iter().filter_map(|t| t["id"].as_i64()).collect())
            .unwrap_or_default()
    };
    let by_offset = ids(&app.get("/tasks?limit=100", &admin).await);
    assert_eq!(by_offset.len(), 7);

    let mut walked = Vec::new();
    let mut path = "/tasks?limit=3".to_owned();
    let mut pages = Vec::new();
    loop {
        let page = app.get(&path, &admin).await;
        assert_eq!(page.status, 200, "{path}: {page:?}");
        assert_eq!(
            page.payload()["total"],
            7,
            "the total is the filter's, on every page"
        );
        walked.extend(ids(&page));
        pages.push(page.payload().clone());
        match page.payload()["next_cursor"].as_str() {
            Some(cursor) => path = format!("/tasks?limit=3&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, by_offset, "the cursors walk the list as the offsets do");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0]["previous_cursor"], serde_json::Value::Null);
    assert_eq!(pages[2]["has_more"], false);

    let previous = pages[2]["previous_cursor"]
        .as_str()
        .expect("the last page has a previous one");
    let back = app
        .get(&format!("/tasks?limit=3&before={previous}"), &admin)
        .await;
    assert_eq!(ids(&back), by_offset[3..6].to_vec(), "{back:?}");

    for (path, field) in [
        ("/tasks?after=yesterday", "after"),
        ("/tasks?before=12_x", "before"),
        ("/tasks?after=1_1&before=1_1", "after"),
        ("/tasks?after=1_1&offset=3", "offset"),
    ] {
        let refused = app.get(path, &admin).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, "validation_failed"),
            "{path}: {refused:?}"
        );
        assert_eq!(refused.payload()["error"]["details"]["field"], field, "{path}");
    }
}

#[tokio::test]
async fn a_task_not_started_can_be_cancelled_by_its_creator() {
    let app = spawn_app().await;
    let id = app.create_task(5, Some("nobody-has-this")).await;
    let reply = app.delete(&format!("/tasks/{id}"), &app.writer("alice")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.payload()["status"], "cancelled");
    assert!(reply.payload()["cancelled_at"].is_string());
    assert_eq!(
        app.task(id).await["state_history"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn registering_again_updates_the_droplet() {
    let app = spawn_app().await;
    let first = app.register(14, &["monitoring"], 5).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.payload()["status"], "active");
    assert_eq!(first.payload()["heartbeat_interval_seconds"], 60);
    assert!(first.payload()["next_heartbeat_deadline"].is_f64());
    let again = app.register(14, &["alerts", "snapshots"], 5).await;
    assert_eq!(again.status, 200, "re-registration is an update");

    let admin = app.admin();
    let list = app.get("/droplets", &admin).await;
    assert_eq!(list.payload()["total"], 1);
    let caps = app.get("/droplets/14/capabilities", &admin).await;
    assert_eq!(caps.payload()["capabilities"], json!(["alerts", "snapshots"]));
    let filtered = app.get("/droplets?capability=alerts&status=active", &admin).await;
    assert_eq!(filtered.payload()["droplets"][0]["droplet_id"], 14);
    let none = app.get("/droplets?capability=monitoring", &admin).await;
    assert_eq!(none.payload()["total"], 0);
}

#[tokio::test]
async fn heartbeats_are_recorded_and_admin_deactivation_sticks() {
    let app = spawn_app().await;
    app.register(3, &[], 5).await;
    let admin = app.admin();
    let droplet = app.droplet(3);
    let beat = app
        .post(
            "/droplets/3/heartbeat",
            &droplet,
            json!({ "status": "active", "metrics": { "cpu_percent": 12.5 } }),
        )
        .await;
    assert_eq!(
        (beat.status, beat.payload()["status"].as_str()),
        (200, Some("active"))
    );
    assert!(beat.payload()["last_heartbeat"].is_string());

    let off = app.post("/droplets/3/deactivate", &admin, json!({})).await;
    assert_eq!(
        (
            off.payload()["status"].as_str(),
            off.payload()["previous_status"].as_str()
        ),
        (Some("inactive"), Some("active"))
    );
    let ignored = app.post("/droplets/3/heartbeat", &droplet, json!({})).await;
    assert_eq!(
        ignored.payload()["status"],
        "inactive",
        "a heartbeat does not undo an admin"
    );
    let on = app.post("/droplets/3/activate", &admin, json!({})).await;
    assert_eq!(on.payload()["status"], "active");
    let got = app.get("/droplets/3", &admin).await;
    assert_eq!(got.payload()["droplet"]["status"], "active");
}

#[tokio::test]
async fn an_inactive_droplet_is_not_given_work_until_it_beats_again() {
    let app = spawn_app_with(&[("ROUTER_INTERVAL", "3600")]).await;
    app.register(5, &["verify"], 5).await;
    app.post("/droplets/5/deactivate", &app.admin(), json!({})).await;
    let id = app.create_task(5, Some("verify")).await;
    app.await_routing_pass(99).await;
    assert_eq!(app.task(id).await["status"], "pending");
    app.post("/droplets/5/activate", &app.admin(), json!({})).await;
    let task = app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    assert_eq!(task["assigned_droplet_id"], 5, "coming back wakes the router");
}
