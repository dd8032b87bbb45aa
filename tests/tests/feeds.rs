//! The live feeds over a real WebSocket client: events in order, fan-out to
//! many clients, filters, tokens, connection limits, slow and silent clients.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use orchestrator_domain::Permission;
use orchestrator_tests::{Feed, TestApp, eventually, next_event, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SOON: Duration = Duration::from_secs(5);

/// The next `n` events of the feed: `(event, task or droplet id, status)`.
async fn events(feed: &mut Feed, n: usize) -> Vec<(String, i64, String)> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let event = next_event(feed, SOON).await;
        let data = &event["data"];
        let id = data["id"].as_i64().or(data["droplet_id"].as_i64()).unwrap_or(-1);
        seen.push((
            event["event"].as_str().unwrap_or("").to_owned(),
            id,
            data["status"].as_str().unwrap_or("").to_owned(),
        ));
        assert!(event["timestamp"].is_string(), "{event}");
    }
    seen
}

async fn create(app: &TestApp, body: Value) -> i64 {
    let reply = app.post("/tasks", &app.writer("alice"), body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.payload()["task_id"].as_i64().expect("id")
}

async fn ws_status(app: &TestApp) -> Value {
    let reply = app.get("/ws/status", &app.admin()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.payload().clone()
}

#[tokio::test]
async fn each_kind_of_task_change_streams_in_commit_order() {
    let app = spawn_app().await;
    let mut feed = app.feed(&format!("/ws/tasks?token={}", app.admin())).await;
    app.register(8, &["x"], 5).await;
    let done = create(
        &app,
        json!({ "task_type": "a", "title": "t", "required_capability": "x" }),
    )
    .await;
    app.wait_for_status(done, "assigned", SOON).await;
    let droplet = app.droplet(8);
    assert_eq!(app.set_status(done, &droplet, "in_progress").await.status, 200);
    assert_eq!(app.set_status(done, &droplet, "completed").await.status, 200);
    let failed = create(
        &app,
        json!({ "task_type": "a", "title": "t", "required_capability": "x", "max_retries": 0 }),
    )
    .await;
    app.wait_for_status(failed, "assigned", SOON).await;
    assert_eq!(app.set_status(failed, &droplet, "in_progress").await.status, 200);
    assert_eq!(app.set_status(failed, &droplet, "failed").await.status, 200);
    let cancelled = create(
        &app,
        json!({ "task_type": "a", "title": "t", "required_capability": "y" }),
    )
    .await;
    assert_eq!(
        app.delete(&format!("/tasks/{cancelled}"), &app.writer("alice"))
            .await
            .status,
        200
    );

    let seen = events(&mut feed, 10).await;
    let of = |id: i64| -> Vec<&str> { seen.iter().filter(|e| e.1 == id).map(|e| e.0.as_str()).collect() };
    assert_eq!(
        of(done),
        ["task_created", "task_assigned", "task_started", "task_completed"]
    );
    assert_eq!(
        of(failed),
        ["task_created", "task_assigned", "task_started", "task_failed"]
    );
    assert_eq!(of(cancelled), ["task_created", "task_cancelled"]);
    let completed = seen.iter().find(|e| e.0 == "task_completed").expect("completed");
    assert_eq!(
        completed.2, "completed",
        "the data is the task as it is after the change"
    );
}

#[tokio::test]
async fn a_hundred_clients_all_receive_the_same_events() {
    let app = spawn_app().await;
    let mut feeds = Vec::new();
    for i in 0..100 {
        let token = app.writer(&format!("watcher-{i}"));
        feeds.push(app.feed(&format!("/ws/tasks?token={token}")).await);
    }
    assert_eq!(ws_status(&app).await["connections"]["tasks"], 100);
    let ids = [
        app.create_task(5, Some("nobody")).await,
        app.create_task(5, Some("nobody")).await,
        app.create_task(5, Some("nobody")).await,
    ];
    for feed in &mut feeds {
        let seen: Vec<i64> = events(feed, 3).await.into_iter().map(|e| e.1).collect();
        assert_eq!(seen, ids);
    }
}

#[tokio::test]
async fn the_droplet_feed_streams_registrations_and_health_changes() {
    let app = spawn_app().await;
    let mut feed = app.feed(&format!("/ws/droplets?token={}", app.admin())).await;
    app.register(8, &["x"], 5).await;
    let reply = app.post("/droplets/8/deactivate", &app.admin(), json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = events(&mut feed, 2).await;
    assert_eq!(seen[0], ("droplet_registered".into(), 8, "active".into()));
    assert_eq!(seen[1], ("droplet_health_changed".into(), 8, "inactive".into()));
}

#[tokio::test]
async fn filters_choose_what_a_client_sees() {
    let app = spawn_app().await;
    let mut only_x = app
        .feed(&format!("/ws/tasks?token={}&capability=x", app.admin()))
        .await;
    let mut only_b = app
        .feed(&format!("/ws/tasks?token={}&task_type=b", app.admin()))
        .await;
    let x = create(
        &app,
        json!({ "task_type": "a", "title": "t", "required_capability": "x" }),
    )
    .await;
    let b = create(
        &app,
        json!({ "task_type": "b", "title": "t", "required_capability": "y" }),
    )
    .await;
    assert_eq!(events(&mut only_x, 1).await[0].1, x);
    assert_eq!(events(&mut only_b, 1).await[0].1, b);
    let bad = refusal(&app, &format!("/ws/tasks?token={}&capability=", app.admin())).await;
    assert_eq!(bad, (400, "invalid_query".into()), "an invalid filter is refused");
}

/// The status and error code of a feed's refused upgrade; fails the test
/// if the feed opens or the connection fails otherwise.
async fn refusal(app: &TestApp, path: &str) -> (u16, String) {
    match app.try_feed(path).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let error = if body["payload"].is_object() {
                &body["payload"]["error"]
            } else {
                &body["error"]
            };
            let code = error["code"].as_str().unwrap_or_default().to_owned();
            (response.status().as_u16(), code)
        }
        Ok(_) => panic!("{path}: the feed opened"),
        Err(other) => panic!("{path}: expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn bad_or_missing_tokens_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let expired = format!(
        "/ws/tasks?token={}",
        app.expired_token("late", &[Permission::Read])
    );
    for path in [
        "/ws/tasks",
        "/ws/tasks?token=not-a-jwt",
        "/ws/droplets?token=x.y.z",
        expired.as_str(),
    ] {
        assert_eq!(refusal(&app, path).await, (401, "unauthorized".into()), "{path}");
    }
    let no_read = app.token("nobody", &[], None);
    assert_eq!(
        refusal(&app, &format!("/ws/tasks?token={no_read}")).await,
        (403, "forbidden".into())
    );
}

#[tokio::test]
async fn a_caller_past_its_connection_limit_is_closed_with_a_reason() {
    let app = spawn_app_with(&[("WS_MAX_PER_DROPLET", "2")]).await;
    let token = app.droplet(8);
    let _one = app.feed(&format!("/ws/tasks?token={token}")).await;
    let _two = app.feed(&format!("/ws/droplets?token={token}")).await;
    let mut three = app.feed(&format!("/ws/tasks?token={token}")).await;
    let message = tokio::time::timeout(SOON, three.next()).await.expect("in time");
    match message {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert!(frame.reason.contains("2 feed connections"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let other_caller = app.feed(&format!("/ws/tasks?token={}", app.droplet(9))).await;
    drop(other_caller);
    assert_eq!(ws_status(&app).await["connections_per_caller"]["droplet-8"], 2);
}

#[tokio::test]
async fn a_stalled_client_is_dropped_while_a_healthy_one_keeps_receiving() {
    let app = spawn_app_with(&[("WS_CLIENT_BUFFER", "16")]).await;
    let _stalled = app
        .feed(&format!("/ws/tasks?token={}", app.writer("stalled")))
        .await;
    let mut healthy = app
        .feed(&format!("/ws/tasks?token={}", app.writer("healthy")))
        .await;
    let reader = tokio::spawn(async move {
        let mut received = 0_u64;
        while let Ok(Some(Ok(message))) = tokio::time::timeout(SOON, healthy.next()).await {
            if matches!(message, Message::Text(_)) {
                received += 1;
            }
        }
        received
    });
    // Large events fill the socket buffers of the client that does not read.
    let filler = "x".repeat(12_000);
    let mut created = 0_u64;
    while ws_status(&app).await["dropped_slow_clients"] == 0 {
        assert!(created < 3_000, "the stalled client was never dropped");
        for _ in 0..20 {
            create(
                &app,
                json!({ "task_type": "a", "title": "t", "description": filler }),
            )
            .await;
            created += 1;
        }
    }
    for _ in 0..5 {
        create(&app, json!({ "task_type": "a", "title": "t" })).await;
        created += 1;
    }
    assert_eq!(
        reader.await.expect("reader"),
        created,
        "the healthy client missed nothing"
    );
    let status = ws_status(&app).await;
    assert_eq!(status["dropped_slow_clients"], 1, "{status}");
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped() {
    let app = spawn_app_with(&[("WS_HEARTBEAT_INTERVAL", "1")]).await;
    let _silent = app
        .feed(&format!("/ws/droplets?token={}", app.writer("silent")))
        .await;
    let mut alive = app
        .feed(&format!("/ws/droplets?token={}", app.writer("alive")))
        .await;
    // Reading answers pings (the client library queues the pong).
    let answering = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, alive.next()).await {}
        alive
    });
    let mut alive = answering.await.expect("reader");
    let status = ws_status(&app).await;
    assert_eq!(status["dropped_unresponsive_clients"], 1, "{status}");
    assert_eq!(status["connections_per_caller"]["alive"], 1, "{status}");
    alive.send(Message::Close(None)).await.expect("close");
}

#[tokio::test]
async fn a_task_whose_deadline_nears_is_reported_at_risk_once() {
    let app = spawn_app_with(&[
        ("HEARTBEAT_CHECK_INTERVAL", "1"),
        ("DEADLINE_RISK_FLOOR_SECONDS", "3600"),
    ])
    .await;
    let mut feed = app.feed(&format!("/ws/tasks?token={}", app.admin())).await;
    let deadline = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let at_risk = create(
        &app,
        json!({ "task_type": "a", "title": "t", "required_capability": "none", "deadline": deadline }),
    )
    .await;
    let relaxed = (chrono::Utc::now() + chrono::Duration::hours(5)).to_rfc3339();
    create(
        &app,
        json!({ "task_type": "a", "title": "t", "required_capability": "none", "deadline": relaxed }),
    )
    .await;
    let seen = events(&mut feed, 3).await;
    let risks: Vec<&(String, i64, String)> = seen.iter().filter(|e| e.0 == "task_deadline_at_risk").collect();
    assert_eq!(risks.len(), 1, "{seen:?}");
    assert_eq!((risks[0].1, risks[0].2.as_str()), (at_risk, "pending"));
    // The health monitor runs every second; the warning is not repeated.
    let again = tokio::time::timeout(Duration::from_millis(2500), feed.next()).await;
    assert!(again.is_err(), "no further event: {again:?}");
    let scrape = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scrape");
    let text = scrape.text().await.expect("text");
    let counted = text
        .lines()
        .find(|l| l.starts_with("orchestrator_deadline_at_risk_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 1.0), "counted in Prometheus: {text}");
}

#[tokio::test]
async fn one_droplet_shares_its_connection_limit_across_the_subjects_of_its_tokens() {
    let app = spawn_app_with(&[("WS_MAX_PER_DROPLET", "2")]).await;
    let as_worker = app.token("worker-a", &[Permission::Read], Some(8));
    let as_sidecar = app.token("sidecar-b", &[Permission::Read], Some(8));
    let _one = app.feed(&format!("/ws/tasks?token={as_worker}")).await;
    let _two = app.feed(&format!("/ws/tasks?token={as_sidecar}")).await;
    let mut three = app.feed(&format!("/ws/droplets?token={as_sidecar}")).await;
    let message = tokio::time::timeout(SOON, three.next()).await.expect("in time");
    match message {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert!(frame.reason.contains("droplet-8"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let person = app.token("alice", &[Permission::Read], None);
    let _alice = app.feed(&format!("/ws/tasks?token={person}")).await;
    let status = ws_status(&app).await;
    assert_eq!(
        (
            &status["connections_per_caller"]["droplet-8"],
            &status["connections_per_caller"]["alice"]
        ),
        (&json!(2), &json!(1)),
        "{status}"
    );
}

#[tokio::test]
async fn past_the_process_wide_cap_a_feed_is_answered_503() {
    let app = spawn_app_with(&[("MAX_WS_CONNECTIONS", "2")]).await;
    let path = |who: &str| format!("/ws/tasks?token={}", app.token(who, &[Permission::Read], None));
    let _first = app.feed(&path("ann")).await;
    let _second = app.feed(&path("ben")).await;
    let refused = refusal(&app, &path("cat")).await;
    assert_eq!(
        refused,
        (503, "too_many_connections".into()),
        "a third caller, over the cap"
    );
    drop(_first);
    eventually(5, "a place frees when a client leaves", || async {
        app.try_feed(&path("cat")).await.is_ok()
    })
    .await;
}
