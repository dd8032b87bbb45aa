//! Push delivery against a fake droplet that records what it receives.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use orchestrator_tests::{TestApp, eventually, serve, spawn_app_with};
use serde_json::{Value, json};

/// A droplet endpoint that refuses the first `refusals` messages with 503.
struct FakeDroplet {
    received: Mutex<Vec<Value>>,
    refusals: AtomicU32,
    /// Requests to any other path, answered 404.
    misses: AtomicU32,
}

async fn elsewhere(fake: web::Data<FakeDroplet>) -> HttpResponse {
    fake.misses.fetch_add(1, Ordering::SeqCst);
    HttpResponse::NotFound().finish()
}

async fn message(fake: web::Data<FakeDroplet>, body: web::Json<Value>) -> HttpResponse {
    fake.received.lock().expect("lock").push(body.into_inner());
    let refuse = fake
        .refusals
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refuse {
        HttpResponse::ServiceUnavailable().finish()
    } else {
        HttpResponse::Ok().json(json!({"ok": true}))
    }
}

fn fake_droplet(refusals: u32) -> (String, Arc<FakeDroplet>) {
    let fake = web::Data::new(FakeDroplet {
        received: Mutex::new(Vec::new()),
        refusals: AtomicU32::new(refusals),
        misses: AtomicU32::new(0),
    });
    let state = fake.clone();
    let url = serve(move |routes| {
        routes
            .app_data(state.clone())
            .route("/message", web::post().to(message))
            .default_service(web::to(elsewhere));
    });
    (url, fake.into_inner())
}

/// Assignment deliveries that ended with `outcome`.
async fn deliveries(app: &TestApp, outcome: &str) -> f64 {
    let labels = [("message_type", "task_assignment"), ("outcome", outcome)];
    app.counter("orchestrator_push_deliveries_total", &labels).await
}

/// Waits for the delivery of the test's one assignment to be over,
/// however it ended: no further message for it can come after.
async fn delivery_over(app: &TestApp) {
    let labels = [("message_type", "task_assignment")];
    eventually(20, "the delivery is over", || async {
        app.counter("orchestrator_push_deliveries_total", &labels).await >= 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_is_pushed_and_retried_until_accepted() {
    let app = spawn_app_with(&[("ENABLE_PUSH_DELIVERY", "true")]).await;
    let (endpoint, fake) = fake_droplet(2);
    let body = json!({ "droplet_id": 21, "name": "pushy", "endpoint": endpoint, "capabilities": ["x"] });
    assert_eq!(
        app.post("/droplets/register", &app.droplet(21), body)
            .await
            .status,
        201
    );
    let id = app.create_task(4, Some("x")).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.received.lock().expect("lock").len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not retried until accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delivery_over(&app).await;
    let received = fake.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 3, "two refusals, one acceptance, then no more");
    assert_eq!(deliveries(&app, "delivered").await, 1.0);
    let message = &received[2];
    assert_eq!(message["message_type"], "task_assignment");
    assert_eq!(
        (message["source"].as_str(), message["target"].as_str()),
        (Some("droplet-10"), Some("droplet-21"))
    );
    assert_eq!(message["udc_version"], "1.0");
    assert_eq!(message["payload"]["task"]["id"], id);
    assert_eq!(message["payload"]["task"]["status"], "assigned");
    assert_eq!(message["payload"]["task"]["assigned_droplet_id"], 21);
    assert_eq!(
        message["payload"]["task"]["attempt"], 1,
        "the assignment names its attempt"
    );
    assert_eq!(message["trace_id"], message["payload"]["task"]["trace_id"]);
}

#[tokio::test]
async fn a_droplet_without_a_message_endpoint_is_not_pestered() {
    let app = spawn_app_with(&[("ENABLE_PUSH_DELIVERY", "true")]).await;
    let (endpoint, fake) = fake_droplet(0);
    let body = json!({ "droplet_id": 22, "name": "puller", "endpoint": format!("{endpoint}/elsewhere"), "capabilities": ["x"] });
    app.post("/droplets/register", &app.droplet(22), body).await;
    let id = app.create_task(4, Some("x")).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    delivery_over(&app).await;
    assert_eq!(fake.misses.load(Ordering::SeqCst), 1, "one try: a 404 is final");
    assert_eq!(deliveries(&app, "not_taken").await, 1.0);
    assert!(fake.received.lock().expect("lock").is_empty());
    assert_eq!(
        app.task(id).await["status"],
        "assigned",
        "it can still pull its work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_is_pushed_to_the_droplet_running_the_task() {
    let app = spawn_app_with(&[("ENABLE_PUSH_DELIVERY", "true")]).await;
    let (endpoint, fake) = fake_droplet(0);
    let body = json!({ "droplet_id": 23, "name": "worker", "endpoint": endpoint, "capabilities": ["x"] });
    app.post("/droplets/register", &app.droplet(23), body).await;
    let id = app.create_task(4, Some("x")).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(1)).await;
    assert_eq!(
        app.set_status(id, &app.droplet(23), "in_progress").await.status,
        200
    );
    let asked = app
        .post(
            &format!("/tasks/{id}/cancel-request"),
            &app.writer("alice"),
            json!({}),
        )
        .await;
    assert_eq!(asked.status, 200, "{asked:?}");

    let kinds = || -> Vec<Value> {
        let received = fake.received.lock().expect("lock");
        received.iter().map(|m| m["message_type"].clone()).collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !kinds().contains(&json!("task_cancel_requested")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not pushed: {:?}",
            kinds()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = fake.received.lock().expect("lock").clone();
    let message = received
        .iter()
        .find(|m| m["message_type"] == "task_cancel_requested")
        .expect("the cancel request");
    assert_eq!(message["target"], "droplet-23");
    assert_eq!(message["payload"]["task"]["id"], id);
    assert_eq!(message["payload"]["task"]["status"], "in_progress");
    assert!(
        message["payload"]["task"]["cancel_requested_at"].is_string(),
        "{message}"
    );
}
