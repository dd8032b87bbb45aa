//! `/schedules`: cron schedules that submit a task at each fire time.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use orchestrator_domain::Permission;
use orchestrator_tests::{TestApp, eventually, spawn_app};
use serde_json::{Value, json};

fn nightly() -> Value {
    json!({
        "name": "nightly-report",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "task": { "task_type": "report", "required_capability": "reports", "priority": "high" },
        "overlap": "skip"
    })
}

fn times(schedule: &Value) -> Vec<DateTime<Utc>> {
    schedule["next_runs"]
        .as_array()
        .expect("next_runs")
        .iter()
        .map(|t| t.as_str().and_then(|t| t.parse().ok()).expect("a time"))
        .collect()
}

/// The tasks a schedule made, as their history's first row names them.
async fn fired_tasks(app: &TestApp) -> Vec<Value> {
    let page = app.get("/tasks?limit=100", &app.admin()).await;
    let mut fired = Vec::new();
    for task in page.payload()["tasks"].as_array().cloned().unwrap_or_default() {
        let id = task["id"].as_i64().expect("id");
        let whole = app.task(id).await;
        let first = &whole["state_history"][0];
        if first["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("fired by schedule"))
        {
            fired.push(whole);
        }
    }
    fired
}

#[tokio::test]
async fn a_schedule_is_created_listed_changed_paused_and_deleted() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let created = app.post("/schedules", &writer, nightly()).await;
    assert_eq!(created.status, 201, "{created:?}");
    let schedule = &created.payload()["schedule"];
    assert_eq!(
        (
            &schedule["timezone"],
            &schedule["overlap"],
            &schedule["paused"],
            &schedule["created_by"]
        ),
        (
            &json!("Europe/Paris"),
            &json!("skip"),
            &json!(false),
            &json!("alice")
        )
    );
    let runs = times(schedule);
    assert_eq!(runs.len(), 5);
    assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
    assert!(
        runs.iter().all(|t| t.format("%M").to_string() == "30"),
        "{runs:?}"
    );

    let again = app.post("/schedules", &writer, nightly()).await;
    assert_eq!((again.status, again.error_code()), (409, "conflict"), "{again:?}");
    let listed = app
        .get("/schedules", &app.token("viewer", &[Permission::Read], None))
        .await;
    assert_eq!(listed.payload()["schedules"][0]["name"], "nightly-report");

    let patched = app
        .patch(
            "/schedules/nightly-report",
            &writer,
            json!({ "cron": "0 */6 * * *", "timezone": "UTC" }),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    let runs = times(&patched.payload()["schedule"]);
    assert!(
        runs.iter().all(|t| t.format("%M:%S").to_string() == "00:00"),
        "{runs:?}"
    );
    assert_eq!(
        patched.payload()["schedule"]["task"]["task_type"],
        "report",
        "the task is kept"
    );
    assert_eq!(patched.payload()["schedule"]["catch_up"], "last", "the default");
    let none = app
        .patch(
            "/schedules/nightly-report",
            &writer,
            json!({ "catch_up": "none" }),
        )
        .await;
    assert_eq!(none.payload()["schedule"]["catch_up"], "none", "{none:?}");

    let paused = app
        .post("/schedules/nightly-report/pause", &writer, json!({}))
        .await;
    assert_eq!(paused.payload()["schedule"]["paused"], true);
    assert_eq!(paused.payload()["schedule"]["next_runs"], json!([]));
    let resumed = app
        .post("/schedules/nightly-report/resume", &writer, json!({}))
        .await;
    assert_eq!(times(&resumed.payload()["schedule"]).len(), 5);

    let deleted = app.delete("/schedules/nightly-report", &writer).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let gone = app.get("/schedules/nightly-report", &writer).await;
    assert_eq!((gone.status, gone.error_code()), (404, "not_found"), "{gone:?}");
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let with = |field: &str, value: Value| {
        let mut body = nightly();
        body[field] = value;
        body
    };
    for (body, field) in [
        (with("cron", json!("every night")), "cron"),
        (with("cron", json!("0 0 30 2 * * 2030")), "cron"),
        (with("timezone", json!("Mars/Olympus")), "timezone"),
        (with("name", json!("a/b")), "name"),
        (with("task", json!({ "task_type": "" })), "task.task_type"),
        (
            with(
                "task",
                json!({ "task_type": "t", "run_at": "2030-01-01T00:00:00Z" }),
            ),
            "task.run_at",
        ),
        (
            with(
                "task",
                json!({ "task_type": "t", "deadline": "2030-01-01T00:00:00Z" }),
            ),
            "task.deadline",
        ),
    ] {
        let refused = app.post("/schedules", &writer, body.clone()).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, "validation_failed"),
            "{body}: {refused:?}"
        );
        assert_eq!(refused.payload()["error"]["details"]["field"], field, "{body}");
    }
    let reader = app.token("viewer", &[Permission::Read], None);
    let forbidden = app.post("/schedules", &reader, nightly()).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    let unknown = app
        .patch("/schedules/none", &writer, json!({ "cron": "* * * * *" }))
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let listed = app.get("/schedules", &writer).await;
    assert_eq!(listed.payload()["schedules"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_schedule_of_seconds_submits_one_task_per_fire_time() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let every_second = json!({
        "name": "heartbeat-check",
        "cron": "* * * * * *",
        "task": { "task_type": "check", "payload": { "deep": false } }
    });
    let created = app.post("/schedules", &writer, every_second).await;
    assert_eq!(created.status, 201, "{created:?}");
    eventually(10, "two fires", || async { fired_tasks(&app).await.len() >= 2 }).await;
    let stopped = app.delete("/schedules/heartbeat-check", &writer).await;
    assert_eq!(stopped.status, 200);
    let fired = fired_tasks(&app).await;
    let fire_times: BTreeSet<String> = fired
        .iter()
        .map(|t| {
            t["state_history"][0]["metadata"]["fire_at"]
                .as_str()
                .expect("fire_at")
                .to_owned()
        })
        .collect();
    assert_eq!(fire_times.len(), fired.len(), "one task per fire time");
    for task in &fired {
        assert_eq!(
            (&task["task_type"], &task["created_by"]),
            (&json!("check"), &json!("alice"))
        );
        assert_eq!(task["payload"], json!({ "deep": false }));
    }
}
