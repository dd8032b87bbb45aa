//! With PostgreSQL down, requests get 503 `store_unavailable` with
//! `Retry-After` and `/health` says `error`; when it is back the server
//! recovers by itself and nothing is lost. (PostgreSQL only.)

use std::time::{Duration, Instant};

use orchestrator_testkit::pg::Cluster;
use orchestrator_tests::spawn_replica;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_rides_out_a_database_outage() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let app = spawn_replica(&cluster.url(), &[]).await;
    app.expect_server_errors();
    app.register(8, &["x"], 10).await;
    let before = app.create_task(5, Some("x")).await;
    app.wait_for_status(before, "assigned", Duration::from_secs(2))
        .await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .expect("stop");

    let admin = app.admin();
    let list = app.get("/tasks", &admin).await;
    assert_eq!(
        (list.status, list.error_code()),
        (503, "store_unavailable"),
        "{list:?}"
    );
    assert!(
        list.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{list:?}"
    );
    let create = app
        .post(
            "/tasks",
            &app.writer("alice"),
            json!({ "task_type": "a", "title": "b" }),
        )
        .await;
    assert_eq!(create.status, 503, "{create:?}");
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (503, Some("error"))
    );
    let state = app.send(Method::GET, "/state", None, None).await;
    assert_eq!(state.status, 503);
    let ready = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (
            ready.status,
            ready.body["status"].as_str(),
            ready.body["checks"]["store"].as_str()
        ),
        (503, Some("not_ready"), Some("unavailable")),
        "{ready:?}"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.resume();
        cluster
    })
    .await
    .expect("resume");
    let back = Instant::now();
    loop {
        let health = app.send(Method::GET, "/health", None, None).await;
        if health.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "not recovered: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let ready = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (200, Some("ready")),
        "{ready:?}"
    );
    assert_eq!(app.task(before).await["status"], "assigned", "nothing lost");
    let after = app.create_task(5, Some("x")).await;
    let task = app
        .wait_for_status(after, "assigned", Duration::from_secs(2))
        .await;
    assert_eq!(
        task["assigned_droplet_id"], 8,
        "routing works again without a restart"
    );
    drop(cluster);
}
