//! One endpoint at saturation: `connections` clients, each sending its next
//! request as soon as the last is answered, for a fixed time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::latency::Latencies;
use crate::server::{Meter, Server};

/// One request to repeat: method, path, token and body.
#[derive(Clone)]
pub struct Target {
    pub name: &'static str,
    pub method: reqwest::Method,
    pub path: &'static str,
    pub token: Option<String>,
    pub body: Option<Arc<Vec<u8>>>,
    /// Tasks each request carries (0 when it carries none), for a rate in tasks/s.
    pub tasks_per_request: usize,
}

pub async fn run(server: &Server, target: Target, connections: usize, seconds: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = format!("{}{}", server.url, target.path);
    let meter = Meter::start(server).await?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (http, url, target) = (http.clone(), url.clone(), target.clone());
        clients.spawn(async move { client(&http, &url, &target, until).await });
    }
    let mut latencies = Latencies::default();
    let mut failed = 0_u64;
    while let Some(outcome) = clients.join_next().await {
        let (mine, errors) = outcome?;
        latencies.extend(mine);
        failed += errors;
    }
    let rate = latencies.len() as f64 / seconds as f64;
    let tasks = match target.tasks_per_request {
        0 | 1 => String::new(),
        n => format!(" ({:.0} tasks/s)", rate * n as f64),
    };
    println!(
        "  {} alone, {connections} connections, {seconds} s: {rate:.0} req/s answered 2xx{tasks}, {failed} failed\n    latency {}\n    {}",
        target.name,
        latencies.summary(),
        meter.report(server).await?
    );
    Ok(())
}

/// Requests until `until`; the latencies of the successes and the failure count.
async fn client(http: &reqwest::Client, url: &str, target: &Target, until: Instant) -> (Latencies, u64) {
    let mut latencies = Latencies::default();
    let mut failed = 0;
    while Instant::now() < until {
        let mut request = http.request(target.method.clone(), url);
        if let Some(token) = &target.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &target.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.as_ref().clone());
        }
        let sent = Instant::now();
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                // Read the body: the answer is not complete until it is.
                if response.bytes().await.is_ok() {
                    latencies.record(sent.elapsed());
                } else {
                    failed += 1;
                }
            }
            Ok(_) | Err(_) => failed += 1,
        }
    }
    (latencies, failed)
}
