//! `/concurrency-limits`: at most the limit of tasks with one
//! `concurrency_key` are assigned or running at once; the others wait
//! `pending` (reason `concurrency_limited`) and run as slots free.

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_tests::{TestApp, eventually, spawn_app};
use serde_json::{Value, json};

async fn keyed(app: &TestApp, key: &str) -> i64 {
    let body = json!({ "task_type": "export", "required_capability": "export", "concurrency_key": key });
    let reply = app.post("/tasks", &app.writer("alice"), body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.payload()["task_id"].as_i64().expect("id")
}

async fn statuses(app: &TestApp, ids: &[i64]) -> Vec<String> {
    let mut all = Vec::new();
    for id in ids {
        all.push(
            app.task(*id).await["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    all
}

fn count(statuses: &[String], status: &str) -> usize {
    statuses.iter().filter(|s| *s == status).count()
}

#[tokio::test]
async fn a_key_runs_at_most_its_limit_and_the_rest_wait_their_turn() {
    let app = spawn_app().await;
    app.register(3, &["export"], 10).await;
    let admin = app.admin();
    let set = app
        .put(
            "/concurrency-limits/tenant-a",
            &admin,
            json!({ "max_running": 2 }),
        )
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(
        set.payload()["limit"],
        json!({
            "key": "tenant-a", "max_running": 2, "running": 0, "updated_by": "admin",
            "updated_at": set.payload()["limit"]["updated_at"].clone()
        })
    );
    let ids = [
        keyed(&app, "tenant-a").await,
        keyed(&app, "tenant-a").await,
        keyed(&app, "tenant-a").await,
        keyed(&app, "tenant-b").await,
    ];
    eventually(10, "two of tenant-a and the one of tenant-b assigned", || async {
        let now = statuses(&app, &ids).await;
        count(&now, "assigned") == 3
    })
    .await;
    let now = statuses(&app, &ids).await;
    let waiting = ids[..3]
        .iter()
        .zip(&now)
        .find(|(_, s)| *s == "pending")
        .map(|(id, _)| *id)
        .expect("one of tenant-a waits");
    let task = app.task(waiting).await;
    assert_eq!(task["concurrency_key"], "tenant-a");
    assert_eq!(
        task["routing"],
        json!({ "state": "concurrency_limited", "key": "tenant-a", "running": 2, "max_running": 2 })
    );
    let usage = app
        .get("/concurrency-limits/tenant-a", &app.writer("alice"))
        .await;
    assert_eq!(usage.payload()["limit"]["running"], 2, "{usage:?}");

    // One of tenant-a ends: the waiting one takes its slot.
    let running = ids[..3]
        .iter()
        .copied()
        .find(|id| *id != waiting)
        .expect("a running one");
    app.set_status(running, &app.droplet(3), "in_progress").await;
    let done = app
        .patch(
            &format!("/tasks/{running}"),
            &app.droplet(3),
            json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    app.wait_for_status(waiting, "assigned", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_raised_or_removed_limit_lets_waiting_tasks_run_at_once() {
    let app = spawn_app().await;
    app.register(3, &["export"], 10).await;
    let admin = app.admin();
    let put = |max: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.put(
                "/concurrency-limits/tenant-a",
                &admin,
                json!({ "max_running": max }),
            )
            .await
        }
    };
    assert_eq!(put(json!(0)).await.status, 200, "0 holds every task of the key");
    let ids = [keyed(&app, "tenant-a").await, keyed(&app, "tenant-a").await];
    let held = app.task(ids[0]).await;
    assert_eq!(held["routing"]["state"], "concurrency_limited", "{held}");
    assert_eq!(put(json!(1)).await.status, 200);
    eventually(10, "one assigned once raised", || async {
        count(&statuses(&app, &ids).await, "assigned") == 1
    })
    .await;
    let deleted = app.delete("/concurrency-limits/tenant-a", &admin).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    eventually(10, "both assigned once removed", || async {
        count(&statuses(&app, &ids).await, "assigned") == 2
    })
    .await;
    let listed = app.get("/concurrency-limits", &admin).await;
    assert_eq!(listed.payload()["limits"], json!([]));
}

#[tokio::test]
async fn limits_are_an_admins_and_bad_ones_are_refused() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let forbidden = app
        .put(
            "/concurrency-limits/tenant-a",
            &writer,
            json!({ "max_running": 2 }),
        )
        .await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    let admin = app.admin();
    for (path, body, field) in [
        (
            "/concurrency-limits/tenant-a",
            json!({ "max_running": -1 }),
            "max_running",
        ),
        (
            "/concurrency-limits/tenant-a",
            json!({ "max_running": 100001 }),
            "max_running",
        ),
        ("/concurrency-limits/a%20b", json!({ "max_running": 1 }), "key"),
    ] {
        let reply = app.put(path, &admin, body).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{path}: {reply:?}"
        );
        assert_eq!(reply.payload()["error"]["details"]["field"], field);
    }
    let reader = app.token("viewer", &[Permission::Read], None);
    let missing = app.get("/concurrency-limits/none", &reader).await;
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found"),
        "{missing:?}"
    );
    let bad_key = app
        .post(
            "/tasks",
            &writer,
            json!({ "task_type": "t", "concurrency_key": "no spaces" }),
        )
        .await;
    assert_eq!(bad_key.status, 422, "{bad_key:?}");
    assert_eq!(bad_key.payload()["error"]["details"]["field"], "concurrency_key");
}
