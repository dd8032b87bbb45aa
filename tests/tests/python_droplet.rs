//! `examples/python-droplet`, a droplet written in Python on the SDK
//! (`sdk/python`), a FastAPI service the way the mesh's integration guide
//! says, run against the real server and a fake Registry that signs real
//! RS256 tokens: it registers with the Registry, beats to `/heartbeat` with
//! its service id, takes work by push to its `/message` (or by pull), and
//! reports it; its `submit` routes a task with the guide's body and reads
//! the result.

use orchestrator_testkit::pg::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Output};

use orchestrator_tests::fake_registry::FakeRegistry;
use orchestrator_tests::{TestApp, eventually, spawn_app_with};
use serde_json::Value;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python-droplet/droplet.py")
}

/// `PYTHON`, else the environment `scripts/ensure-python` makes (run by
/// `make test`), with the SDK, FastAPI and uvicorn installed.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python");
        assert!(
            venv.exists(),
            "no Python environment at {}: run scripts/ensure-python, or set PYTHON",
            venv.display()
        );
        venv.display().to_string()
    })
}

fn droplet_command(registry: &FakeRegistry, app: &TestApp, vars: &[(&str, String)]) -> Command {
    let mut command = Command::new(python());
    command
        .arg(script())
        .env("REGISTRY_URL", registry.uri())
        .env("ORCHESTRATOR_URL", &app.address)
        .env("PYTHONUNBUFFERED", "1");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// The running droplet, killed when the test ends.
struct Droplet(Child);

impl Drop for Droplet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(registry: &FakeRegistry, app: &TestApp, poll_seconds: &str) -> Droplet {
    let vars = [
        ("DROPLET_ID", "41".to_owned()),
        ("SERVICE_NAME", "echo-py".to_owned()),
        ("SERVICE_PORT", free_port().to_string()),
        ("LISTEN_HOST", "127.0.0.1".to_owned()),
        ("SERVICE_HOST", "127.0.0.1".to_owned()),
        ("HEARTBEAT_SECONDS", "1".to_owned()),
        ("POLL_SECONDS", poll_seconds.to_owned()),
    ];
    let child = droplet_command(registry, app, &vars)
        // Its lines join the test's output, shown when the test fails.
        .arg("serve")
        .spawn()
        .unwrap_or_else(|e| panic!("start {} {}: {e}", python(), script().display()));
    Droplet(child)
}

async fn submit(registry: &FakeRegistry, app: &TestApp, text: &str) -> Output {
    let vars = [
        ("DROPLET_ID", "42".to_owned()),
        ("SERVICE_NAME", "py-client".to_owned()),
    ];
    let mut command = droplet_command(registry, app, &vars);
    command.args(["submit", text]);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("run submit")
}

async fn wait_until_active(app: &TestApp, id: i64) -> Value {
    let droplet =
        || async { app.get(&format!("/droplets/{id}"), &app.admin()).await.payload()["droplet"].clone() };
    eventually(10, "the droplet made active by its heartbeats", || async {
        droplet().await["status"] == "active"
    })
    .await;
    droplet().await
}

async fn run_the_walk_through(push: bool) {
    let registry = FakeRegistry::start().await;
    let url = registry.uri();
    let push_delivery = if push { "true" } else { "false" };
    let app = spawn_app_with(&[
        ("REGISTRY_URL", url.as_str()),
        ("REGISTRY_SYNC_INTERVAL", "3600"),
        ("ENABLE_PUSH_DELIVERY", push_delivery),
    ])
    .await;
    // With push, the droplet polls an hour apart: its work can only come by push.
    let _droplet = serve(&registry, &app, if push { "3600" } else { "0.2" });

    let droplet = wait_until_active(&app, 41).await;
    let service_id = registry
        .services()
        .iter()
        .find(|s| s["droplet_id"] == 41)
        .and_then(|s| s["service_id"].as_i64())
        .expect("registered with the Registry");
    assert_eq!(droplet["service_id"], service_id, "{droplet}");

    let output = submit(&registry, &app, "hello, mesh").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "submit failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" submitted"), "{stdout}");
    let result = stdout
        .split_once(" completed: ")
        .map(|(_, json)| serde_json::from_str::<Value>(json.trim()).expect("the result is JSON"))
        .unwrap_or_else(|| panic!("no completed line: {stdout}"));
    assert_eq!(
        result,
        serde_json::json!({ "echo": "hello, mesh", "by": "echo-py" })
    );

    let tasks = app.get("/tasks?status=completed", &app.admin()).await;
    let task = &tasks.payload()["tasks"][0];
    assert_eq!(task["assigned_droplet_id"], 41, "{tasks:?}");
    let id = task["id"].as_i64().expect("id");
    let details = app.task(id).await;
    assert_eq!(
        details["created_by"], "py-client",
        "the submitter's Registry token"
    );
    assert_eq!(details["title"], "echo", "the guide's body has no title");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_droplet_works_by_push() {
    run_the_walk_through(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_droplet_works_by_pull() {
    run_the_walk_through(false).await;
}
