//! Delayed tasks: `run_at` or `delay_seconds` on creation keeps a task
//! `pending` (reason `scheduled`) until its time, then the router's alarm
//! routes it, without waiting for the sweep.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator_tests::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a time: {value}"))
}

async fn create(app: &TestApp, body: Value) -> orchestrator_tests::Reply {
    app.post("/tasks", &app.writer("alice"), body).await
}

#[tokio::test]
async fn a_delayed_task_waits_scheduled_then_is_routed_when_due() {
    // The sweep never runs during the test: only the alarm can route it.
    let app = spawn_app_with(&[("ROUTER_INTERVAL", "3600")]).await;
    app.register(3, &["render"], 1).await;
    let body = json!({ "task_type": "render", "required_capability": "render", "delay_seconds": 2 });
    let created = create(&app, body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let answer = created.payload();
    let id = answer["task_id"].as_i64().expect("id");
    let run_at = time(&answer["run_at"]);
    let created_at = time(&answer["created_at"]);
    // Times are kept to the microsecond, so the delay may show 1 µs short.
    let delay = (run_at - created_at).num_microseconds().expect("a delay");
    assert!((1_999_999..=2_000_000).contains(&delay), "{answer}");
    assert!(
        answer["estimated_assignment_seconds"].as_u64() >= Some(1),
        "{answer}"
    );

    let waiting = app.get(&format!("/tasks/{id}"), &app.writer("alice")).await;
    let task = &waiting.payload()["task"];
    assert_eq!(task["status"], "pending", "{task}");
    assert_eq!(time(&task["run_at"]), run_at);
    assert_eq!(task["routing"]["state"], "scheduled", "{task}");
    assert_eq!(time(&task["routing"]["at"]), run_at);

    let assigned = app.wait_for_status(id, "assigned", Duration::from_secs(10)).await;
    assert!(time(&assigned["assigned_at"]) >= run_at, "{assigned}");
}

#[tokio::test]
async fn a_task_scheduled_for_a_time_already_come_runs_at_once() {
    let app = spawn_app().await;
    app.register(3, &["render"], 1).await;
    let past = (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let created = create(&app, json!({ "task_type": "render", "run_at": past })).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.payload()["run_at"], Value::Null, "nothing to wait for");
    let id = created.payload()["task_id"].as_i64().expect("id");
    app.wait_for_status(id, "assigned", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_schedule_out_of_bounds_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let soon = (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let far = (Utc::now() + chrono::Duration::days(400)).to_rfc3339();
    let cases = [
        (
            json!({ "task_type": "t", "run_at": soon, "delay_seconds": 5 }),
            "run_at",
        ),
        (json!({ "task_type": "t", "delay_seconds": -1 }), "delay_seconds"),
        (
            json!({ "task_type": "t", "delay_seconds": 40_000_000 }),
            "delay_seconds",
        ),
        (json!({ "task_type": "t", "run_at": far }), "run_at"),
        (
            json!({ "task_type": "t", "delay_seconds": 600, "deadline": soon }),
            "run_at",
        ),
    ];
    for (body, field) in cases {
        let refused = create(&app, body.clone()).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, "validation_failed"),
            "{body}: {refused:?}"
        );
        assert_eq!(refused.payload()["error"]["details"]["field"], field, "{body}");
    }
    let listed = app.get("/tasks", &app.admin()).await;
    assert_eq!(listed.payload()["total"], 0, "nothing was created");
}

#[tokio::test]
async fn a_batch_and_the_guides_body_take_a_schedule() {
    let app = spawn_app().await;
    let at = chrono::SubsecRound::trunc_subsecs(Utc::now() + chrono::Duration::hours(1), 0).to_rfc3339();
    let tasks = json!([
        { "task_type": "now" },
        { "task_type": "later", "run_at": at },
        { "task_type": "guide", "data": { "code": "x" }, "priority": "high", "delay_seconds": 3600 },
    ]);
    let created = app
        .post("/tasks/batch", &app.writer("alice"), json!({ "tasks": tasks }))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let answers = created.payload()["tasks"].as_array().cloned().expect("tasks");
    assert_eq!(answers[0]["run_at"], Value::Null);
    assert_eq!(time(&answers[1]["run_at"]), time(&json!(at)));
    let guide = app
        .get(
            &format!("/tasks/{}", answers[2]["task_id"].as_i64().expect("id")),
            &app.admin(),
        )
        .await;
    let task = &guide.payload()["task"];
    assert_eq!(task["routing"]["state"], "scheduled", "{task}");
    assert_eq!(task["payload"], json!({ "code": "x" }));
}
