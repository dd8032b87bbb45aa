//! The release server as a child process on a fresh database, with what
//! the figures need of it: tokens, its CPU and memory, its request counters.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_domain::{DropletId, Permission};
use orchestrator_server::auth::{JwtKeys, TokenRequest};
use orchestrator_testkit::pg::TestDatabase;

const SECRET: &str = "bench-http-secret-7c41e9a0d35b28f6-long-enough";

/// The server, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub database: TestDatabase,
    keys: JwtKeys,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `orchestrator` binary: `ORCHESTRATOR_BIN`, else the one built next to this one.
fn binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(path) = std::env::var("ORCHESTRATOR_BIN") {
        return Ok(path.into());
    }
    let sibling = std::env::current_exe()?.with_file_name("orchestrator");
    anyhow::ensure!(
        sibling.exists(),
        "{} is missing: build it (make bench-http does) or set ORCHESTRATOR_BIN",
        sibling.display()
    );
    Ok(sibling)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts the server on a fresh database and waits until it answers.
    pub async fn start(workers: usize, pool: usize) -> anyhow::Result<Server> {
        let database = TestDatabase::create().await;
        let port = free_port()?;
        let child = Command::new(binary()?)
            .arg("serve")
            .env("DATABASE_URL", &database.url)
            .env("DATABASE_POOL_SIZE", pool.to_string())
            .env("JWT_SECRET_KEY", SECRET)
            .env("ENVIRONMENT", "production")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("WORKERS", workers.to_string())
            .env("LOG_LEVEL", "warn")
            // A mesh's droplets and loaders are few callers making many requests.
            .env("RATE_LIMIT_PER_MINUTE", "100000000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            database,
            keys: JwtKeys::hs256(SECRET.as_bytes()),
        };
        server.wait_until_up().await?;
        Ok(server)
    }

    async fn wait_until_up(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(format!("{}/health", self.url)).send().await.is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub fn token(&self, subject: &str, permission: Permission, droplet: Option<DropletId>) -> String {
        self.keys
            .issue(&TokenRequest {
                subject: subject.into(),
                permissions: vec![permission, Permission::Read],
                droplet_id: droplet,
                steward: None,
                ttl: Duration::from_secs(3600),
            })
            .expect("an HS256 token can always be signed")
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Resident memory now and at its peak, in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }

    /// The server's Prometheus text.
    async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.url))
            .await?
            .text()
            .await?)
    }

    /// The server's counters now, from one scrape of `/metrics`.
    async fn scrape(&self) -> anyhow::Result<Scrape> {
        Ok(Scrape::of(&self.metrics().await?))
    }
}

/// What a scrape of the server's Prometheus text tells the benchmark.
#[derive(Default)]
struct Scrape {
    /// Requests served, and how many of them answered 4xx or 5xx.
    requests: f64,
    errors: f64,
    /// Per route: seconds spent serving it and requests served (the sum
    /// and count of the request-duration histogram).
    routes: HashMap<String, (f64, f64)>,
}

impl Scrape {
    fn of(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            if series.starts_with("orchestrator_http_requests_total{") {
                scrape.requests += value;
                if series.contains("status=\"4") || series.contains("status=\"5") {
                    scrape.errors += value;
                }
            } else if let Some(route) = histogram_route(series, "_sum") {
                scrape.routes.entry(route.to_owned()).or_default().0 = value;
            } else if let Some(route) = histogram_route(series, "_count") {
                scrape.routes.entry(route.to_owned()).or_default().1 = value;
            }
        }
        scrape
    }
}

/// The route of a request-duration series with `suffix` (`_sum`, `_count`).
fn histogram_route<'a>(series: &'a str, suffix: &str) -> Option<&'a str> {
    series
        .strip_prefix("orchestrator_http_request_duration_seconds")?
        .strip_prefix(suffix)?
        .strip_prefix("{route=\"")?
        .strip_suffix("\"}")
}

/// What the server spent over a stretch of load.
pub struct Meter {
    started: Instant,
    cpu: f64,
    at_start: Scrape,
}

impl Meter {
    pub async fn start(server: &Server) -> anyhow::Result<Meter> {
        Ok(Meter {
            started: Instant::now(),
            cpu: server.cpu_seconds(),
            at_start: server.scrape().await?,
        })
    }

    /// Two lines: `HTTP 12345 req/s, 0 errors; server CPU 187% of a core,
    /// RSS 45 MiB (peak 60 MiB)`, then the server's own mean time per
    /// request of each busy route, such as `/tasks 3.10 ms (12000)`: what
    /// the server took, apart from the network and the client.
    pub async fn report(&self, server: &Server) -> anyhow::Result<String> {
        let seconds = self.started.elapsed().as_secs_f64();
        let cpu = (server.cpu_seconds() - self.cpu) / seconds * 100.0;
        let now = server.scrape().await?;
        // The scrape that ends the stretch is not part of the load.
        let served = now.requests - self.at_start.requests - 1.0;
        let (rss, peak) = server.memory_mib();
        Ok(format!(
            "HTTP {:.0} req/s, {:.0} errors; server CPU {cpu:.0}% of a core, RSS {rss:.0} MiB (peak {peak:.0} MiB)\n    {}",
            served / seconds,
            now.errors - self.at_start.errors,
            self.server_times(&now)
        ))
    }

    fn server_times(&self, now: &Scrape) -> String {
        let mut busy: Vec<(&String, f64, f64)> = now
            .routes
            .iter()
            .filter_map(|(route, (sum, count))| {
                let (sum0, count0) = self.at_start.routes.get(route).copied().unwrap_or_default();
                let served = count - count0;
                (served >= 100.0).then(|| (route, (sum - sum0) / served * 1e3, served))
            })
            .collect();
        busy.sort_by(|a, b| b.2.total_cmp(&a.2));
        let parts: Vec<String> = busy
            .iter()
            .map(|(route, ms, n)| format!("{route} {ms:.2} ms ({n:.0})"))
            .collect();
        format!("server time per request: {}", parts.join(", "))
    }
}
