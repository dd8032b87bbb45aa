//! The operator's commands (`orchestrator tasks|droplets|watch`) run as a
//! user would, against the real server binary: tables, `--json`, exit codes.

mod support;

use orchestrator_testkit::pg::free_port;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{lines_of, token};

use orchestrator_client::{Client, StatusUpdate};
use orchestrator_domain::{Permission, RegistrationDraft, TaskStatus};
use serde_json::Value;

const SECRET: &str = "cli-test-secret-5d1f7a3b9c2e8046-long-enough";
const BINARY: &str = env!("CARGO_BIN_EXE_orchestrator");

/// The server binary on the in-memory store, killed when dropped.
struct Server {
    child: Child,
    url: String,
    admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start() -> Server {
    let port = free_port();
    let child = Command::new(BINARY)
        .arg("serve")
        .env_clear()
        .env("JWT_SECRET_KEY", SECRET)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        // Its droplet names an endpoint on this host.
        .env("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true")
        .env("ENVIRONMENT", "test")
        .env("WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the orchestrator binary");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        admin: token(SECRET, "admin", Permission::Admin, None),
    };
    let client = Client::new(&server.url).expect("url");
    let started = Instant::now();
    while client.health().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

impl Server {
    /// Runs `orchestrator ARGS` as the admin, the way a shell would.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_token(&self.admin, args)
    }

    fn cli_with_token(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env_clear()
            .env("ORCHESTRATOR_URL", &self.url)
            .env("ORCHESTRATOR_TOKEN", token)
            .output()
            .expect("run the CLI")
    }

    async fn register(&self, id: i64, name: &str) {
        Client::new(&self.url)
            .expect("url")
            .with_token(token(SECRET, name, Permission::Write, Some(id)))
            .register(&RegistrationDraft {
                droplet_id: id,
                name: name.into(),
                endpoint: "http://127.0.0.1:9".into(),
                capabilities: vec!["echo".into()],
                ..RegistrationDraft::default()
            })
            .await
            .expect("register");
    }
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "the command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("--json prints one JSON document")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_created_listed_shown_and_cancelled() {
    let server = start().await;
    server.register(21, "echo").await;

    let created = json(&server.cli(&[
        "tasks",
        "create",
        "--type",
        "echo",
        "--title",
        "say hi",
        "--capability",
        "echo",
        "--priority",
        "7",
        "--payload",
        r#"{"text":"hi"}"#,
        "--json",
    ]));
    let id = created["task_id"].as_i64().expect("task_id").to_string();
    assert_eq!(created["status"], "pending");

    let table = stdout(&server.cli(&["tasks", "list"]));
    let mut lines = table.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("ID  STATUS")),
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(
        row[..6],
        [id.as_str(), "assigned", "7", "echo", "echo", "21"],
        "{table}"
    );
    assert!(table.ends_with("1-1 of 1 tasks\n"), "{table}");

    let shown = stdout(&server.cli(&["tasks", "get", &id]));
    assert!(shown.contains("droplet:      21 (echo)"), "{shown}");
    assert!(shown.contains("pending  assigned  system:router"), "{shown}");
    let listed = json(&server.cli(&["tasks", "list", "--status", "assigned", "--json"]));
    assert_eq!(listed["total"], 1);

    let cancelled = stdout(&server.cli(&["tasks", "cancel", &id]));
    assert_eq!(cancelled, format!("task {id} is cancelled\n"));
    let again = server.cli(&["tasks", "cancel", &id, "--running"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("409 invalid_transition"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droplets_are_listed_and_shown() {
    let server = start().await;
    server.register(21, "echo").await;
    server.register(22, "echo-two").await;

    let table = stdout(&server.cli(&["droplets", "list"]));
    assert!(table.contains("22  echo-two  active"), "{table}");
    assert!(table.ends_with("2 droplets\n"), "{table}");
    let listed = json(&server.cli(&["droplets", "list", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let none = stdout(&server.cli(&["droplets", "list", "--capability", "ocr", "--status", "active"]));
    assert!(none.ends_with("0 droplets\n"), "{none}");

    let shown = stdout(&server.cli(&["droplets", "get", "21"]));
    assert!(
        shown.starts_with("droplet:        21\nname:           echo\n"),
        "{shown}"
    );
    let one = json(&server.cli(&["droplets", "get", "22", "--json"]));
    assert_eq!(one["capabilities"], serde_json::json!(["echo"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_the_api_error() {
    let server = start().await;
    assert_eq!(stdout(&server.cli(&["health"])), "Orchestrator (10): active\n");
    let nobody = server.cli(&["health", "--url", "http://127.0.0.1:9"]);
    assert_eq!(nobody.status.code(), Some(1));
    assert_eq!(stdout(&server.cli(&["ready"])), "ready\n");
    let unready = server.cli(&["ready", "--url", "http://127.0.0.1:9"]);
    assert_eq!(unready.status.code(), Some(1));
    let missing = server.cli(&["tasks", "get", "99"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "error: 404 not_found: task 99 not found\n"
    );
    let refused = server.cli_with_token("not-a-token", &["droplets", "list"]);
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("error: 401 unauthorized"));
    let usage = server.cli(&["tasks", "list", "--status", "bogus"]);
    assert_eq!(usage.status.code(), Some(2));
    let bad_payload = server.cli(&["tasks", "create", "--type", "a", "--payload", "{"]);
    assert_eq!(bad_payload.status.code(), Some(2));
    let invalid = server.cli(&["tasks", "create", "--type", "a", "--priority", "11"]);
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("422 validation_failed: priority"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_one_line_per_event() {
    let server = start().await;
    server.register(21, "echo").await;
    // Tasks no droplet takes, so that the ids watched are not the small
    // numbers a line holds besides (an attempt is 1).
    for _ in 0..2 {
        stdout(&server.cli(&["tasks", "create", "--type", "idle", "--capability", "none"]));
    }
    let mut watch = Command::new(BINARY)
        .args(["watch", "--url", &server.url, "--token", &server.admin])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let lines = lines_of(&mut watch);
    // The feed is open once the watcher prints; create tasks until it does.
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut created = Vec::new();
    while seen.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "watch printed nothing"
        );
        let task = json(&server.cli(&[
            "tasks",
            "create",
            "--type",
            "echo",
            "--capability",
            "echo",
            "--json",
        ]));
        created.push(task["task_id"].as_i64().expect("task_id").to_string());
        seen.extend(lines.recv_timeout(Duration::from_millis(500)));
    }
    while !seen.iter().any(|l| l.contains("task_assigned")) {
        seen.push(
            lines
                .recv_timeout(Duration::from_secs(10))
                .expect("an assignment line"),
        );
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let assigned = seen
        .iter()
        .find(|l| l.contains("task_assigned"))
        .expect("assigned");
    let fields: Vec<&str> = assigned.split_whitespace().collect();
    assert!(fields[0].ends_with('Z'), "an RFC 3339 time first: {assigned}");
    let id = created
        .iter()
        .find(|id| *id == fields[3])
        .unwrap_or_else(|| panic!("not one of the tasks created, {created:?}: {assigned}"));
    assert_eq!(
        fields[1..],
        [
            "task_assigned",
            "task",
            id.as_str(),
            "assigned",
            "droplet",
            "21",
            "\"echo\""
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_retried_from_the_command_line() {
    let server = start().await;
    server.register(21, "echo").await;
    let created = json(&server.cli(&[
        "tasks",
        "create",
        "--type",
        "echo",
        "--capability",
        "echo",
        "--max-retries",
        "0",
        "--json",
    ]));
    let id = created["task_id"].as_i64().expect("task_id");
    let droplet =
        Client::new(&server.url)
            .expect("url")
            .with_token(token(SECRET, "echo", Permission::Write, Some(21)));
    let started = Instant::now();
    while droplet.get_task(id).await.expect("get").task.status != TaskStatus::Assigned {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the task was not assigned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    droplet
        .update_status(id, &StatusUpdate::started(1))
        .await
        .expect("start");
    droplet
        .update_status(id, &StatusUpdate::failed(1, "boom"))
        .await
        .expect("fail");
    let refused = server.cli(&["tasks", "retry", "999999"]);
    assert_eq!(refused.status.code(), Some(1));
    let retried = stdout(&server.cli(&["tasks", "retry", &id.to_string(), "--reason", "fixed the input"]));
    assert!(retried.starts_with(&format!("task {id} is ")), "{retried}");
    let shown = stdout(&server.cli(&["tasks", "get", &id.to_string()]));
    assert!(shown.contains("retried by admin: fixed the input"), "{shown}");
}

#[tokio::test]
async fn schedules_are_made_listed_paused_and_deleted() {
    let server = start().await;
    let made = server.cli(&[
        "schedules",
        "create",
        "--name",
        "nightly",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Asia/Tokyo",
        "--type",
        "report",
        "--overlap",
        "skip",
        "--json",
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made = json(&made);
    assert_eq!(
        (&made["timezone"], &made["overlap"]),
        (&Value::from("Asia/Tokyo"), &Value::from("skip"))
    );
    assert_eq!(made["next_runs"].as_array().map(Vec::len), Some(5));
    // 02:30 in Tokyo is 17:30 UTC.
    assert!(
        made["next_runs"][0]
            .as_str()
            .is_some_and(|t| t.contains("T17:30:00")),
        "{made}"
    );

    let table = stdout(&server.cli(&["schedules", "list"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("nightly") && table.contains("Asia/Tokyo") && table.contains("active"),
        "{table}"
    );
    let paused = stdout(&server.cli(&["schedules", "pause", "nightly"]));
    assert!(paused.contains("paused:") && paused.contains("true"), "{paused}");
    let shown = stdout(&server.cli(&["schedules", "get", "nightly"]));
    assert!(shown.contains("next_runs:") && shown.contains("cron:"), "{shown}");
    let resumed = json(&server.cli(&["schedules", "resume", "nightly", "--json"]));
    assert_eq!(resumed["paused"], false);
    let deleted = stdout(&server.cli(&["schedules", "delete", "nightly"]));
    assert!(deleted.contains("deleted"), "{deleted}");

    let bad = server.cli(&[
        "schedules",
        "create",
        "--name",
        "x",
        "--cron",
        "whenever",
        "--type",
        "t",
    ]);
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("422") && message.contains("cron"), "{message}");
}
