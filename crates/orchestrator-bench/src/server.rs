//! The release server as a child process on a fresh database, with what
//! the figures need of it: tokens, its CPU and memory, its request counters.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_client::{Client, DropletQuery};
use orchestrator_domain::{DropletId, Permission};
use orchestrator_server::auth::{JwtKeys, TokenRequest};
use orchestrator_testkit::pg::TestDatabase;

const SECRET: &str = "bench-http-secret-7c41e9a0d35b28f6-long-enough";

/// The server, killed when dropped.
#[derive(Debug)]
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

/// What [`Server::start_with`] adds to the defaults of [`Server::start`].
#[derive(Debug, Default)]
pub struct Options {
    /// More environment variables, set after the defaults (so over them).
    pub env: Vec<(String, String)>,
    /// Where the server's stderr (its log) goes; this process's when `None`.
    pub log: Option<std::fs::File>,
}

impl Server {
    /// Starts the server on a fresh database and waits until it answers.
    pub async fn start(workers: usize, pool: usize) -> anyhow::Result<Server> {
        Server::start_with(workers, pool, Options::default()).await
    }

    /// [`Server::start`] with more environment, or its log sent elsewhere.
    pub async fn start_with(workers: usize, pool: usize, options: Options) -> anyhow::Result<Server> {
        let database = TestDatabase::create().await;
        let port = free_port()?;
        let stderr = options.log.map_or_else(Stdio::inherit, Stdio::from);
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
            // The benchmarks' droplets listen on this host.
            .env("ALLOW_PRIVATE_DROPLET_ENDPOINTS", "true")
            .envs(options.env)
            .stdout(Stdio::null())
            .stderr(stderr)
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
                // A day: longer than any run (a soak may last hours).
                ttl: Duration::from_secs(86_400),
            })
            .expect("an HS256 token can always be signed")
    }

    /// Waits until at least `droplets` droplets are registered.
    pub async fn wait_for_droplets(&self, droplets: usize) -> anyhow::Result<()> {
        let admin = Client::new(&self.url)?.with_token(self.token("admin", Permission::Admin, None));
        for _ in 0..1200 {
            if admin.list_droplets(&DropletQuery::default()).await?.len() >= droplets {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the droplets did not all register")
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

    /// Requests served so far, and how many answered 4xx and 5xx.
    pub async fn request_counts(&self) -> anyhow::Result<RequestCounts> {
        Ok(self.scrape().await?.counts)
    }
}

/// Requests served, and how many of them answered 4xx and 5xx.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestCounts {
    pub requests: f64,
    pub client_errors: f64,
    pub server_errors: f64,
}

impl RequestCounts {
    pub fn errors(&self) -> f64 {
        self.client_errors + self.server_errors
    }
}

/// What a scrape of the server's Prometheus text tells the benchmark.
#[derive(Debug, Default)]
struct Scrape {
    counts: RequestCounts,
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
                scrape.counts.requests += value;
                if series.contains("status=\"4") {
                    scrape.counts.client_errors += value;
                } else if series.contains("status=\"5") {
                    scrape.counts.server_errors += value;
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
#[derive(Debug)]
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
        let served = now.counts.requests - self.at_start.counts.requests - 1.0;
        let (rss, peak) = server.memory_mib();
        Ok(format!(
            "HTTP {:.0} req/s, {:.0} errors; server CPU {cpu:.0}% of a core, RSS {rss:.0} MiB (peak {peak:.0} MiB)\n    {}",
            served / seconds,
            now.counts.errors() - self.at_start.counts.errors(),
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
