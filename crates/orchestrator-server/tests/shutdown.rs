//! How the `orchestrator` binary stops, on PostgreSQL: a graceful stop
//! (`POST /management/shutdown` or SIGTERM) answers the request in flight,
//! writes the heartbeats it holds and exits 0, saying whether it drained;
//! a `kill -9` loses at most a flush interval of heartbeats.

mod support;

use orchestrator_testkit::pg::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{lines_of, token};

use chrono::{DateTime, SubsecRound, Utc};
use orchestrator_domain::Permission;
use orchestrator_testkit::pg::TestDatabase;
use serde_json::{Value, json};

const SECRET: &str = "shutdown-test-secret-5d1c7a9e3b2f4e6a-long";
const DROPLET: i64 = 7;

struct Server {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
    database: TestDatabase,
}

async fn start(extra: &[(&str, &str)]) -> Server {
    let database = TestDatabase::create().await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &database.url)
        .env("JWT_SECRET_KEY", SECRET)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        // Its droplet names an endpoint on this host.
        .env("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true")
        .env("ENVIRONMENT", "test")
        .env("WORKERS", "1")
        .env("LOG_LEVEL", "DEBUG")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the orchestrator binary");
    let lines = lines_of(&mut child);
    let server = Server {
        child,
        port,
        lines,
        database,
    };
    server.wait_for_line(&["orchestrator listening"], Duration::from_secs(60));
    server
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for a log line containing each of `texts`, the server's word
    /// that it got there.
    fn wait_for_line(&self, texts: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {texts:?} within {within:?}"));
            if texts.iter().all(|text| line.contains(text)) {
                return serde_json::from_str(&line).unwrap_or(Value::Null);
            }
        }
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let reply = reqwest::Client::new()
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = reply.status().as_u16();
        (status, reply.json().await.expect("json"))
    }

    /// Registers the droplet and beats `beats` times; returns when the last
    /// heartbeat was received, as the server tells it.
    async fn register_and_beat(&self, beats: usize) -> DateTime<Utc> {
        let droplet = token(SECRET, "seven", Permission::Write, Some(DROPLET));
        let registration = json!({ "droplet_id": DROPLET, "name": "seven", "endpoint": "http://127.0.0.1:9", "capabilities": ["x"] });
        assert_eq!(
            self.post("/droplets/register", &droplet, registration).await.0,
            201
        );
        let mut last = None;
        for _ in 0..beats {
            let (status, body) = self
                .post(&format!("/droplets/{DROPLET}/heartbeat"), &droplet, json!({}))
                .await;
            assert_eq!(status, 200, "{body}");
            last = Some(received_at(&body));
        }
        last.expect("at least one heartbeat")
    }

    async fn heartbeats_held(&self) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("orchestrator_heartbeats_held "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the gauge is exported")
    }

    async fn heartbeat_rows(&self) -> i64 {
        self.database
            .count("SELECT count(*) AS n FROM heartbeats h JOIN droplets d ON d.id = h.droplet_id")
            .await
    }

    async fn written_heartbeat(&self) -> DateTime<Utc> {
        let seconds = self
            .database
            .count(&format!(
                "SELECT (extract(epoch FROM last_heartbeat) * 1000000)::int8 AS n FROM droplets WHERE droplet_id = {DROPLET}"
            ))
            .await;
        DateTime::from_timestamp_micros(seconds).expect("a time")
    }

    /// Waits for the process to end; returns how it ended and how long it took.
    fn wait_for_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "still running {within:?} after the stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When the server received a heartbeat, in whole microseconds as PostgreSQL keeps it.
fn received_at(heartbeat: &Value) -> DateTime<Utc> {
    heartbeat["payload"]["last_heartbeat"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| t.trunc_subsecs(6))
        .unwrap_or_else(|| panic!("no last_heartbeat in {heartbeat}"))
}

/// A `POST /tasks` whose body is half sent: in flight until [`finish`].
fn start_creation(port: u16) -> (TcpStream, String) {
    let body = json!({ "task_type": "a", "title": "in flight", "required_capability": "x" }).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        token(SECRET, "alice", Permission::Write, None),
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).expect("headers");
    stream.write_all(first.as_bytes()).expect("half the body");
    (stream, rest.to_owned())
}

/// Sends the rest of the body and reads the answer's status.
fn finish(mut stream: TcpStream, rest: &str) -> u16 {
    stream.write_all(rest.as_bytes()).expect("the rest of the body");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

/// The log line of the creation [`start_creation`] begins.
const IN_FLIGHT: &[&str] = &["request received", "\"/tasks\""];

/// Holds heartbeats for an hour, so that only the stop can write them.
const HOLD_HEARTBEATS: (&str, &str) = ("HEARTBEAT_FLUSH_INTERVAL_MS", "3600000");
/// Keeps every heartbeat as a row, so that the rows count them.
const EVERY_HEARTBEAT_A_ROW: (&str, &str) = ("HEARTBEAT_SAMPLE_SECONDS", "0");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_request_answers_the_request_in_flight_and_writes_held_heartbeats() {
    let mut server = start(&[HOLD_HEARTBEATS, EVERY_HEARTBEAT_A_ROW]).await;
    server.register_and_beat(3).await;
    assert!(server.heartbeats_held().await > 0.0, "some heartbeats are held");
    let rows_before = server.heartbeat_rows().await;
    let (in_flight, rest) = start_creation(server.port);
    server.wait_for_line(IN_FLIGHT, Duration::from_secs(10));

    let admin = token(SECRET, "admin", Permission::Admin, None);
    let url = server.url("/management/shutdown");
    let shutdown = tokio::spawn(async move {
        let reply = reqwest::Client::new()
            .post(url)
            .bearer_auth(admin)
            .json(&json!({}))
            .send()
            .await
            .expect("shutdown");
        reply.json::<Value>().await.expect("json")
    });
    server.wait_for_line(&["graceful stop begun"], Duration::from_secs(10));
    let created = tokio::task::spawn_blocking(move || finish(in_flight, &rest))
        .await
        .expect("join");
    assert_eq!(created, 201, "the request in flight was served");

    let answer = shutdown.await.expect("join");
    assert_eq!(
        (
            &answer["payload"]["graceful"],
            &answer["payload"]["abandoned_requests"]
        ),
        (&json!(true), &json!(0)),
        "{answer}"
    );
    let (status, took) = server.wait_for_exit(Duration::from_secs(10));
    eprintln!("exited {status} {took:?} after the answer");
    assert!(status.success(), "{status}");
    assert!(
        server.heartbeat_rows().await > rows_before,
        "the held heartbeats were written on the way out"
    );
    assert_eq!(
        server.database.count("SELECT count(*) AS n FROM tasks").await,
        1,
        "the task of the request in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_request_in_flight_and_writes_held_heartbeats() {
    let mut server = start(&[HOLD_HEARTBEATS]).await;
    let last = server.register_and_beat(3).await;
    let (in_flight, rest) = start_creation(server.port);
    server.wait_for_line(IN_FLIGHT, Duration::from_secs(10));

    let terminated = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    server.wait_for_line(&["graceful stop begun"], Duration::from_secs(10));
    let created = tokio::task::spawn_blocking(move || finish(in_flight, &rest))
        .await
        .expect("join");
    assert_eq!(created, 201, "the request in flight was served");
    let drained = server.wait_for_line(&["requests in flight drained"], Duration::from_secs(10));
    assert_eq!(drained["abandoned"], 0, "{drained}");

    let ended = server.wait_for_line(&["background services stopped"], Duration::from_secs(10));
    assert_eq!(
        (&ended["all_stopped"], &ended["still_running"]),
        (&json!(true), &json!(0)),
        "{ended}"
    );
    let (status, took) = server.wait_for_exit(Duration::from_secs(10));
    eprintln!("exited {status} {took:?} after the drain");
    assert!(status.success(), "{status}");
    assert_eq!(
        server.written_heartbeat().await,
        last,
        "the last heartbeat was written on the way out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_outlasts_its_grace_says_it_was_not_graceful() {
    let mut server = start(&[("SHUTDOWN_GRACE_SECONDS", "1")]).await;
    let (stuck, _never_sent) = start_creation(server.port);
    server.wait_for_line(IN_FLIGHT, Duration::from_secs(10));
    let (status, answer) = server
        .post(
            "/management/shutdown",
            &token(SECRET, "admin", Permission::Admin, None),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            &answer["payload"]["graceful"],
            &answer["payload"]["abandoned_requests"]
        ),
        (&json!(false), &json!(1)),
        "{answer}"
    );
    let waited = answer["payload"]["waited_ms"].as_u64().expect("waited");
    assert!(waited >= 1000, "waited the grace: {waited} ms");
    let (status, took) = server.wait_for_exit(Duration::from_secs(10));
    eprintln!("exited {status} {took:?} after the answer");
    assert!(status.success(), "{status}");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_at_most_a_flush_interval_of_heartbeats() {
    let mut server = start(&[]).await;
    let droplet = token(SECRET, "seven", Permission::Write, Some(DROPLET));
    server.register_and_beat(1).await;
    let beating = Instant::now();
    let mut last = None;
    while beating.elapsed() < Duration::from_millis(2500) {
        let (status, body) = server
            .post(&format!("/droplets/{DROPLET}/heartbeat"), &droplet, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        last = Some(received_at(&body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().expect("kill -9");
    let (status, _) = server.wait_for_exit(Duration::from_secs(10));
    assert!(!status.success(), "killed: {status}");

    let acknowledged = last.expect("heartbeats");
    let lost = (acknowledged - server.written_heartbeat().await)
        .to_std()
        .unwrap_or_default();
    eprintln!("heartbeats of the last {lost:?} were lost");
    // The flush interval (1 s), plus the time a flush takes on a busy machine.
    assert!(lost <= Duration::from_millis(1500), "lost {lost:?} of heartbeats");
}
