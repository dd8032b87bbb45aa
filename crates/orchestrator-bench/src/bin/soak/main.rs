//! `make soak`: the release server on PostgreSQL under a steady, realistic
//! load for `SOAK_MINUTES` (default 10), to see whether anything grows that
//! should stay flat. Prints figures, asserts nothing: a human reads them.
//!
//! The load, all over HTTP:
//! - `SOAK_DROPLETS` (200) droplets on the worker runtime, `SOAK_SLOTS` (4)
//!   slots each, taking their work by pull (every `SOAK_POLL_MS`, 500) and
//!   heartbeating every second; each task sleeps 50 to 500 ms
//!   (`SOAK_TASK_MS_MIN`, `SOAK_TASK_MS_MAX`).
//! - `SOAK_RESTARTS` (10) random droplets a minute are killed, one at a
//!   time at even intervals: they stop heartbeating and abandon their tasks
//!   unreported, then come back 2 to 8 seconds later with a plain
//!   registration.
//! - A loader submits `SOAK_RATE` (50) tasks a second through `POST /tasks`;
//!   completions come from `/ws/tasks`.
//!
//! After `SOAK_WARMUP_SECONDS` (180: past the two minutes of retention
//! and one run of each cleanup, so that the first row is already the
//! steady state the last is compared with) it prints a row, then one a minute: the
//! server's RSS, the rows and size of each table, submit→completed p50 and
//! p99 of the tasks completed since the last row, and more (see
//! `report.rs`). At the end: the first row against the last, one line per
//! figure, then the server's warnings and errors (its log is kept in
//! `SOAK_SERVER_LOG`, default `soak-server.log` next to this binary).
//! Ctrl-C ends the run early with the same summary.
//!
//! The server gets short retention and recovery times (see [`SERVER_ENV`]);
//! each can be overridden by setting it in the environment. The database
//! is a fresh one on the server `DATABASE_URL` names (`scripts/soak` starts
//! a cluster of its own, with autovacuum on).

mod fleet;
mod load;
mod report;
mod sample;
mod serverlog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_bench::env_or;
use orchestrator_bench::server::{Options, Server};
use orchestrator_client::Client;
use orchestrator_domain::Permission;
use tokio::time::Instant;

use crate::fleet::Fleet;
use crate::load::Tracker;
use crate::sample::Sampler;

/// The server's settings for the soak: `(name, default)`, the value taken
/// from this process's environment when set there.
const SERVER_ENV: [(&str, &str); 13] = [
    // About two minutes, so that the tables can be seen to stay flat.
    ("TASK_RETENTION_DAYS", "0.0014"),
    ("TASK_RETENTION_INTERVAL", "30"),
    ("HEARTBEAT_SAMPLE_SECONDS", "60"),
    ("HEARTBEAT_RETENTION_DAYS", "0.0014"),
    ("HEARTBEAT_CLEANUP_INTERVAL", "30"),
    // The loader's client sends an Idempotency-Key with every task.
    ("IDEMPOTENCY_WINDOW_SECONDS", "120"),
    ("HEARTBEAT_TIMEOUT", "10"),
    ("HEARTBEAT_CHECK_INTERVAL", "5"),
    ("ASSIGNMENT_ACK_TIMEOUT", "10"),
    ("TASK_RUN_TIMEOUT", "60"),
    ("RATE_LIMIT_PER_MINUTE", "100000000"),
    // The droplets pull; pushes to their unused endpoints would only fail.
    ("ENABLE_PUSH_DELIVERY", "false"),
    ("LOG_LEVEL", "warn"),
];

/// The capability every droplet offers and every task requires.
pub const CAPABILITY: &str = "soak";

/// The knobs, from `SOAK_*` variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub minutes: u32,
    pub rate: u32,
    pub droplets: usize,
    pub slots: usize,
    pub restarts: usize,
    pub warmup: Duration,
    pub poll: Duration,
    pub task_ms: (u64, u64),
    pub workers: usize,
    pub pool: usize,
}

impl Config {
    fn from_env() -> Config {
        let task_min = env_or("SOAK_TASK_MS_MIN", 50);
        Config {
            minutes: env_or("SOAK_MINUTES", 10),
            rate: env_or("SOAK_RATE", 50).max(1),
            droplets: env_or("SOAK_DROPLETS", 200).max(1),
            slots: env_or("SOAK_SLOTS", 4).max(1),
            restarts: env_or("SOAK_RESTARTS", 10),
            warmup: Duration::from_secs(env_or("SOAK_WARMUP_SECONDS", 180)),
            poll: Duration::from_millis(env_or("SOAK_POLL_MS", 500)),
            task_ms: (task_min, env_or("SOAK_TASK_MS_MAX", 500).max(task_min)),
            workers: env_or("SOAK_WORKERS", 2),
            pool: env_or("SOAK_POOL", 20),
        }
    }
}

fn server_env() -> Vec<(String, String)> {
    SERVER_ENV
        .iter()
        .map(|(name, default)| {
            let value = std::env::var(name).unwrap_or_else(|_| (*default).to_owned());
            ((*name).to_owned(), value)
        })
        .collect()
}

/// `SOAK_SERVER_LOG`, else `soak-server.log` next to this binary.
fn log_path() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("SOAK_SERVER_LOG") {
        return Ok(path.into());
    }
    Ok(std::env::current_exe()?.with_file_name("soak-server.log"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env();
    let log = log_path()?;
    let options = Options {
        env: server_env(),
        log: Some(std::fs::File::create(&log)?),
    };
    let server = Server::start_with(config.workers, config.pool, options).await?;
    report::print_setup(&config, &server_env(), &log);
    let fleet = Fleet::start(&server, &config)?;
    server.wait_for_droplets(config.droplets).await?;
    let tracker = Arc::new(Tracker::default());
    let loader = Client::new(&server.url)?.with_token(server.token("soak-loader", Permission::Write, None));
    let watcher = tokio::spawn(load::watch(loader.clone(), tracker.clone()));
    let submitter = tokio::spawn(load::submit(loader, config.rate, tracker.clone()));
    let mut sampler = Sampler::connect(&server).await?;
    tokio::select! {
        done = run(&config, &server, &tracker, &mut sampler) => done?,
        _ = tokio::signal::ctrl_c() => println!("interrupted: the summary covers the rows so far"),
    }
    submitter.abort();
    watcher.abort();
    let end = sampler.finish().await?;
    report::print_summary(sampler.rows(), &end, &fleet, &tracker);
    serverlog::print_summary(&log);
    Ok(())
}

/// The warm-up, then a row a minute, each printed as it is taken.
async fn run(
    config: &Config,
    server: &Server,
    tracker: &Tracker,
    sampler: &mut Sampler,
) -> anyhow::Result<()> {
    let start = Instant::now() + config.warmup;
    tokio::time::sleep_until(start).await;
    report::print_header();
    report::print_row(sampler.take(server, tracker, Duration::ZERO).await?);
    for minute in 1..=config.minutes {
        let at = start + Duration::from_secs(60) * minute;
        tokio::time::sleep_until(at).await;
        report::print_row(sampler.take(server, tracker, at - start).await?);
    }
    Ok(())
}
