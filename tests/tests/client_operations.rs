//! Every operation of the typed client beyond a task's life (see
//! `client.rs`) against the real server: the public endpoints, droplet
//! administration, management, metrics, messaging and the feeds' status,
//! each reply checked by value, and the typed errors of refusals.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_client::{
    BroadcastMessage, Client, ClientError, DeliveryOutcome, DependencyStatus, DirectMessage, Envelope,
    Environment, FeedFilter, FeedKind, Message, MessageReply, PerformanceQuery, RangeQuery, Registered,
    StatusUpdate, StoreKind, StoreStatus, TimeRange, TypeBreakdown,
};
use orchestrator_domain::{
    Capability, DropletId, DropletStatus, Permission, RegistrationDraft, TaskDraft, TaskId, TaskStatus,
};
use orchestrator_tests::{TestApp, on_postgres, spawn_app_with, wait_until_refused};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SOON: Duration = Duration::from_secs(5);

fn client(app: &TestApp, token: String) -> Client {
    Client::new(&app.address).expect("url").with_token(token)
}

/// Registers droplet `id` with its own token.
async fn register(app: &TestApp, id: DropletId, endpoint: &str, capabilities: &[&str]) -> Registered {
    client(app, app.droplet(id))
        .register(&RegistrationDraft {
            droplet_id: id,
            name: format!("droplet {id}"),
            endpoint: endpoint.to_owned(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            ..RegistrationDraft::default()
        })
        .await
        .unwrap_or_else(|e| panic!("register {id}: {e}"))
}

fn draft(capability: &str) -> TaskDraft {
    TaskDraft {
        task_type: "verify".into(),
        title: Some("t".into()),
        required_capability: Some(capability.into()),
        max_retries: Some(0),
        ..TaskDraft::default()
    }
}

/// Polls until the task is `assigned`; returns its attempt.
async fn wait_assigned(client: &Client, id: TaskId) -> u32 {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let record = client.get_task(id).await.expect("get task");
        if record.task.status == TaskStatus::Assigned {
            return record.task.attempt;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} not assigned: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_api_error<T: std::fmt::Debug>(result: Result<T, ClientError>, status: u16, code: &str) {
    let error = result.expect_err("an API error");
    assert_eq!(
        (error.status(), error.code()),
        (Some(status), Some(code)),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_public_endpoints_describe_the_orchestrator_without_a_token() {
    let app = spawn_app_with(&[]).await;
    register(&app, 3, "http://127.0.0.1:9", &["x"]).await;
    client(&app, app.writer("alice"))
        .create_task(&draft("nobody"))
        .await
        .expect("create");
    let anonymous = Client::new(&app.address).expect("url");

    let capabilities = anonymous.capabilities().await.expect("capabilities");
    assert_eq!(capabilities.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(capabilities.udc_version, "1.0");
    assert_eq!(capabilities.dependencies, ["registry"]);
    for feature in ["task_routing", "real_time_updates", "automatic_retry"] {
        assert!(
            capabilities.features.iter().any(|f| f == feature),
            "{feature}: {capabilities:?}"
        );
    }

    let state = anonymous.state().await.expect("state");
    assert!(state.memory_mb.is_some_and(|mb| mb > 1.0), "{state:?}");
    assert!(state.cpu_percent.is_some_and(|p| p >= 0.0), "{state:?}");
    let counts = &state.custom_metrics;
    assert_eq!(
        (
            counts.tasks_pending,
            counts.tasks_active,
            counts.tasks_completed,
            counts.tasks_failed
        ),
        (1, 0, 0, 0),
        "{state:?}"
    );
    assert_eq!((counts.droplets_active, counts.droplets_total), (1, 1));
    assert!(counts.num_threads.is_some_and(|n| n >= 1), "{state:?}");

    let dependencies = anonymous.dependencies().await.expect("dependencies");
    let registry = &dependencies.required[..];
    assert_eq!(registry.len(), 1, "{dependencies:?}");
    assert_eq!(
        (
            registry[0].id,
            registry[0].name.as_str(),
            registry[0].status,
            registry[0].last_check
        ),
        (3, "Registry v2", DependencyStatus::NotConfigured, None)
    );
    let optional: Vec<(i64, &str, DependencyStatus)> = dependencies
        .optional
        .iter()
        .map(|d| (d.id, d.name.as_str(), d.status))
        .collect();
    assert_eq!(
        optional,
        [
            (5, "Dashboard", DependencyStatus::NotRegistered),
            (8, "Verifier", DependencyStatus::NotRegistered)
        ]
    );
    assert!(dependencies.missing.is_empty());
}

#[tokio::test]
async fn admins_deactivate_and_activate_droplets_and_anyone_reads_their_capabilities() {
    let app = spawn_app_with(&[]).await;
    let registered = register(&app, 21, "http://127.0.0.1:9", &["echo", "scan"]).await;
    let admin = client(&app, app.admin());
    let reader = client(&app, app.token("reader", &[Permission::Read], None));

    let capabilities = reader.droplet_capabilities(21).await.expect("capabilities");
    assert_eq!(capabilities.droplet_id, 21);
    assert_eq!(capabilities.capabilities, registered.capabilities);
    let mut names: Vec<&str> = capabilities.capabilities.iter().map(Capability::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["echo", "scan"]);
    assert_api_error(reader.droplet_capabilities(99).await, 404, "not_found");

    let off = admin.deactivate_droplet(21).await.expect("deactivate");
    assert_eq!(
        (off.droplet_id, off.status, off.previous_status),
        (21, DropletStatus::Inactive, Some(DropletStatus::Active))
    );
    assert_eq!(
        reader.get_droplet(21).await.expect("droplet").status,
        DropletStatus::Inactive
    );
    assert_eq!(off.tasks_taken_back, None, "a plain deactivate drains");
    let taken = admin
        .deactivate_droplet_and_requeue(21)
        .await
        .expect("deactivate with requeue");
    assert_eq!(taken.tasks_taken_back, Some(0), "it held nothing");
    let on = admin.activate_droplet(21).await.expect("activate");
    assert_eq!(
        (on.droplet_id, on.status, on.previous_status),
        (21, DropletStatus::Active, Some(DropletStatus::Inactive))
    );
    assert!(on.updated_at >= off.updated_at, "{off:?} then {on:?}");
    assert_eq!(
        reader.get_droplet(21).await.expect("droplet").updated_at,
        on.updated_at
    );

    let droplet = client(&app, app.droplet(21));
    assert_api_error(droplet.deactivate_droplet(21).await, 403, "forbidden");
    assert_api_error(admin.activate_droplet(99).await, 404, "not_found");
}

#[tokio::test]
async fn admins_read_the_version_and_pause_and_resume_jobs() {
    let app = spawn_app_with(&[]).await;
    let admin = client(&app, app.admin());

    let services = admin.services().await.expect("services");
    assert!(
        services.services.iter().any(|s| s == "job: task_router")
            && services.running == services.services.len(),
        "{services:?}"
    );

    let version = admin.version().await.expect("version");
    let store = if on_postgres() {
        StoreKind::Postgres
    } else {
        StoreKind::Memory
    };
    assert_eq!(
        (
            version.name.as_str(),
            version.version.as_str(),
            version.udc_version.as_str()
        ),
        ("orchestrator", env!("CARGO_PKG_VERSION"), "1.0")
    );
    assert_eq!((version.store, version.environment), (store, Environment::Test));

    let jobs = admin.jobs().await.expect("jobs");
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let declared: Vec<&str> = orchestrator_app::jobs::ALL
        .iter()
        .map(|job| job.spec.id)
        .collect();
    assert_eq!(ids, declared, "every job of jobs::ALL, in its order");
    let registry_sync = jobs
        .iter()
        .find(|j| j.id == "registry_sync")
        .expect("registry_sync");
    assert!(
        registry_sync
            .idle_reason
            .as_deref()
            .is_some_and(|r| r.contains("REGISTRY_URL")),
        "{jobs:?}"
    );
    assert_eq!(jobs[1].interval_seconds, 3600, "ROUTER_INTERVAL of the suite");
    assert!(jobs.iter().all(|j| !j.paused), "{jobs:?}");

    let paused = admin.pause_job("task_router").await.expect("pause");
    assert_eq!((paused.id.as_str(), paused.paused), ("task_router", true));
    let now = admin.jobs().await.expect("jobs");
    let paused_ids: Vec<&str> = now.iter().filter(|j| j.paused).map(|j| j.id.as_str()).collect();
    assert_eq!(paused_ids, ["task_router"]);
    let resumed = admin.resume_job("task_router").await.expect("resume");
    assert_eq!((resumed.id.as_str(), resumed.paused), ("task_router", false));

    assert_api_error(admin.pause_job("nope").await, 404, "not_found");
    assert_api_error(admin.resume_job("no such job").await, 404, "not_found");

    let cleared = admin.clear_cache().await.expect("clear");
    assert_eq!(
        cleared.cleared,
        ["service_directory"],
        "no Registry, no key: {cleared:?}"
    );
    assert_eq!(cleared.message, "services are found in the store again");

    let writer = client(&app, app.writer("alice"));
    assert_api_error(writer.version().await, 403, "forbidden");
    assert_api_error(writer.jobs().await, 403, "forbidden");
    assert_api_error(writer.pause_job("task_router").await, 403, "forbidden");
    assert_api_error(writer.clear_cache().await, 403, "forbidden");
    assert_api_error(writer.reload_config().await, 403, "forbidden");
    assert_api_error(writer.emergency_stop().await, 403, "forbidden");
    assert_api_error(writer.shutdown().await, 403, "forbidden");
    let anonymous = Client::new(&app.address).expect("url");
    assert_api_error(anonymous.jobs().await, 401, "unauthorized");

    // The server reads this test process's environment, not the one the app
    // was built from: either it is valid and the router takes its interval,
    // or it is not and nothing changes.
    match admin.reload_config().await {
        Ok(reloaded) => {
            let interval = admin.jobs().await.expect("jobs")[1].interval_seconds;
            assert_eq!(
                reloaded.changed.iter().any(|c| c == "ROUTER_INTERVAL"),
                interval != 3600,
                "{reloaded:?}"
            );
        }
        Err(error) => {
            assert_eq!(
                (error.status(), error.code()),
                (Some(422), Some("validation_failed"))
            );
            let ClientError::Api { details, .. } = &error else {
                unreachable!("an API error")
            };
            assert_eq!(details["field"], "environment", "{error:?}");
            assert_eq!(admin.jobs().await.expect("jobs")[1].interval_seconds, 3600);
        }
    }
}

#[tokio::test]
async fn an_emergency_stop_pauses_every_job_until_each_is_resumed() {
    let app = spawn_app_with(&[]).await;
    let admin = client(&app, app.admin());
    let stop = admin.emergency_stop().await.expect("stop");
    assert!(stop.stopped);
    assert_eq!(stop.jobs.len(), 7, "{stop:?}");
    assert!(stop.jobs.iter().all(|j| j.paused), "{stop:?}");
    assert!(stop.resume.contains("task_router"), "{}", stop.resume);
    assert!(admin.jobs().await.expect("jobs").iter().all(|j| j.paused));

    register(&app, 1, "http://127.0.0.1:9", &["x"]).await;
    let created = admin.create_task(&draft("x")).await.expect("create");
    app.after_a_routing_pass(admin.create_task(&draft("x")))
        .await
        .expect("create");
    assert_eq!(
        admin.get_task(created.task_id).await.expect("task").task.status,
        TaskStatus::Pending,
        "no routing during the stop"
    );
    let router = admin.resume_job("task_router").await.expect("resume");
    assert!(!router.paused);
    wait_assigned(&admin, created.task_id).await;
}

#[tokio::test]
async fn shutdown_stops_the_server_after_answering() {
    let app = spawn_app_with(&[]).await;
    let admin = client(&app, app.admin());
    let stopping = admin.shutdown().await.expect("shutdown");
    assert!(
        stopping.shutting_down && stopping.graceful && stopping.abandoned_requests == 0,
        "{stopping:?}"
    );
    wait_until_refused(&app.address, Duration::from_secs(10)).await;
}

/// Droplet 8 completes two tasks and fails one; one task needs a
/// capability no droplet offers.
async fn known_tasks(app: &TestApp) {
    register(app, 8, "http://127.0.0.1:9", &["x"]).await;
    let alice = client(app, app.writer("alice"));
    let droplet = client(app, app.droplet(8));
    for outcome in ["completed", "completed", "failed"] {
        let id = alice.create_task(&draft("x")).await.expect("create").task_id;
        let attempt = wait_assigned(&alice, id).await;
        droplet
            .update_status(id, &StatusUpdate::started(attempt))
            .await
            .expect("start");
        let update = if outcome == "completed" {
            StatusUpdate::completed(attempt, json!({ "ok": true }))
        } else {
            StatusUpdate::failed(attempt, "no luck")
        };
        droplet.update_status(id, &update).await.expect("finish");
    }
    alice.create_task(&draft("y")).await.expect("create");
}

#[tokio::test]
async fn the_metrics_come_back_typed() {
    let app = spawn_app_with(&[]).await;
    known_tasks(&app).await;
    let analyst = client(&app, app.writer("analyst"));

    let summary = analyst
        .metrics_summary(&RangeQuery::default())
        .await
        .expect("summary");
    assert_eq!(summary.time_range, TimeRange::Day, "the default range");
    assert_eq!((summary.throughput.created, summary.throughput.finished), (4, 3));
    assert_eq!(
        summary.tasks_by_status,
        BTreeMap::from([
            (TaskStatus::Pending, 1),
            (TaskStatus::Completed, 2),
            (TaskStatus::Failed, 1)
        ])
    );
    assert_eq!(
        summary.droplets_by_status,
        BTreeMap::from([(DropletStatus::Active, 1)])
    );
    assert_eq!((summary.tasks_total, summary.droplets_total), (4, 1));
    assert!(
        (summary.finished_per_hour - 3.0 / 24.0).abs() < 1e-9,
        "{summary:?}"
    );

    let performance = analyst
        .task_performance(&PerformanceQuery::over(TimeRange::Hour))
        .await
        .expect("performance");
    let figures = &performance.figures;
    assert_eq!(performance.task_type, None);
    assert_eq!(figures.time_range, TimeRange::Hour);
    assert_eq!((figures.finished, figures.completed, figures.failed), (3, 2, 1));
    assert!(
        figures.success_rate.is_some_and(|r| (r - 2.0 / 3.0).abs() < 1e-9),
        "{performance:?}"
    );
    assert!(
        figures
            .queue_wait_seconds
            .p99
            .is_some_and(|s| (0.0..5.0).contains(&s)),
        "{performance:?}"
    );
    assert!(
        figures.run_seconds.p50.is_some_and(|s| s >= 0.0),
        "{performance:?}"
    );
    let scans = analyst
        .task_performance(&PerformanceQuery {
            task_type: Some("scan".into()),
            ..PerformanceQuery::default()
        })
        .await
        .expect("performance of scans");
    assert_eq!(
        (
            scans.task_type.as_deref(),
            scans.figures.finished,
            scans.figures.success_rate
        ),
        (Some("scan"), 0, None)
    );
    assert_eq!(scans.figures.run_seconds.p50, None);

    let week = RangeQuery::over(TimeRange::Week);
    let types = analyst.tasks_by_type(&week).await.expect("by type");
    assert_eq!(types.time_range, TimeRange::Week);
    assert_eq!(
        types.types,
        [TypeBreakdown {
            task_type: "verify".into(),
            total: 4,
            by_status: BTreeMap::from([
                (TaskStatus::Pending, 1),
                (TaskStatus::Completed, 2),
                (TaskStatus::Failed, 1)
            ]),
        }]
    );

    let month = RangeQuery::over(TimeRange::Month);
    let on_8 = analyst
        .droplet_performance(8, &month)
        .await
        .expect("droplet performance");
    assert_eq!(
        (
            on_8.droplet_id,
            on_8.figures.time_range,
            on_8.figures.finished,
            on_8.figures.completed
        ),
        (8, TimeRange::Month, 3, 2)
    );
    assert_api_error(analyst.droplet_performance(99, &month).await, 404, "not_found");

    let routing = analyst
        .routing_stats(&RangeQuery::default())
        .await
        .expect("routing");
    assert_eq!(routing.time_range, TimeRange::Day);
    assert_eq!(routing.assignments_per_droplet, BTreeMap::from([(8, 3)]));
    assert_eq!(routing.assignments_total, 3);
    assert_eq!(
        routing.pending_without_capable_droplet,
        BTreeMap::from([("y".to_owned(), 1)])
    );
    assert!(
        routing.time_to_assign_seconds.p95.is_some_and(|s| s >= 0.0),
        "{routing:?}"
    );
    assert!(
        routing
            .rescues
            .iter()
            .all(|r| r.reassignments == 0 && r.stale_reports_refused == 0),
        "nothing was rescued: {routing:?}"
    );

    let health = analyst.system_health().await.expect("system health");
    assert_eq!(health.store.status, StoreStatus::Up);
    assert!(health.store.latency_ms.is_some_and(|ms| ms >= 0.0), "{health:?}");
    assert_eq!(health.jobs.len(), 7, "{health:?}");
    let droplets = health.droplets.as_ref().expect("the store is up");
    assert_eq!(
        (droplets.total, droplets.late_heartbeats),
        (droplets.by_status.values().sum(), 0)
    );
    assert_eq!(health.websockets.total_connections, 0);
    assert!(health.memory_mb.is_some_and(|mb| mb > 1.0), "{health:?}");

    let nobody = client(&app, app.token("nobody", &[], None));
    assert_api_error(
        nobody.metrics_summary(&RangeQuery::default()).await,
        403,
        "forbidden",
    );
    assert_api_error(nobody.system_health().await, 403, "forbidden");
}

/// The value of the first sample of `name` whose line contains every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn prometheus_text_comes_back_as_it_is() {
    let app = spawn_app_with(&[]).await;
    known_tasks(&app).await;
    let scraper = Client::new(&app.address).expect("url");
    let text = scraper.prometheus_metrics().await.expect("scrape");
    assert!(
        text.contains("# TYPE orchestrator_task_transitions_total"),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "orchestrator_task_transitions_total",
            &[r#"event="task_completed""#]
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orchestrator_queue_depth", &[r#"priority="5""#]),
        Some(1.0),
        "the task needing y waits: {text}"
    );
}

#[tokio::test]
async fn prometheus_text_turned_off_is_a_typed_not_found() {
    let app = spawn_app_with(&[("ENABLE_METRICS", "false")]).await;
    let scraper = Client::new(&app.address).expect("url");
    assert_api_error(scraper.prometheus_metrics().await, 404, "not_found");
}

#[tokio::test]
async fn commands_and_queries_in_an_envelope_are_answered_typed() {
    let app = spawn_app_with(&[]).await;
    register(&app, 8, "http://127.0.0.1:9", &["x"]).await;
    let writer = client(&app, app.writer("droplet-5-user"));
    let target = format!("droplet-{}", writer.health().await.expect("health").id);
    assert_eq!(target, "droplet-10");
    let ask = |message: Message| Envelope::new("droplet-5", target.clone(), &message);

    let reply = writer
        .message(&ask(Message::create_task(draft("none"))))
        .await
        .expect("create");
    let MessageReply::Created(created) = reply else {
        panic!("not a creation: {reply:?}")
    };
    assert_eq!(created.status, TaskStatus::Pending);

    let reply = writer
        .message(&ask(Message::TaskStatus(created.task_id)))
        .await
        .expect("task status");
    let MessageReply::Task(reply) = reply else {
        panic!("not a task: {reply:?}")
    };
    let record = reply.task;
    assert_eq!(
        (record.task.id, record.task.trace_id, record.task.status),
        (created.task_id, created.trace_id, TaskStatus::Pending)
    );
    let moves: Vec<TaskStatus> = record.history().iter().map(|h| h.to_status).collect();
    assert_eq!(moves, [TaskStatus::Pending]);

    let reply = writer
        .message(&ask(Message::DropletList))
        .await
        .expect("droplets");
    let MessageReply::Droplets(listing) = reply else {
        panic!("not a listing: {reply:?}")
    };
    assert_eq!(listing.total, 1);
    assert_eq!(
        (listing.droplets[0].droplet_id, listing.droplets[0].status),
        (8, DropletStatus::Active)
    );

    let reply = writer.message(&ask(Message::SystemStatus)).await.expect("system");
    let MessageReply::System(system) = reply else {
        panic!("not a system status: {reply:?}")
    };
    assert_eq!(system.status, "active");
    assert_eq!(
        (
            system.tasks.pending,
            system.tasks.active,
            system.tasks.completed,
            system.tasks.failed
        ),
        (1, 0, 0, 0)
    );
    assert_eq!((system.droplets.active, system.droplets.total), (1, 1));
    assert_eq!(system.feeds.total_connections, 0);

    let reply = writer
        .message(&ask(Message::CancelTask(created.task_id)))
        .await
        .expect("cancel");
    let MessageReply::Cancelled(cancelled) = reply else {
        panic!("not a cancellation: {reply:?}")
    };
    assert_eq!(
        (cancelled.task_id, cancelled.status),
        (created.task_id, TaskStatus::Cancelled)
    );
    assert!(cancelled.cancelled_at.is_some(), "{cancelled:?}");

    assert_api_error(
        writer.message(&ask(Message::TaskStatus(999_999))).await,
        404,
        "not_found",
    );
    let elsewhere = Envelope::new("droplet-5", "droplet-3", &Message::DropletList);
    assert_api_error(writer.message(&elsewhere).await, 422, "validation_failed");
    let reader = client(&app, app.token("reader", &[Permission::Read], None));
    assert_api_error(
        reader.message(&ask(Message::create_task(draft("none")))).await,
        403,
        "forbidden",
    );
}

/// A droplet endpoint answering every `/message` with `status` and `{"pong": status}`.
async fn fake_droplet(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/message"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({ "pong": status })))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn send_and_broadcast_report_each_droplets_answer() {
    let app = spawn_app_with(&[("SEND_TIMEOUT_SECONDS", "2")]).await;
    let answering = fake_droplet(200).await;
    let refusing = fake_droplet(503).await;
    register(&app, 31, &answering.uri(), &["x"]).await;
    register(&app, 32, &refusing.uri(), &["x"]).await;
    register(&app, 33, "http://127.0.0.1:9", &["y"]).await;

    let writer = client(&app, app.writer("droplet-5"));
    let sent = writer
        .send_to_droplet(&DirectMessage {
            target_droplet_id: 31,
            message_type: "status_update".into(),
            payload: Some(json!({ "hello": 1 })),
        })
        .await
        .expect("send");
    assert_eq!(
        (sent.target_droplet_id, sent.status, sent.response),
        (31, 200, json!({ "pong": 200 }))
    );
    let received = answering.received_requests().await.expect("recorded");
    assert_eq!(received.len(), 1);
    let envelope: serde_json::Value = received[0].body_json().expect("an envelope");
    assert_eq!(
        (
            &envelope["message_type"],
            &envelope["target"],
            &envelope["payload"]
        ),
        (
            &json!("status_update"),
            &json!("droplet-31"),
            &json!({ "hello": 1 })
        )
    );
    let refused = writer
        .send_to_droplet(&DirectMessage {
            target_droplet_id: 32,
            message_type: "ping".into(),
            payload: None,
        })
        .await
        .expect("a refusal is still an answer");
    assert_eq!((refused.status, refused.response), (503, json!({ "pong": 503 })));
    let to = |id: DropletId| DirectMessage {
        target_droplet_id: id,
        message_type: "ping".into(),
        payload: None,
    };
    assert_api_error(writer.send_to_droplet(&to(99)).await, 404, "not_found");
    assert_api_error(writer.send_to_droplet(&to(33)).await, 502, "droplet_unreachable");

    let admin = client(&app, app.admin());
    let announcement = BroadcastMessage {
        message_type: "announcement".into(),
        payload: Some(json!({ "text": "hi" })),
        capability_filter: None,
    };
    let broadcast = admin.broadcast(&announcement).await.expect("broadcast");
    assert_eq!((broadcast.targets, broadcast.delivered), (3, 1), "{broadcast:?}");
    let outcomes: Vec<(DropletId, DeliveryOutcome, Option<u16>)> = broadcast
        .results
        .iter()
        .map(|r| (r.droplet_id, r.outcome, r.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            (31, DeliveryOutcome::Delivered, Some(200)),
            (32, DeliveryOutcome::Refused, Some(503)),
            (33, DeliveryOutcome::Unreachable, None)
        ]
    );
    assert!(broadcast.results[2].error.is_some(), "{broadcast:?}");
    assert_eq!(answering.received_requests().await.expect("recorded").len(), 2);

    let only_y = admin
        .broadcast(&BroadcastMessage {
            capability_filter: Some("y".into()),
            ..announcement.clone()
        })
        .await
        .expect("broadcast to y");
    assert_eq!((only_y.targets, only_y.delivered), (1, 0));
    assert_eq!(only_y.results[0].droplet_id, 33);
    assert_api_error(writer.broadcast(&announcement).await, 403, "forbidden");
}

#[tokio::test]
async fn the_feed_status_counts_open_connections() {
    let app = spawn_app_with(&[]).await;
    let watcher = client(&app, app.token("watcher", &[Permission::Read], None));
    let idle = watcher.feed_status().await.expect("status");
    assert_eq!(
        idle.connections,
        BTreeMap::from([(FeedKind::Tasks, 0), (FeedKind::Droplets, 0)])
    );
    assert_eq!(idle.total_connections, 0);
    assert!(idle.connections_per_caller.is_empty(), "{idle:?}");

    let mut feed = watcher
        .subscribe(FeedKind::Tasks, &FeedFilter::default())
        .await
        .expect("subscribe");
    let deadline = tokio::time::Instant::now() + SOON;
    let open = loop {
        let status = watcher.feed_status().await.expect("status");
        if status.total_connections == 1 {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        open.connections,
        BTreeMap::from([(FeedKind::Tasks, 1), (FeedKind::Droplets, 0)])
    );
    assert_eq!(
        open.connections_per_caller,
        BTreeMap::from([("watcher".to_owned(), 1)])
    );

    client(&app, app.writer("alice"))
        .create_task(&draft("nobody"))
        .await
        .expect("create");
    let event = tokio::time::timeout(SOON, feed.next())
        .await
        .expect("an event in time")
        .expect("the feed is open")
        .expect("an event");
    assert_eq!(event.event, "task_created");
    let sent = watcher.feed_status().await.expect("status");
    assert!(sent.messages_sent >= 1, "{sent:?}");
    assert_eq!(
        (sent.dropped_slow_clients, sent.dropped_unresponsive_clients),
        (0, 0)
    );

    let nobody = client(&app, app.token("nobody", &[], None));
    assert_api_error(nobody.feed_status().await, 403, "forbidden");
}

/// Schedules through the client: made, listed, changed, paused, resumed
/// and deleted, each answer with the schedule as the server keeps it.
#[tokio::test]
async fn the_client_manages_schedules() {
    use orchestrator_client::schedules::{Overlap, ScheduleDraft, SchedulePatchBody};
    let app = spawn_app_with(&[]).await;
    let writer = client(&app, app.writer("alice"));
    let draft = ScheduleDraft {
        name: "hourly-sync".into(),
        cron: "0 * * * *".into(),
        timezone: Some("America/New_York".into()),
        task: TaskDraft {
            task_type: "sync".into(),
            ..TaskDraft::default()
        },
        overlap: Some(Overlap::Skip),
        catch_up: None,
    };
    let made = writer.create_schedule(&draft).await.expect("created");
    assert_eq!(
        (made.timezone.as_str(), made.overlap, made.next_runs.len()),
        ("America/New_York", Overlap::Skip, 5)
    );
    let taken = writer.create_schedule(&draft).await.expect_err("a name taken");
    assert_eq!((taken.status(), taken.code()), (Some(409), Some("conflict")));
    assert_eq!(writer.schedules().await.expect("list")[0].name, "hourly-sync");
    let patch = SchedulePatchBody {
        cron: Some("*/15 * * * *".into()),
        ..SchedulePatchBody::default()
    };
    let changed = writer
        .update_schedule("hourly-sync", &patch)
        .await
        .expect("changed");
    assert_eq!(changed.cron, "*/15 * * * *");
    let read = writer.schedule("hourly-sync").await.expect("get");
    assert_eq!((read.cron, read.updated_at), (changed.cron, changed.updated_at));
    let paused = writer.pause_schedule("hourly-sync").await.expect("paused");
    assert!(paused.paused && paused.next_runs.is_empty());
    let resumed = writer.resume_schedule("hourly-sync").await.expect("resumed");
    assert!(!resumed.paused);
    assert!(
        writer
            .delete_schedule("hourly-sync")
            .await
            .expect("deleted")
            .deleted
    );
    let gone = writer.schedule("hourly-sync").await.expect_err("gone");
    assert_eq!(gone.code(), Some("not_found"));
}

/// Workflows through the client: submitted, read, listed and cancelled,
/// a bad one refused naming the task.
#[tokio::test]
async fn the_client_manages_workflows() {
    use orchestrator_client::workflows::{WorkflowState, WorkflowSubmission};
    let app = spawn_app_with(&[]).await;
    let writer = client(&app, app.writer("alice"));
    let submission = WorkflowSubmission {
        name: Some("etl".into()),
        tasks: vec![
            serde_json::json!({ "key": "load", "task_type": "load", "depends_on": ["extract"] }),
            serde_json::json!({ "key": "extract", "task_type": "extract" }),
        ],
    };
    let made = writer.create_workflow(&submission).await.expect("created");
    let keys: Vec<&str> = made.tasks.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["extract", "load"]);
    let read = writer.workflow(made.workflow_id).await.expect("read");
    assert_eq!(
        (read.state, read.name.as_deref()),
        (WorkflowState::Running, Some("etl"))
    );
    assert_eq!(read.tasks[1].depends_on, ["extract"]);
    assert!(read.tasks[1].waiting);
    let listed = writer.workflows(10).await.expect("list");
    assert_eq!(
        listed.iter().map(|w| w.id).collect::<Vec<_>>(),
        [made.workflow_id]
    );
    let cancelled = writer.cancel_workflow(made.workflow_id).await.expect("cancelled");
    assert_eq!(cancelled.state, WorkflowState::Cancelled);

    let cycle = WorkflowSubmission {
        name: None,
        tasks: vec![serde_json::json!({ "key": "a", "task_type": "t", "depends_on": ["a"] })],
    };
    let refused = writer.create_workflow(&cycle).await.expect_err("refused");
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(422), Some("validation_failed"))
    );
}

/// Concurrency limits through the client: set, read, listed and removed.
#[tokio::test]
async fn the_client_manages_concurrency_limits() {
    let app = spawn_app_with(&[]).await;
    let admin = client(&app, app.admin());
    let set = admin.set_concurrency_limit("tenant-a", 4).await.expect("set");
    assert_eq!(
        (set.key.as_str(), set.max_running, set.running),
        ("tenant-a", 4, 0)
    );
    assert_eq!(admin.concurrency_limit("tenant-a").await.expect("get"), set);
    assert_eq!(admin.concurrency_limits().await.expect("list"), [set]);
    assert!(
        admin
            .delete_concurrency_limit("tenant-a")
            .await
            .expect("deleted")
            .deleted
    );
    let gone = admin.concurrency_limit("tenant-a").await.expect_err("gone");
    assert_eq!(gone.code(), Some("not_found"));
    let writer = client(&app, app.writer("alice"));
    let refused = writer
        .set_concurrency_limit("tenant-a", 1)
        .await
        .expect_err("admin only");
    assert_eq!(refused.status(), Some(403));
}
