//! The log of a full run of the `orchestrator` binary: JSON lines, the trace
//! id on every line of a request, and never a secret, token or password.

mod support;

use orchestrator_testkit::pg::free_port;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::token;

use orchestrator_domain::Permission;
use orchestrator_testkit::pg::TestDatabase;
use serde_json::{Value, json};

const SECRET: &str = "log-test-secret-8f3a1c9e77d2b4a6-long-enough";
const PASSWORD: &str = "pw-4b7e1d0c9a";

/// The test database's URL with a password in it (trust auth ignores it).
fn url_with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

fn start(url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("JWT_SECRET_KEY", SECRET)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        // Its droplet names an endpoint on this host.
        .env("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true")
        .env("LOG_LEVEL", "DEBUG")
        .env("ENVIRONMENT", "production")
        .env("WORKERS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the orchestrator binary")
}

async fn exercise(base: &str) -> (Vec<String>, String) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = token(SECRET, "admin", Permission::Admin, None);
    let issued: Value = client
        .post(format!("{base}/token"))
        .bearer_auth(&admin)
        .json(&json!({ "droplet_id": 7, "permissions": ["read", "write"] }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let droplet = issued["payload"]["access_token"]
        .as_str()
        .expect("issued")
        .to_owned();
    let register =
        json!({ "droplet_id": 7, "name": "seven", "endpoint": "http://127.0.0.1:9", "capabilities": ["x"] });
    let reply = client
        .post(format!("{base}/droplets/register"))
        .bearer_auth(&droplet)
        .json(&register)
        .send()
        .await
        .expect("register");
    assert_eq!(reply.status(), 201);
    let created = client
        .post(format!("{base}/tasks"))
        .bearer_auth(&admin)
        .json(&json!({ "task_type": "a", "title": "t", "required_capability": "x" }))
        .send()
        .await
        .expect("create");
    let trace = created.headers()["x-trace-id"]
        .to_str()
        .expect("trace")
        .to_owned();
    let refused = client
        .get(format!("{base}/tasks"))
        .bearer_auth(format!("{admin}tampered"))
        .send()
        .await
        .expect("bad token");
    assert_eq!(refused.status(), 401);
    // A feed's token travels in the query string.
    let _ = client
        .get(format!("{base}/ws/tasks?token={droplet}"))
        .send()
        .await;
    (vec![admin, droplet], trace)
}

fn stop(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let mut log = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut log);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_json_with_trace_ids_and_no_secrets() {
    let database = TestDatabase::create().await;
    let url = url_with_password(&database.url);
    let port = free_port();
    let child = start(&url, port);
    let (tokens, trace) = exercise(&format!("http://127.0.0.1:{port}")).await;
    let log = stop(child);

    assert!(!log.is_empty(), "the server logged nothing");
    for secret in [SECRET, PASSWORD].iter().map(|s| s.to_string()).chain(tokens) {
        assert!(!log.contains(&secret), "the log holds a secret or token: {log}");
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let served: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request served")
        .collect();
    assert!(served.len() >= 6, "{log}");
    for line in &served {
        assert!(line["span"]["trace_id"].is_string(), "{line}");
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        served
            .iter()
            .any(|l| l["span"]["trace_id"] == trace.as_str() && l["status"] == 201),
        "the task's creation is logged under its trace id {trace}: {log}"
    );
}
