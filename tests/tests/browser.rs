//! The dashboard in a real browser: headless Chromium driven through
//! ChromeDriver (Debian's `chromium` and `chromium-driver`; `make test`
//! installs them when missing, `scripts/ensure-browser`). A viewer signs in, sees a task appear without a reload,
//! pauses and resumes the live rows, opens the task's history and cancels
//! it; a read-only viewer is shown no action and refused one.
//!
//! With `DASHBOARD_SCREENSHOTS=dir` set, the overview and a task's page are
//! saved there as PNG files (the README's pictures).

use orchestrator_testkit::pg::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use orchestrator_domain::Permission;
use orchestrator_tests::{TestApp, spawn_app};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A ChromeDriver of this test's own, stopped when dropped.
struct Driver {
    process: Child,
    url: String,
    profile: std::path::PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn start_driver() -> Driver {
    let port = free_port();
    let process = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromedriver ({e}): install Debian's chromium and chromium-driver (scripts/ensure-browser does)")
        });
    let driver = Driver {
        process,
        url: format!("http://127.0.0.1:{port}"),
        profile: std::env::temp_dir().join(format!("orchestrator-chromium-{}", uuid::Uuid::new_v4())),
    };
    let started = Instant::now();
    while reqwest::get(format!("{}/status", driver.url)).await.is_err() {
        assert!(started.elapsed() < WAIT, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

/// A headless Chromium session; the flags keep it off the network, which
/// these machines refuse anyway.
async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    let mut options = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic", "--no-first-run", "--window-size=1280,1000",
            format!("--user-data-dir={}", driver.profile.display()),
        ]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn sign_in(client: &Client, app: &TestApp, token: &str) {
    client.goto(&format!("{}/ui", app.address)).await.expect("open");
    let field = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input#token"))
        .await
        .expect("the sign-in page");
    field.send_keys(token).await.expect("type the token");
    client
        .find(Locator::Css("form.login button[type=submit]"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("sign in");
    wait_for_text(client, "h1", "Overview").await;
}

/// Waits until the element at `css` holds `text`.
async fn wait_for_text(client: &Client, css: &str, text: &str) {
    let started = Instant::now();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && element.text().await.is_ok_and(|t| t.contains(text))
        {
            return;
        }
        if started.elapsed() > WAIT {
            let url = client.current_url().await.map(|u| u.to_string());
            let page = client.source().await.unwrap_or_default();
            panic!("no {text:?} in {css} at {url:?}:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(app: &TestApp, title: &str) -> i64 {
    let reply = app
        .post(
            "/tasks",
            &app.writer("alice"),
            json!({ "task_type": "report", "title": title, "required_capability": "audio",
                    "payload": { "quarter": 3 } }),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.payload()["task_id"].as_i64().expect("id")
}

async fn screenshot(client: &Client, name: &str) {
    if let Ok(dir) = std::env::var("DASHBOARD_SCREENSHOTS") {
        let png = client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(format!("{dir}/{name}.png"), png).expect("save the screenshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_signs_in_watches_a_task_arrive_live_and_cancels_it() {
    let app = spawn_app().await;
    app.register(4, &["gpu"], 3).await;
    for i in 0..3 {
        let done = app.create_task(3 + i, Some("gpu")).await;
        app.wait_for_status(done, "assigned", WAIT).await;
    }
    let driver = start_driver().await;
    let client = browser(&driver).await;
    sign_in(&client, &app, &app.admin()).await;
    screenshot(&client, "overview").await;

    client
        .goto(&format!("{}/ui/tasks", app.address))
        .await
        .expect("tasks");
    wait_for_text(&client, "#live-state", "live").await;
    // Survives only as long as the page is not reloaded.
    client
        .execute("window.notReloaded = true; return true;", vec![])
        .await
        .expect("mark the page");
    let id = create(&app, "Quarterly report").await;
    let row = format!(r#"tr[data-task-id="{id}"]"#);
    wait_for_text(&client, &row, "Quarterly report").await;
    let same_page = client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_page, Value::Bool(true), "the row came without a reload");

    client
        .find(Locator::Id("live-toggle"))
        .await
        .expect("pause")
        .click()
        .await
        .expect("click");
    wait_for_text(&client, "#live-state", "paused").await;
    let held = create(&app, "Held back").await;
    wait_for_text(&client, "#live-state", "1 changes waiting").await;
    let held_row = format!(r#"tr[data-task-id="{held}"]"#);
    assert!(
        client.find(Locator::Css(&held_row)).await.is_err(),
        "paused: no new row"
    );
    client
        .find(Locator::Id("live-toggle"))
        .await
        .expect("resume")
        .click()
        .await
        .expect("click");
    wait_for_text(&client, &held_row, "Held back").await;

    client
        .find(Locator::Css(&format!("{row} a")))
        .await
        .expect("the title")
        .click()
        .await
        .expect("open the task");
    wait_for_text(&client, "h1", &format!("Task {id}: Quarterly report")).await;
    wait_for_text(&client, "#history", "created → pending").await;
    wait_for_text(&client, "#waiting", "no active droplet offers audio").await;
    wait_for_text(&client, "#payload", "\"quarter\": 3").await;
    screenshot(&client, "task").await;

    client
        .find(Locator::LinkText("Cancel the task"))
        .await
        .expect("the action")
        .click()
        .await
        .expect("click");
    wait_for_text(&client, ".notice", "Cancel this task? It will not run.").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .expect("the confirmation")
        .click()
        .await
        .expect("confirm");
    wait_for_text(&client, ".notice", "The task was cancelled.").await;
    wait_for_text(&client, "#history", "pending → cancelled").await;
    assert_eq!(app.task(id).await["status"], "cancelled");
    client.close().await.expect("close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_viewer_is_shown_no_action_and_refused_one() {
    let app = spawn_app().await;
    let id = create(&app, "Look, do not touch").await;
    let driver = start_driver().await;
    let client = browser(&driver).await;
    sign_in(&client, &app, &app.token("olga", &[Permission::Read], None)).await;
    wait_for_text(&client, "header .who", "olga · read-only").await;

    client
        .goto(&format!("{}/ui/tasks/{id}", app.address))
        .await
        .expect("the task");
    wait_for_text(&client, "h1", "Look, do not touch").await;
    let actions = client.find_all(Locator::Css(".actions a")).await.expect("query");
    assert!(actions.is_empty(), "a read-only viewer is offered no action");

    client
        .goto(&format!("{}/ui/tasks/{id}/cancel", app.address))
        .await
        .expect("the action's page");
    wait_for_text(&client, "h1", "Error 403").await;
    assert_eq!(app.task(id).await["status"], "pending");
    client.close().await.expect("close the session");
}
