//! `/workflows`: a DAG submitted in one request runs in dependency order,
//! each dependant routed when its dependencies complete, with their results;
//! a failure cancels the dependants that say so; a workflow can be cancelled.

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_tests::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(10);

fn pipeline() -> Value {
    json!({
        "name": "nightly",
        "tasks": [
            { "key": "report", "task_type": "report", "required_capability": "etl",
              "depends_on": ["fetch", "clean"], "data": { "to": "ops" } },
            { "key": "clean", "task_type": "clean", "required_capability": "etl",
              "depends_on": ["fetch"], "on_dependency_failure": "run_anyway" },
            { "key": "fetch", "task_type": "fetch", "required_capability": "etl", "max_retries": 0 }
        ]
    })
}

/// Submits `body` as alice; the ids of its tasks by key.
async fn submit(app: &TestApp, body: Value) -> (i64, std::collections::HashMap<String, i64>) {
    let created = app.post("/workflows", &app.writer("alice"), body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let answer = created.payload();
    let ids = answer["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["key"].as_str().expect("key").to_owned(),
                t["task_id"].as_i64().expect("id"),
            )
        })
        .collect();
    (answer["workflow_id"].as_i64().expect("workflow_id"), ids)
}

/// Droplet 3 runs task `id` to `status`, with `result` when it completes.
async fn run(app: &TestApp, id: i64, status: &str, result: Value) {
    app.wait_for_status(id, "assigned", WITHIN).await;
    let started = app.set_status(id, &app.droplet(3), "in_progress").await;
    assert_eq!(started.status, 200, "{started:?}");
    let body = match status {
        "completed" => json!({ "status": status, "result": result }),
        _ => json!({ "status": status, "error_message": "the source is down" }),
    };
    let ended = app.patch(&format!("/tasks/{id}"), &app.droplet(3), body).await;
    assert_eq!(ended.status, 200, "{ended:?}");
}

async fn workflow(app: &TestApp, id: i64) -> Value {
    let reply = app.get(&format!("/workflows/{id}"), &app.writer("alice")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.payload()["workflow"].clone()
}

#[tokio::test]
async fn a_workflow_runs_in_dependency_order_each_task_given_its_parents_results() {
    // The sweep never runs during the test: only the end events route the dependants.
    let app = spawn_app_with(&[("ROUTER_INTERVAL", "3600")]).await;
    app.register(3, &["etl"], 1).await;
    let (workflow_id, ids) = submit(&app, pipeline()).await;
    let (fetch, clean, report) = (ids["fetch"], ids["clean"], ids["report"]);
    let answer_order: Vec<String> = workflow(&app, workflow_id).await["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(answer_order, ["fetch", "clean", "report"]);

    let waiting = app.task(report).await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["routing"]["state"], "waiting_for", "{waiting}");
    let mut awaited: Vec<i64> = waiting["routing"]["task_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    awaited.sort_unstable();
    assert_eq!(awaited, [fetch, clean]);
    assert_eq!(waiting["routing"]["workflow_id"], workflow_id);

    run(&app, fetch, "completed", json!({ "rows": 3 })).await;
    run(&app, clean, "completed", json!({ "kept": 2 })).await;
    app.wait_for_status(report, "assigned", WITHIN).await;
    let released = app.task(report).await;
    assert_eq!(released["payload"]["to"], "ops");
    assert_eq!(
        released["payload"]["parent_results"][fetch.to_string()],
        json!({ "rows": 3 })
    );
    assert_eq!(
        released["payload"]["parent_results"][clean.to_string()],
        json!({ "kept": 2 })
    );
    assert_eq!(workflow(&app, workflow_id).await["state"], "running");
    run(&app, report, "completed", json!({ "sent": true })).await;
    let done = workflow(&app, workflow_id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["tasks"][2]["depends_on"], json!(["fetch", "clean"]));
}

#[tokio::test]
async fn a_failure_cancels_the_dependants_that_say_so_and_the_others_run() {
    let app = spawn_app().await;
    app.register(3, &["etl"], 2).await;
    let (workflow_id, ids) = submit(&app, pipeline()).await;
    run(&app, ids["fetch"], "failed", Value::Null).await;
    let cancelled = app.wait_for_status(ids["report"], "cancelled", WITHIN).await;
    let last = cancelled["state_history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .expect("a row");
    assert_eq!(last["changed_by"], "system:workflows", "{last}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&ids["fetch"].to_string())),
        "the row names the dependency: {last}"
    );
    let clean = app.wait_for_status(ids["clean"], "assigned", WITHIN).await;
    assert_eq!(
        clean["payload"]["parent_results"][ids["fetch"].to_string()],
        Value::Null
    );
    run(&app, ids["clean"], "completed", json!({})).await;
    let ended = workflow(&app, workflow_id).await;
    assert_eq!(ended["state"], "failed", "{ended}");
}

#[tokio::test]
async fn cancelling_a_workflow_stops_what_has_not_finished() {
    let app = spawn_app().await;
    app.register(3, &["etl"], 1).await;
    let (workflow_id, ids) = submit(&app, pipeline()).await;
    app.wait_for_status(ids["fetch"], "assigned", WITHIN).await;
    app.set_status(ids["fetch"], &app.droplet(3), "in_progress").await;

    let path = format!("/workflows/{workflow_id}/cancel");
    let stranger = app.post(&path, &app.writer("mallory"), json!({})).await;
    assert_eq!(stranger.status, 403, "only its creator or an admin: {stranger:?}");
    let reply = app.post(&path, &app.writer("alice"), json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let tasks = reply.payload()["workflow"]["tasks"].clone();
    let status = |key: &str| {
        tasks
            .as_array()
            .and_then(|t| t.iter().find(|t| t["key"] == key))
            .map(|t| t["task"].clone())
            .expect("the task")
    };
    assert_eq!(status("report")["status"], "cancelled");
    assert_eq!(status("clean")["status"], "cancelled");
    assert_eq!(status("fetch")["status"], "in_progress");
    assert!(
        status("fetch")["cancel_requested_at"].is_string(),
        "a running task is asked to stop"
    );
}

#[tokio::test]
async fn a_bad_workflow_is_refused_naming_the_task() {
    let app = spawn_app().await;
    let writer = app.writer("alice");
    let refused = |body: Value| {
        let app = &app;
        let writer = writer.clone();
        async move {
            let reply = app.post("/workflows", &writer, body).await;
            assert_eq!(
                (reply.status, reply.error_code()),
                (422, "validation_failed"),
                "{reply:?}"
            );
            reply.payload()["error"]["details"]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let cycle = json!({ "tasks": [
        { "key": "a", "task_type": "t", "depends_on": ["b"] },
        { "key": "b", "task_type": "t", "depends_on": ["a"] },
    ]});
    assert_eq!(refused(cycle).await, "tasks[0].depends_on");
    let unknown = json!({ "tasks": [{ "key": "a", "task_type": "t", "depends_on": ["nope"] }] });
    assert_eq!(refused(unknown).await, "tasks[0].depends_on");
    let many: Vec<Value> = (0..=100)
        .map(|i| json!({ "key": i.to_string(), "task_type": "t" }))
        .collect();
    assert_eq!(refused(json!({ "tasks": many })).await, "tasks");
    let untyped = json!({ "tasks": [{ "key": "a" }] });
    assert_eq!(refused(untyped).await, "tasks[0]");
    let reader = app.token("viewer", &[Permission::Read], None);
    let forbidden = app.post("/workflows", &reader, pipeline()).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    let missing = app.get("/workflows/999", &reader).await;
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found"),
        "{missing:?}"
    );
    let listed = app.get("/workflows?limit=0", &reader).await;
    assert_eq!(listed.status, 400, "{listed:?}");
}
