//! The dashboard at `/ui`, as a browser sees it over HTTP: sign-in and the
//! session cookie, every page, the permissions of each action, the
//! Content-Security-Policy, cross-site forms refused, and live rows.

use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_tests::{TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::json;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser without JavaScript: follows no redirect, keeps one cookie.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn assert_shows(&self, text: &str) {
        assert!(self.body.contains(text), "no {text:?} in:\n{}", self.body);
    }

    fn assert_hides(&self, text: &str) {
        assert!(!self.body.contains(text), "{text:?} is shown:\n{}", self.body);
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            base: app.address.clone(),
            cookie: None,
        }
    }

    async fn signed_in(app: &TestApp, token: &str) -> Browser {
        let mut browser = Browser::new(app);
        let page = browser.sign_in(token).await;
        assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/ui"));
        browser
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        let page = self.form("/ui/login", &[("token", token)]).await;
        if let Some(set) = page.headers.get(header::SET_COOKIE) {
            let set = set.to_str().expect("ascii").to_owned();
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        page
    }

    async fn read(&self, response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> Page {
        let request = self.with_cookie(self.client.get(format!("{}{path}", self.base)));
        self.read(request.send().await.expect("get")).await
    }

    /// A form posted from one of the dashboard's own pages.
    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.form_from(path, fields, Some(&self.base)).await
    }

    async fn form_from(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self
            .with_cookie(self.client.post(format!("{}{path}", self.base)))
            .form(fields);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        self.read(request.send().await.expect("post")).await
    }
}

#[tokio::test]
async fn signing_in_with_a_token_starts_a_session_that_signing_out_ends() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let anonymous = browser.get("/ui").await;
    assert_eq!(
        (anonymous.status, anonymous.location()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    let login = browser.get("/ui/login").await;
    assert_eq!(login.status, StatusCode::OK);
    login.assert_shows(r#"type="password" name="token""#);

    let refused = browser.sign_in("not-a-token").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    refused.assert_shows("That token was not accepted");
    assert!(refused.headers.get(header::SET_COOKIE).is_none());

    let accepted = browser
        .sign_in(&app.token("olga", &[Permission::Read], None))
        .await;
    assert_eq!(
        (accepted.status, accepted.location()),
        (StatusCode::SEE_OTHER, "/ui")
    );
    let cookie = accepted.headers[header::SET_COOKIE].to_str().expect("ascii");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Expires="] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let overview = browser.get("/ui").await;
    assert_eq!(overview.status, StatusCode::OK);
    overview.assert_shows("olga · read-only");

    let out = browser.form("/ui/logout", &[]).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/ui/login"));
    let removal = out.headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(removal.contains("Max-Age=0"), "{removal}");
}

#[tokio::test]
async fn an_expired_token_ends_the_session() {
    let app = spawn_app().await;
    let expired = app.expired_token("olga", &[Permission::Read]);
    let browser = Browser {
        cookie: Some(format!("orchestrator_session={expired}")),
        ..Browser::new(&app)
    };
    let page = browser.get("/ui/tasks").await;
    assert_eq!(
        (page.status, page.location()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
}

#[tokio::test]
async fn every_page_has_a_strict_content_security_policy_and_no_inline_code() {
    let app = spawn_app().await;
    app.register(4, &["x"], 2).await;
    let id = app.create_task(5, Some("x")).await;
    let admin = Browser::signed_in(&app, &app.admin()).await;
    let anonymous = Browser::new(&app);
    let login = anonymous.get("/ui/login").await;
    let mut pages = vec![("/ui/login".to_owned(), login)];
    for path in [
        "/ui".to_owned(),
        "/ui/tasks".to_owned(),
        format!("/ui/tasks/{id}"),
        format!("/ui/tasks/{id}/cancel"),
        "/ui/droplets".to_owned(),
        "/ui/jobs".to_owned(),
    ] {
        let page = admin.get(&path).await;
        pages.push((path, page));
    }
    for (path, page) in &pages {
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(page.headers[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(page.headers[header::REFERRER_POLICY], "same-origin", "{path}");
        assert!(
            page.headers[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|t| t.starts_with("text/html")),
            "{path}"
        );
        for inline in ["style=", "<style", "onclick", "javascript:", "<script>"] {
            page.assert_hides(inline);
        }
    }
}

#[tokio::test]
async fn assets_are_built_in_and_cached_for_a_year() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let login = browser.get("/ui/login").await;
    for (attribute, kind) in [
        (r#"href="/ui/assets/"#, "text/css"),
        (r#"src="/ui/assets/"#, "text/javascript"),
    ] {
        let start = login.body.find(attribute).expect("an asset") + attribute.len() - "/ui/assets/".len();
        let path: String = login.body[start..].chars().take_while(|c| *c != '"').collect();
        let asset = browser.get(&path).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        assert!(
            asset.headers[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|t| t.starts_with(kind))
        );
        assert_eq!(
            asset.headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(asset.body.len() > 500, "{path}");
    }
    let unknown = browser.get("/ui/assets/dashboard-0000.css").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_pages_show_what_the_store_holds() {
    let app = spawn_app().await;
    app.register(4, &["gpu"], 5).await;
    let running = app.create_task(3, Some("gpu")).await;
    app.wait_for_status(running, "assigned", Duration::from_secs(2))
        .await;
    let waiting = app
        .post(
            "/tasks",
            &app.writer("alice"),
            json!({ "task_type": "report", "title": "Quarterly <report>", "required_capability": "audio",
                    "payload": { "quarter": 3 } }),
        )
        .await;
    let waiting_id = waiting.payload()["task_id"].as_i64().expect("id");
    let trace = waiting.payload()["trace_id"].as_str().expect("trace").to_owned();
    let browser = Browser::signed_in(&app, &app.token("olga", &[Permission::Read], None)).await;

    let overview = browser.get("/ui").await;
    overview.assert_shows(r#"id="task-counts""#);
    overview.assert_shows(r#"<div class="figure">1</div><div class="status status-pending">pending</div>"#);
    overview.assert_shows(r#"<div class="figure">1</div><div class="status status-assigned">assigned</div>"#);
    overview.assert_shows(r#"<div class="figure">1</div><div class="status status-active">active</div>"#);
    overview.assert_shows("2 created and 0 finished in the last hour");

    let list = browser.get("/ui/tasks").await;
    list.assert_shows("Tasks (2)");
    list.assert_shows("Quarterly &lt;report&gt;");
    for (query, shown, hidden) in [
        ("status=pending", "Quarterly", "priority 3"),
        ("capability=gpu", "priority 3", "Quarterly"),
        ("task_type=report", "Quarterly", "priority 3"),
        ("droplet=4", "priority 3", "Quarterly"),
        ("priority=3", "priority 3", "Quarterly"),
        ("priority=4-10", "Quarterly", "priority 3"),
        ("search=QUARTERLY", "Quarterly", "priority 3"),
    ] {
        let page = browser.get(&format!("/ui/tasks?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        page.assert_shows(shown);
        page.assert_hides(hidden);
    }
    let by_trace = browser.get(&format!("/ui/tasks?search={trace}")).await;
    by_trace.assert_shows("Tasks (1)");
    let bad = browser.get("/ui/tasks?status=sleeping").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let task = browser.get(&format!("/ui/tasks/{waiting_id}")).await;
    task.assert_shows("Quarterly &lt;report&gt;");
    task.assert_shows("Waiting: no active droplet offers audio");
    task.assert_shows("&quot;quarter&quot;: 3");
    task.assert_shows(&trace);
    task.assert_shows("created → pending");
    let assigned = browser.get(&format!("/ui/tasks/{running}")).await;
    assigned.assert_shows("pending → assigned");
    assigned.assert_shows("Why this droplet");
    assert_eq!(
        browser.get("/ui/tasks/999999").await.status,
        StatusCode::NOT_FOUND
    );

    let droplets = browser.get("/ui/droplets").await;
    droplets.assert_shows("droplet 4");
    droplets.assert_shows("1 / 5");
    let admin = Browser::signed_in(&app, &app.admin()).await;
    let jobs = admin.get("/ui/jobs").await;
    jobs.assert_shows("task_router");
    jobs.assert_shows("health_monitor");
}

#[tokio::test]
async fn the_task_list_pages_through_fifty_at_a_time() {
    let app = spawn_app().await;
    let drafts: Vec<_> = (0..55)
        .map(|i| json!({ "task_type": "bulk", "title": format!("bulk {i:02}") }))
        .collect();
    let created = app
        .post("/tasks/batch", &app.writer("alice"), json!({ "tasks": drafts }))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let browser = Browser::signed_in(&app, &app.admin()).await;
    let first = browser.get("/ui/tasks?task_type=bulk").await;
    first.assert_shows("Page 1 of 2");
    first.assert_shows(r#"href="/ui/tasks?task_type=bulk&amp;page=2""#);
    first.assert_shows(r#"data-live="/ui/live/tasks?task_type=bulk&amp;""#);
    let second = browser.get("/ui/tasks?task_type=bulk&page=2").await;
    second.assert_shows("Page 2 of 2");
    second.assert_shows("bulk 00");
    second.assert_hides("bulk 54");
    second.assert_hides("data-live");
}

#[tokio::test]
async fn a_read_only_viewer_is_shown_no_action_and_refused_every_one() {
    let app = spawn_app().await;
    app.register(4, &["x"], 1).await;
    let id = app.create_task(5, None).await;
    app.wait_for_status(id, "assigned", Duration::from_secs(2)).await;
    let viewer = Browser::signed_in(&app, &app.token("olga", &[Permission::Read], None)).await;
    let task = viewer.get(&format!("/ui/tasks/{id}")).await;
    task.assert_hides("Cancel the task");
    let droplets = viewer.get("/ui/droplets").await;
    droplets.assert_hides("Deactivate");
    viewer.get("/ui").await.assert_hides(r#"href="/ui/jobs""#);

    assert_eq!(
        viewer.get(&format!("/ui/tasks/{id}/cancel")).await.status,
        StatusCode::FORBIDDEN
    );
    for path in [
        format!("/ui/tasks/{id}/cancel"),
        format!("/ui/tasks/{id}/retry"),
        format!("/ui/tasks/{id}/stop"),
        "/ui/droplets/4/deactivate".to_owned(),
        "/ui/jobs/task_router/pause".to_owned(),
    ] {
        let refused = viewer.form(&path, &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(app.task(id).await["status"], "assigned", "nothing changed");
    let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
    assert_eq!(jobs.payload()["jobs"][0]["paused"], false);
}

#[tokio::test]
async fn a_writer_cancels_its_task_after_confirming_and_admins_run_droplets_and_jobs() {
    let app = spawn_app().await;
    let id = app.create_task(5, None).await;
    let alice = Browser::signed_in(&app, &app.writer("alice")).await;
    let task = alice.get(&format!("/ui/tasks/{id}")).await;
    task.assert_shows(&format!(r#"href="/ui/tasks/{id}/cancel""#));
    let confirm = alice.get(&format!("/ui/tasks/{id}/cancel")).await;
    confirm.assert_shows("Cancel this task? It will not run.");
    confirm.assert_shows(&format!(r#"action="/ui/tasks/{id}/cancel""#));
    assert_eq!(app.task(id).await["status"], "pending", "asking changes nothing");
    let done = alice.form(&format!("/ui/tasks/{id}/cancel"), &[]).await;
    assert_eq!(
        (done.status, done.location()),
        (
            StatusCode::SEE_OTHER,
            format!("/ui/tasks/{id}?done=cancel").as_str()
        )
    );
    assert_eq!(app.task(id).await["status"], "cancelled");
    alice
        .get(&format!("/ui/tasks/{id}?done=cancel"))
        .await
        .assert_shows("The task was cancelled.");
    let again = alice.form(&format!("/ui/tasks/{id}/cancel"), &[]).await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "the state machine still decides"
    );

    app.register(4, &["x"], 1).await;
    assert_eq!(
        alice.form("/ui/droplets/4/deactivate", &[]).await.status,
        StatusCode::FORBIDDEN,
        "droplets are an admin's"
    );
    let admin = Browser::signed_in(&app, &app.admin()).await;
    let off = admin.form("/ui/droplets/4/deactivate", &[]).await;
    assert_eq!(
        (off.status, off.location()),
        (StatusCode::SEE_OTHER, "/ui/droplets")
    );
    assert_eq!(
        app.get("/droplets/4", &app.admin()).await.payload()["droplet"]["status"],
        "inactive"
    );
    admin
        .get("/ui/droplets")
        .await
        .assert_shows("inactive (by an admin)");
    admin.form("/ui/droplets/4/activate", &[]).await;
    assert_eq!(
        app.get("/droplets/4", &app.admin()).await.payload()["droplet"]["status"],
        "active"
    );

    let paused = admin.form("/ui/jobs/task_router/pause", &[]).await;
    assert_eq!(
        (paused.status, paused.location()),
        (StatusCode::SEE_OTHER, "/ui/jobs")
    );
    admin.get("/ui/jobs").await.assert_shows("Resume");
    admin.form("/ui/jobs/task_router/resume", &[]).await;
    let jobs = app.get("/management/scheduler/jobs", &app.admin()).await;
    assert_eq!(jobs.payload()["jobs"][0]["paused"], false);
    assert_eq!(
        admin.form("/ui/jobs/nope/pause", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_running_task_is_asked_to_stop_and_a_failed_one_retried() {
    let app = spawn_app().await;
    app.register(4, &["x"], 2).await;
    let running = app.create_task(5, Some("x")).await;
    let failing = app
        .post(
            "/tasks",
            &app.writer("alice"),
            json!({ "task_type": "a", "title": "once", "required_capability": "x", "max_retries": 0 }),
        )
        .await
        .payload()["task_id"]
        .as_i64()
        .expect("id");
    for id in [running, failing] {
        app.wait_for_status(id, "assigned", Duration::from_secs(2)).await;
        app.set_status(id, &app.droplet(4), "in_progress").await;
    }
    let failed = app
        .patch(
            &format!("/tasks/{failing}"),
            &app.droplet(4),
            json!({ "status": "failed", "error_message": "disk full" }),
        )
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");
    let admin = Browser::signed_in(&app, &app.admin()).await;
    let stop = admin.form(&format!("/ui/tasks/{running}/stop"), &[]).await;
    assert_eq!(stop.status, StatusCode::SEE_OTHER);
    assert!(app.task(running).await["cancel_requested_at"].is_string());
    admin
        .get(&format!("/ui/tasks/{running}"))
        .await
        .assert_hides("Ask the droplet to stop");

    let task = admin.get(&format!("/ui/tasks/{failing}")).await;
    task.assert_shows("disk full");
    task.assert_shows("Retry the task");
    let retried = admin.form(&format!("/ui/tasks/{failing}/retry"), &[]).await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    let after = app.task(failing).await;
    assert!(
        matches!(after["status"].as_str(), Some("pending" | "assigned")),
        "{after}"
    );
}

#[tokio::test]
async fn forms_from_another_site_are_refused() {
    let app = spawn_app().await;
    let id = app.create_task(5, None).await;
    let admin = Browser::signed_in(&app, &app.admin()).await;
    let path = format!("/ui/tasks/{id}/cancel");
    let forged = admin.form_from(&path, &[], Some("https://evil.example")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    forged.assert_shows("cross-site form refused");
    let bare = admin.form_from(&path, &[], None).await;
    assert_eq!(
        bare.status,
        StatusCode::FORBIDDEN,
        "no Origin and no Sec-Fetch-Site"
    );
    assert_eq!(app.task(id).await["status"], "pending");
    let anonymous = Browser::new(&app);
    let login = anonymous
        .form_from(
            "/ui/login",
            &[("token", &app.admin())],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(
        login.status,
        StatusCode::FORBIDDEN,
        "no session planted from elsewhere"
    );
}

#[tokio::test]
async fn the_live_stream_sends_each_change_to_a_signed_in_viewer() {
    let app = spawn_app().await;
    let refused = Browser::new(&app).get("/ui/live/tasks").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let browser = Browser::signed_in(&app, &app.token("olga", &[Permission::Read], None)).await;
    let request = browser.with_cookie(browser.client.get(format!("{}/ui/live/tasks", app.address)));
    let mut stream = request.send().await.expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    let id = app.create_task(5, None).await;
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("in time")
        .expect("read")
        .expect("a chunk");
    let text = String::from_utf8_lossy(&chunk);
    let frame = text
        .strip_prefix("data: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not an event: {text:?}"));
    let frame: serde_json::Value = serde_json::from_str(frame).expect("json");
    assert_eq!(
        (frame["event"].as_str(), frame["data"]["id"].as_i64()),
        (Some("task_created"), Some(id))
    );
}

#[tokio::test]
async fn the_dashboard_can_be_turned_off() {
    let app = spawn_app_with(&[("ENABLE_DASHBOARD", "false")]).await;
    let page = Browser::new(&app).get("/ui/login").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

/// Every page a read-only viewer opens is answered as the API answers the
/// same reader: what needs `admin` there needs it here.
#[tokio::test]
async fn a_read_only_viewer_sees_in_the_dashboard_what_the_api_shows_it() {
    let app = spawn_app().await;
    let id = app.create_task(5, None).await;
    let token = app.token("olga", &[Permission::Read], None);
    let viewer = Browser::signed_in(&app, &token).await;
    for (page, api) in [
        ("/ui".to_owned(), "/metrics/summary".to_owned()),
        ("/ui/tasks".to_owned(), "/tasks".to_owned()),
        (format!("/ui/tasks/{id}"), format!("/tasks/{id}")),
        ("/ui/droplets".to_owned(), "/droplets".to_owned()),
        ("/ui/jobs".to_owned(), "/management/scheduler/jobs".to_owned()),
    ] {
        let shown = viewer.get(&page).await.status.as_u16();
        let answered = app.get(&api, &token).await.status;
        assert_eq!(shown, answered, "{page} beside {api}");
    }
    assert_eq!(viewer.get("/ui/jobs").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_schedules_page_lists_next_runs_and_a_writer_pauses_and_resumes() {
    let app = spawn_app().await;
    let body = json!({
        "name": "nightly",
        "cron": "30 2 * * *",
        "timezone": "Asia/Tokyo",
        "task": { "task_type": "report" }
    });
    let created = app.post("/schedules", &app.writer("alice"), body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let first_run = created.payload()["schedule"]["next_runs"][0]
        .as_str()
        .expect("a next run")
        .replace(".000", "");

    let viewer = Browser::signed_in(&app, &app.token("viewer", &[Permission::Read], None)).await;
    let page = viewer.get("/ui/schedules").await;
    page.assert_shows(r#"data-schedule="nightly""#);
    page.assert_shows("Asia/Tokyo");
    page.assert_shows(&first_run);
    assert!(
        !page.body.contains("/ui/schedules/nightly/pause"),
        "a reader is shown no action"
    );
    assert_eq!(
        viewer.form("/ui/schedules/nightly/pause", &[]).await.status,
        StatusCode::FORBIDDEN
    );

    let alice = Browser::signed_in(&app, &app.writer("alice")).await;
    let paused = alice.form("/ui/schedules/nightly/pause", &[]).await;
    assert_eq!(
        (paused.status, paused.location()),
        (StatusCode::SEE_OTHER, "/ui/schedules")
    );
    let schedule = app.get("/schedules/nightly", &app.admin()).await;
    assert_eq!(schedule.payload()["schedule"]["paused"], true);
    alice.get("/ui/schedules").await.assert_shows("Resume");
    alice.form("/ui/schedules/nightly/resume", &[]).await;
    let schedule = app.get("/schedules/nightly", &app.admin()).await;
    assert_eq!(schedule.payload()["schedule"]["paused"], false);
    assert_eq!(
        alice.form("/ui/schedules/none/pause", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_workflow_is_drawn_in_dependency_order_and_a_writer_cancels_it() {
    let app = spawn_app().await;
    let body = json!({
        "name": "etl",
        "tasks": [
            { "key": "load", "task_type": "load", "depends_on": ["transform"] },
            { "key": "transform", "task_type": "transform", "depends_on": ["extract"], "on_dependency_failure": "run_anyway" },
            { "key": "extract", "task_type": "extract" }
        ]
    });
    let created = app.post("/workflows", &app.writer("alice"), body).await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.payload()["workflow_id"].as_i64().expect("id");

    let viewer = Browser::signed_in(&app, &app.token("viewer", &[Permission::Read], None)).await;
    let list = viewer.get("/ui/workflows").await;
    list.assert_shows(&format!(r#"data-workflow="{id}""#));
    list.assert_shows("3 pending");
    let page = viewer.get(&format!("/ui/workflows/{id}")).await;
    let at = |key: &str| {
        page.body
            .find(&format!(r#"data-key="{key}""#))
            .unwrap_or_else(|| panic!("{key} is drawn"))
    };
    assert!(
        at("extract") < at("transform") && at("transform") < at("load"),
        "in dependency order"
    );
    page.assert_shows("pending (waiting)");
    page.assert_shows("it runs anyway");
    assert!(!page.body.contains("/cancel"), "a reader is shown no action");
    let cancel = format!("/ui/workflows/{id}/cancel");
    assert_eq!(viewer.form(&cancel, &[]).await.status, StatusCode::FORBIDDEN);

    let alice = Browser::signed_in(&app, &app.writer("alice")).await;
    let done = alice.form(&cancel, &[]).await;
    assert_eq!(
        (done.status, done.location()),
        (StatusCode::SEE_OTHER, format!("/ui/workflows/{id}").as_str())
    );
    let workflow = app.get(&format!("/workflows/{id}"), &app.admin()).await;
    assert_eq!(workflow.payload()["workflow"]["state"], "cancelled");
    alice
        .get(&format!("/ui/workflows/{id}"))
        .await
        .assert_shows(">cancelled<");
}
