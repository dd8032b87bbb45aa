//! W5: heartbeats. 1,000 droplets each send one heartbeat a second through
//! the use-case layer on PostgreSQL; prints the heartbeat latency, the
//! database's commits per second and the process's CPU.

use std::time::Duration;

use orchestrator_app::DropletService;
use orchestrator_domain::{HeartbeatReport, Permission, RegistrationDraft};
use tokio_postgres::NoTls;

const WARM_UP: Duration = Duration::from_secs(15);

/// Commits of the benchmark's database so far.
async fn commits(url: &str, name: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

/// CPU seconds this process has used (user + system), from `/proc`.
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub async fn w5(droplets: i64, seconds: u64) -> anyhow::Result<()> {
    let (database, ports) = crate::pg_ports().await?;
    let service = DropletService::new(ports);
    for id in 1..=droplets {
        let draft = RegistrationDraft {
            droplet_id: id,
            name: format!("heartbeat {id}"),
            // Never called: the benchmark's droplets pull.
            endpoint: format!("http://droplet-{id}.bench:9"),
            capabilities: vec!["bench".into()],
            ..RegistrationDraft::default()
        };
        service
            .register(
                &crate::caller(format!("droplet-{id}"), Permission::Write, Some(id)),
                draft,
            )
            .await?;
    }
    let name = database.url.rsplit('/').next().unwrap_or_default().to_owned();
    // Commits and CPU are measured while the load runs, after a warm-up:
    // registering and each droplet's first heartbeat cost a write, and
    // PostgreSQL publishes the counts of a connection gone idle only after
    // ten seconds (a busy one's within a second).
    let window = Duration::from_secs(seconds.saturating_sub(WARM_UP.as_secs() + 1).max(1));
    let meter = tokio::spawn({
        let (url, name) = (database.url.clone(), name.clone());
        async move {
            tokio::time::sleep(WARM_UP).await;
            let (before, cpu_before) = (commits(&url, &name).await?, cpu_seconds());
            tokio::time::sleep(window).await;
            let after = commits(&url, &name).await?;
            let cpu = cpu_seconds().zip(cpu_before).map_or(f64::NAN, |(after, before)| {
                (after - before) / window.as_secs_f64() * 100.0
            });
            anyhow::Ok(((after - before) as f64 / window.as_secs_f64(), cpu))
        }
    });
    let mut senders = Vec::new();
    for id in 1..=droplets {
        let service = service.clone();
        let me = crate::caller(format!("droplet-{id}"), Permission::Write, Some(id));
        // Spread over the second, as droplets started at different times are.
        let offset = Duration::from_millis(
            u64::try_from(id).unwrap_or(0) * 1000 / u64::try_from(droplets).unwrap_or(1),
        );
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let start = tokio::time::Instant::now() + offset;
            for beat in 0..seconds {
                let intended = start + Duration::from_secs(beat);
                tokio::time::sleep_until(intended).await;
                if service
                    .heartbeat(&me, id, HeartbeatReport::default())
                    .await
                    .is_ok()
                {
                    latencies.push(intended.elapsed().as_secs_f64() * 1e3);
                }
            }
            latencies
        }));
    }
    let mut ms = Vec::new();
    for sender in senders {
        ms.extend(sender.await?);
    }
    let (commits_per_second, cpu) = meter.await??;
    ms.sort_by(f64::total_cmp);
    println!(
        "  {droplets} droplets × 1 heartbeat/s for {seconds} s ({} heartbeats):\n    heartbeat latency {}\n    database commits {commits_per_second:.0}/s; orchestrator CPU {cpu:.0}% of one core (over {} s after a {} s warm-up)",
        ms.len(),
        crate::summary(&ms),
        window.as_secs(),
        WARM_UP.as_secs()
    );
    Ok(())
}
