//! `make bench-http`: the release server on PostgreSQL, driven over HTTP as a
//! mesh drives it. Prints figures, asserts nothing.
//!
//! - H1: burn-down. Droplets on the worker runtime (a third each by pull,
//!   push and `/ws/tasks`) run no-op tasks while a loader submits
//!   `BENCH_HTTP_TASKS` (default 20,000) through `POST /tasks` from 64
//!   concurrent clients; prints tasks/s end to end and the latencies.
//! - H2: the same droplets, tasks submitted at 200/s and at 500/s for
//!   `BENCH_HTTP_SECONDS` (default 10); latencies from each task's intended
//!   send time, so that a slow server cannot hide its delay.
//! - H3: `POST /tasks` alone at saturation (no droplets), 64 connections.
//! - H3b: `POST /tasks/batch` of 100 tasks alone at saturation, 8 connections.
//! - H4: `GET /health` alone at saturation, 64 connections.
//!
//! `BENCH_ONLY=peer` runs the workload of `make bench-peers` instead and
//! prints one JSON line.
//!
//! Each prints the server's HTTP request rate and error count (from its own
//! counters), its CPU and its memory. Each runs on a fresh server and database.

mod lifecycle;
mod saturate;

use std::sync::Arc;

use orchestrator_bench::{env_or, latency, server};
use orchestrator_domain::Permission;
use serde_json::json;

use crate::lifecycle::Fleet;
use crate::server::Server;

/// Droplets of the lifecycle workloads and the slots of each.
const DROPLETS: i64 = 12;
const SLOTS: usize = 16;
const CONNECTIONS: usize = 64;
/// Tasks in each request of H3b, and its connections.
const BATCH: usize = 100;
const BATCH_CONNECTIONS: usize = 8;

struct Config {
    workers: usize,
    pool: usize,
    tasks: usize,
    seconds: u32,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let config = Config {
        workers: env_or("BENCH_HTTP_WORKERS", 2),
        pool: env_or("BENCH_HTTP_POOL", 20),
        tasks: env_or("BENCH_HTTP_TASKS", 20_000),
        seconds: env_or("BENCH_HTTP_SECONDS", 10),
    };
    let only = std::env::var("BENCH_ONLY").ok();
    let runs = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if only.as_deref() == Some("peer") {
        // For make bench-peers: the peers' workload, one JSON line.
        let server = Server::start(config.workers, config.pool).await?;
        let jobs = env_or("PEER_JOBS", 10_000);
        let concurrency = env_or("PEER_CONCURRENCY", 32);
        let (rate, seconds) = (env_or("PEER_RATE", 200), env_or("PEER_SECONDS", 10));
        return lifecycle::peer_workload(&server, jobs, concurrency, rate, seconds).await;
    }
    println!(
        "orchestrator over HTTP on PostgreSQL: release server, {} HTTP workers, pool {}; {DROPLETS} droplets × {SLOTS} slots (pull, push, feed)",
        config.workers, config.pool
    );
    if runs("h1") {
        println!("H1: burn-down through POST /tasks");
        let server = Server::start(config.workers, config.pool).await?;
        let fleet = Fleet::start(&server, DROPLETS, SLOTS).await?;
        lifecycle::burn_down(&server, config.tasks, CONNECTIONS).await?;
        fleet.stop();
    }
    if runs("h2") {
        println!("H2: fixed arrival rate");
        for rate in [200, 500] {
            let server = Server::start(config.workers, config.pool).await?;
            let fleet = Fleet::start(&server, DROPLETS, SLOTS).await?;
            lifecycle::fixed_rate(&server, rate, config.seconds).await?;
            fleet.stop();
        }
    }
    let seconds = u64::from(config.seconds);
    if runs("h3") {
        println!("H3: POST /tasks at saturation");
        let server = Server::start(config.workers, config.pool).await?;
        let body = json!({ "task_type": "bench", "title": "t", "required_capability": "nobody" });
        let target = saturate::Target {
            name: "POST /tasks",
            method: reqwest::Method::POST,
            path: "/tasks",
            token: Some(server.token("loader", Permission::Write, None)),
            body: Some(Arc::new(serde_json::to_vec(&body)?)),
            tasks_per_request: 1,
        };
        saturate::run(&server, target, CONNECTIONS, seconds).await?;
        println!("H3b: POST /tasks/batch of {BATCH} tasks at saturation");
        let server = Server::start(config.workers, config.pool).await?;
        let batch = json!({ "tasks": vec![body; BATCH] });
        let target = saturate::Target {
            name: "POST /tasks/batch",
            method: reqwest::Method::POST,
            path: "/tasks/batch",
            token: Some(server.token("loader", Permission::Write, None)),
            body: Some(Arc::new(serde_json::to_vec(&batch)?)),
            tasks_per_request: BATCH,
        };
        saturate::run(&server, target, BATCH_CONNECTIONS, seconds).await?;
    }
    if runs("h4") {
        println!("H4: GET /health at saturation");
        let server = Server::start(config.workers, config.pool).await?;
        let target = saturate::Target {
            name: "GET /health",
            method: reqwest::Method::GET,
            path: "/health",
            token: None,
            body: None,
            tasks_per_request: 0,
        };
        saturate::run(&server, target, CONNECTIONS, seconds).await?;
    }
    Ok(())
}
