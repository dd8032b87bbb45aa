//! W3: fan-out. The real server on PostgreSQL with 1,000 clients on
//! `/ws/tasks`; tasks submitted over HTTP at a fixed rate, each making one
//! `task_created` event. For every event: the time from its commit (the
//! task's `created_at`, stamped just before the insert commits) to the moment
//! the last of the clients received it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use orchestrator_domain::Permission;
use orchestrator_server::auth::{JwtKeys, TokenRequest};
use orchestrator_server::settings::Settings;
use orchestrator_server::startup::Application;
use orchestrator_testkit::pg::TestDatabase;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SECRET: &str = "a-benchmark-secret-that-is-long-enough";

/// What one client saw: task id and when it arrived.
type Seen = Vec<(i64, SystemTime)>;

fn token(keys: &JwtKeys, subject: &str, permission: Permission) -> anyhow::Result<String> {
    Ok(keys.issue(&TokenRequest {
        subject: subject.into(),
        permissions: vec![permission],
        droplet_id: None,
        steward: None,
        ttl: Duration::from_secs(3600),
    })?)
}

async fn start_server(database: &TestDatabase, clients: usize) -> anyhow::Result<String> {
    let max = clients.to_string();
    let vars = [
        ("DATABASE_URL", database.url.as_str()),
        ("JWT_SECRET_KEY", SECRET),
        ("ENVIRONMENT", "test"),
        ("LOG_LEVEL", "ERROR"),
        ("WORKERS", "2"),
        ("ENABLE_PUSH_DELIVERY", "false"),
        // Its droplets name endpoints on this host.
        ("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true"),
        ("WS_MAX_PER_DROPLET", max.as_str()),
        ("RATE_LIMIT_PER_MINUTE", "100000000"),
    ];
    let settings = Settings::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .map_err(|e| anyhow::anyhow!("settings: {e:?}"))?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let app = Application::build(settings, listener).await?;
    let address = format!("127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Ok(address)
}

/// The task id of a `task_created` frame: `{"event":…,"data":{"id":N,…`.
fn task_id(frame: &str) -> Option<i64> {
    let rest = &frame[frame.find("\"data\":{\"id\":")? + 13..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// When the task was stamped (just before its insert commits) and when the
/// committed event was published to the feeds (the frame's `timestamp`).
fn stamps(frame: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let time = |v: &serde_json::Value| v.as_str()?.parse().ok();
    Some((time(&value["data"]["created_at"])?, time(&value["timestamp"])?))
}

type Feed = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

type Stamps = HashMap<i64, (DateTime<Utc>, DateTime<Utc>)>;

/// Records what a client receives until the feed goes quiet for `idle`.
/// Client 0 also notes each event's stamps.
async fn client(mut feed: Feed, first: bool, idle: Duration) -> anyhow::Result<(Seen, Stamps)> {
    let (mut seen, mut commits) = (Vec::new(), HashMap::new());
    while let Ok(Some(Ok(message))) = tokio::time::timeout(idle, feed.next()).await {
        if let Message::Text(text) = message {
            let now = SystemTime::now();
            let Some(id) = task_id(text.as_str()) else {
                continue;
            };
            seen.push((id, now));
            if first && let Some(at) = stamps(text.as_str()) {
                commits.insert(id, at);
            }
        }
    }
    Ok((seen, commits))
}

pub async fn w3(clients: usize, rate: u32, seconds: u32) -> anyhow::Result<()> {
    let database = TestDatabase::create().await;
    let address = start_server(&database, clients).await?;
    let keys = JwtKeys::hs256(SECRET.as_bytes());
    let watcher = token(&keys, "dashboard", Permission::Read)?;
    let url = format!("ws://{address}/ws/tasks?token={watcher}");
    let idle = Duration::from_secs(3);
    let mut readers = Vec::with_capacity(clients);
    for n in 0..clients {
        // Connected one after another, so that all are in before the load starts.
        // The library's default 128 KiB read buffer is zeroed on every read:
        // a dashboard's frames are small, and the machine is shared.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (feed, _) = tokio_tungstenite::connect_async_with_config(url.clone(), Some(config), true).await?;
        readers.push(tokio::spawn(client(feed, n == 0, idle)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::new();
    let writer = token(&keys, "loader", Permission::Write)?;
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now();
    for n in 0..total {
        tokio::time::sleep_until(start + interval * n).await;
        let request = http
            .post(format!("http://{address}/tasks"))
            .bearer_auth(&writer)
            .json(&serde_json::json!({ "task_type": "fanout", "title": format!("event {n}") }));
        tokio::spawn(request.send());
    }
    let mut last: HashMap<i64, SystemTime> = HashMap::new();
    let mut commits = HashMap::new();
    let mut complete_clients = 0;
    for reader in readers {
        let (seen, first_commits) = reader.await??;
        if seen.len() as u32 >= total {
            complete_clients += 1;
        }
        commits.extend(first_commits);
        for (id, at) in seen {
            let entry = last.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
    type Pick = fn(&(DateTime<Utc>, DateTime<Utc>)) -> DateTime<Utc>;
    let latency = |pick: Pick| {
        let mut ms: Vec<f64> = commits
            .iter()
            .filter_map(|(id, stamps)| {
                let received: DateTime<Utc> = (*last.get(id)?).into();
                Some((received - pick(stamps)).num_microseconds()? as f64 / 1e3)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let published = latency(|s| s.1);
    let stamped = latency(|s| s.0);
    println!(
        "  {clients} clients, {rate} events/s for {seconds} s ({} events; {complete_clients} clients got every one):",
        published.len()
    );
    println!("    published→last client  {}", crate::summary(&published));
    println!("    stamped→last client    {}", crate::summary(&stamped));
    Ok(())
}
