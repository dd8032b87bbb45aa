//! The harness of the HTTP suite: starts the real `Application` on port 0
//! and talks to it with a real HTTP client. Every request it makes fails the
//! test on a 500: nothing a client sends may cause one.
//!
//! The suite runs on the store named by `ORCHESTRATOR_TEST_STORE`:
//! `postgres` (the default; each test gets a fresh database) or `memory`.
//! `make test` runs it on both.

pub mod fake_registry;

use std::net::TcpListener;
use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_server::{Application, JwtKeys, Settings, TokenRequest};
use orchestrator_testkit::pg::TestDatabase;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const SECRET: &str = "test-secret-that-is-long-enough-for-production";
/// Small enough that an oversized body is cheap to send.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A running orchestrator and a client for it.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub keys: JwtKeys,
    /// The database of this test, when the suite runs on PostgreSQL.
    pub database: Option<TestDatabase>,
    /// Set by a test that provokes 502, 503 or 504 answers; otherwise any
    /// 5xx fails the request. A 500 always does.
    server_errors_expected: std::sync::atomic::AtomicBool,
}

/// True when the suite runs on PostgreSQL (`ORCHESTRATOR_TEST_STORE`).
pub fn on_postgres() -> bool {
    match std::env::var("ORCHESTRATOR_TEST_STORE").as_deref() {
        Ok("memory") => false,
        Ok("postgres") | Err(_) => true,
        Ok(other) => panic!("ORCHESTRATOR_TEST_STORE={other:?}: expected postgres or memory"),
    }
}

/// An HTTP answer: status, headers and the JSON body (`Null` if none).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The payload of an envelope.
    pub fn payload(&self) -> &Value {
        &self.body["payload"]
    }

    /// The error code, from an envelope or a bare error body.
    pub fn error_code(&self) -> &str {
        let error = if self.body["payload"].is_object() {
            &self.body["payload"]["error"]
        } else {
            &self.body["error"]
        };
        error["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Starts an orchestrator whose periodic sweep is an hour away, so that a
/// test sees routing happen on events alone. `extra` overrides settings.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let database = if on_postgres() {
        Some(TestDatabase::create().await)
    } else {
        None
    };
    let mut vars: Vec<(&str, &str)> = Vec::new();
    if let Some(database) = &database {
        vars.push(("DATABASE_URL", &database.url));
    }
    vars.extend_from_slice(extra);
    let mut app = start(&vars).await;
    app.database = database;
    app
}

/// Starts another orchestrator on the PostgreSQL database at `url`, as a
/// replica sharing it with others.
pub async fn spawn_replica(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("DATABASE_URL", url)];
    vars.extend_from_slice(extra);
    start(&vars).await
}

async fn start(extra: &[(&str, &str)]) -> TestApp {
    let max_body = MAX_BODY_BYTES.to_string();
    let defaults = [
        ("ENVIRONMENT", "test"),
        ("JWT_SECRET_KEY", SECRET),
        ("ROUTER_INTERVAL", "3600"),
        ("WORKERS", "1"),
        ("LOG_LEVEL", "WARNING"),
        // The suite's droplets have no endpoint; the push test turns this on.
        ("ENABLE_PUSH_DELIVERY", "false"),
        // The suite's droplets listen on this host; the endpoint check has its own test.
        ("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true"),
        ("MAX_BODY_BYTES", max_body.as_str()),
        // The suite sends far more than a droplet would; the limit has its own test.
        ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ];
    let vars = defaults
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    let settings = Settings::from_vars(vars).unwrap_or_else(|e| panic!("test settings: {e:?}"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let app = Application::build(settings, listener)
        .await
        .expect("build the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        keys: JwtKeys::hs256(SECRET.as_bytes()),
        database: None,
        server_errors_expected: std::sync::atomic::AtomicBool::new(false),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

impl TestApp {
    /// Lets this test's requests be answered 502, 503 or 504 (an outage, an
    /// unreachable droplet) without failing.
    pub fn expect_server_errors(&self) {
        self.server_errors_expected
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn token(&self, subject: &str, permissions: &[Permission], droplet_id: Option<i64>) -> String {
        self.keys
            .issue(&TokenRequest {
                subject: subject.into(),
                permissions: permissions.to_vec(),
                droplet_id,
                steward: None,
                ttl: Duration::from_secs(600),
            })
            .expect("sign a token")
    }

    /// A token signed with the right key that expired a minute ago.
    pub fn expired_token(&self, subject: &str, permissions: &[Permission]) -> String {
        let now = chrono::Utc::now().timestamp();
        let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({ "sub": subject, "permissions": names, "iat": now - 120, "exp": now - 60 }),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    pub fn admin(&self) -> String {
        self.token("admin", &[Permission::Admin], None)
    }

    /// A token for droplet `id` acting for itself.
    pub fn droplet(&self, id: i64) -> String {
        self.token(&format!("droplet-{id}"), &[Permission::Write], Some(id))
    }

    pub fn writer(&self, subject: &str) -> String {
        self.token(subject, &[Permission::Write], None)
    }

    /// Sends a request with an optional bearer token and raw body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read the body");
        let promises_json = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("json"));
        let body = match serde_json::from_slice(&bytes) {
            _ if bytes.is_empty() => Value::Null,
            Ok(value) => value,
            Err(e) if promises_json => panic!("{method} {path}: the body is not the JSON it promised ({e})"),
            Err(_) => Value::Null,
        };
        assert_ne!(status, 500, "{method} {path} got a 500: {body}");
        let expected = self
            .server_errors_expected
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            status < 500 || expected,
            "{method} {path} got an unexpected {status}: {body}"
        );
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(
            Method::PUT,
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(
            Method::PATCH,
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    /// Registers droplet `id` with its own token.
    pub async fn register(&self, id: i64, capabilities: &[&str], capacity: u32) -> Reply {
        let body = json!({
            "droplet_id": id,
            "name": format!("droplet {id}"),
            "endpoint": format!("http://127.0.0.1:9/{id}"),
            "capabilities": capabilities,
            "max_concurrent_tasks": capacity,
        });
        let reply = self.post("/droplets/register", &self.droplet(id), body).await;
        assert!(matches!(reply.status, 200 | 201), "register {id}: {reply:?}");
        reply
    }

    /// Creates a task as `alice` and returns its id.
    pub async fn create_task(&self, priority: i64, capability: Option<&str>) -> i64 {
        let mut body =
            json!({ "task_type": "verify", "title": format!("priority {priority}"), "priority": priority });
        if let Some(capability) = capability {
            body["required_capability"] = json!(capability);
        }
        let reply = self.post("/tasks", &self.writer("alice"), body).await;
        assert_eq!(reply.status, 201, "create: {reply:?}");
        reply.payload()["task_id"].as_i64().expect("task_id")
    }

    /// The task as `GET /tasks/{id}` shows it.
    pub async fn task(&self, id: i64) -> Value {
        let reply = self.get(&format!("/tasks/{id}"), &self.admin()).await;
        assert_eq!(reply.status, 200, "get task {id}: {reply:?}");
        reply.payload()["task"].clone()
    }

    /// Polls until the task has `status`, failing after `within`.
    pub async fn wait_for_status(&self, id: i64, status: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let task = self.task(id).await;
            if task["status"] == status {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} not {status} within {within:?}: {task}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A droplet (or anyone with `token`) sets a task's status.
    pub async fn set_status(&self, id: i64, token: &str, status: &str) -> Reply {
        self.patch(&format!("/tasks/{id}"), token, json!({ "status": status }))
            .await
    }
}

impl TestApp {
    /// The sum of the Prometheus series `name` whose labels include
    /// `labels`; 0 when there is none yet. The recorder is the process's,
    /// one test's own under nextest.
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let response = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("scrape /metrics");
        assert_eq!(response.status(), 200, "/metrics");
        let text = response.text().await.expect("the metrics text");
        text.lines()
            .filter(|line| {
                let series = line.split(' ').next().unwrap_or_default();
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Runs `wake`, which must wake the router (a task created, a droplet
    /// registered), and waits for a routing pass that began after the
    /// call to end: what the router could do with the state before the
    /// call is done when this returns, paused or not.
    pub async fn after_a_routing_pass<F: std::future::Future>(&self, wake: F) -> F::Output {
        let started = self
            .counter("orchestrator_routing_passes_started_total", &[])
            .await;
        let woken = wake.await;
        eventually(10, "a routing pass after the wake-up", || async {
            self.counter("orchestrator_routing_passes_total", &[]).await > started
        })
        .await;
        woken
    }

    /// Waits for a routing pass that began after every task created so far
    /// to end. It registers droplet `witness` with a capability of its own
    /// and one slot, and waits for a least urgent task needing it to be
    /// assigned: a pass places tasks most urgent and oldest first, so what
    /// it could place besides was placed by then.
    pub async fn await_routing_pass(&self, witness: i64) {
        self.register(witness, &["witness"], 1).await;
        let body = json!({ "task_type": "witness", "title": "witness", "priority": 10, "required_capability": "witness" });
        let reply = self.post("/tasks", &self.writer("witness"), body).await;
        assert_eq!(reply.status, 201, "create the witness: {reply:?}");
        let id = reply.payload()["task_id"].as_i64().expect("task_id");
        self.wait_for_status(id, "assigned", Duration::from_secs(5)).await;
    }
}

/// A WebSocket client of a feed.
pub type Feed = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl TestApp {
    /// Connects to `path` (with its query), failing the test if refused.
    pub async fn feed(&self, path: &str) -> Feed {
        self.try_feed(path)
            .await
            .unwrap_or_else(|e| panic!("connect {path}: {e}"))
    }

    pub async fn try_feed(&self, path: &str) -> Result<Feed, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}{path}", self.address.replacen("http://", "ws://", 1));
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(stream, _)| stream)
    }
}

/// Serves `routes` on a free local port with one worker, for as long as
/// the test's runtime lives, and gives its base URL: a fake droplet.
pub fn serve<F>(routes: F) -> String
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(routes.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
    tokio::spawn(server);
    url
}

/// Waits until connections to `address` are refused: the server stopped and
/// closed its listener. A server that hangs instead fails the test.
pub async fn wait_until_refused(address: &str, within: Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let give_up = tokio::time::Instant::now() + within;
    loop {
        match client.get(format!("{address}/health")).send().await {
            Err(err) if err.is_connect() => return,
            // Answered, or accepted and not served while the stop finishes.
            outcome => assert!(
                tokio::time::Instant::now() < give_up,
                "not stopped after {within:?}: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `probe` every 100 ms until it holds, failing the test after
/// `seconds` with `what`: for a state another process reaches in its own
/// time (a key fetched at start, a droplet made active by its heartbeats).
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !probe().await {
        assert!(tokio::time::Instant::now() < give_up, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next event frame of a feed as JSON, failing after `within`.
pub async fn next_event(feed: &mut Feed, within: Duration) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(within, feed.next())
            .await
            .expect("an event in time")
            .expect("the feed is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("events are JSON");
        }
    }
}
