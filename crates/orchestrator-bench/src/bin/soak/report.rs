//! What the soak prints: the setup, a row a minute, and the summary (the
//! first row against the last, one line per figure; then the database, the
//! droplets and the loader at the end).

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::Config;
use crate::fleet::Fleet;
use crate::load::Tracker;
use crate::sample::{End, Row, TABLES};

/// How each table is headed in the rows.
const SHORT_NAMES: [&str; 5] = ["tasks", "history", "heartbeats", "droplets", "idem_keys"];

/// A start-to-end ratio within this distance of 1 reads as flat.
const FLAT: f64 = 0.10;

pub fn print_setup(config: &Config, server_env: &[(String, String)], log: &Path) {
    println!(
        "soak: release server ({} HTTP workers, pool {}) on PostgreSQL; {} droplets × {} slots by pull \
         (every {} ms), heartbeats every second, tasks of {}-{} ms at {}/s; {} droplets killed a minute; \
         {} s warm-up, then {} minutes",
        config.workers,
        config.pool,
        config.droplets,
        config.slots,
        config.poll.as_millis(),
        config.task_ms.0,
        config.task_ms.1,
        config.rate,
        config.restarts,
        config.warmup.as_secs(),
        config.minutes,
    );
    let env: Vec<String> = server_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("server environment: {}", env.join(" "));
    println!("server log: {}", log.display());
}

pub fn print_header() {
    println!(
        "rows/size per table (k = KiB, M = MiB); CPU, sent, done, fail (task_failed events), latencies, \
         req/s and errors since the row before; unfin = tasks unfinished a minute after their creation"
    );
    let tables: String = SHORT_NAMES.iter().map(|n| format!(" {n:>14}")).collect();
    println!(
        "{:>5} {:>7} {:>4}{tables} {:>6} {:>6} {:>5} {:>8} {:>8} {:>6} {:>6} {:>5} {:>5}",
        "time", "RSS MiB", "CPU%", "sent", "done", "fail", "p50 ms", "p99 ms", "unfin", "req/s", "4xx", "5xx"
    );
}

pub fn print_row(row: &Row) {
    let tables: String = row
        .tables
        .iter()
        .map(|t| format!(" {:>14}", format!("{}/{}", t.rows, short_size(t.bytes))))
        .collect();
    println!(
        "{:>5} {:>7.1} {:>4.0}{tables} {:>6} {:>6} {:>5} {:>8} {:>8} {:>6} {:>6.0} {:>5.0} {:>5.0}",
        clock(row.at.as_secs()),
        row.rss_mib,
        row.cpu_percent,
        row.submitted,
        row.completed,
        row.failed,
        ms(row.p50_ms),
        ms(row.p99_ms),
        row.unfinished,
        row.requests_per_s,
        row.client_errors,
        row.server_errors,
    );
}

fn clock(seconds: u64) -> String {
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn short_size(bytes: i64) -> String {
    let kib = bytes as f64 / 1024.0;
    if kib < 1024.0 {
        format!("{kib:.0}k")
    } else {
        format!("{:.1}M", kib / 1024.0)
    }
}

fn size(bytes: f64) -> String {
    let kib = bytes / 1024.0;
    if kib < 1024.0 {
        format!("{kib:.0} kB")
    } else {
        format!("{:.1} MiB", kib / 1024.0)
    }
}

/// `31.2 MiB → 35.0 MiB   ×1.12  grew`, with `show` writing each value.
fn verdict(name: &str, start: f64, end: f64, show: impl Fn(f64) -> String) -> String {
    let ratio = end / start;
    let (ratio, word) = if start > 0.0 {
        let word = if (ratio - 1.0).abs() <= FLAT {
            "flat"
        } else if ratio > 1.0 {
            "grew"
        } else {
            "shrank"
        };
        (format!("×{ratio:.2}"), word)
    } else if end > 0.0 {
        ("×-".to_owned(), "grew from 0")
    } else {
        ("×-".to_owned(), "flat")
    };
    let span = format!("{} → {}", show(start), show(end));
    format!("  {name:<28} {span:<28} {ratio:>7}  {word}")
}

pub fn print_summary(rows: &[Row], end: &End, fleet: &Fleet, tracker: &Tracker) {
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        print_verdicts(first, last);
    } else {
        println!("no row was taken");
    }
    print_end(end);
    print_clients(rows, fleet, tracker);
}

fn print_verdicts(first: &Row, last: &Row) {
    println!(
        "start ({}) → end ({}), ratio end ÷ start (within {:.0}% reads as flat):",
        clock(first.at.as_secs()),
        clock(last.at.as_secs()),
        FLAT * 100.0
    );
    let mib = |v: f64| format!("{v:.1} MiB");
    println!("{}", verdict("server RSS", first.rss_mib, last.rss_mib, mib));
    let cpu = |v: f64| format!("{v:.0}% of a core");
    println!(
        "{}",
        verdict("server CPU", first.cpu_percent, last.cpu_percent, cpu)
    );
    for (i, table) in TABLES.iter().enumerate() {
        let (a, b) = (first.tables[i], last.tables[i]);
        let rows = |v: f64| format!("{v:.0}");
        println!(
            "{}",
            verdict(&format!("{table} rows"), a.rows as f64, b.rows as f64, rows)
        );
        println!(
            "{}",
            verdict(&format!("{table} size"), a.bytes as f64, b.bytes as f64, size)
        );
    }
    let latency = |v: f64| format!("{v:.0} ms");
    for (name, a, b) in [
        ("p50 submit→completed", first.p50_ms, last.p50_ms),
        ("p99 submit→completed", first.p99_ms, last.p99_ms),
    ] {
        match (a, b) {
            (Some(a), Some(b)) => println!("{}", verdict(name, a, b, latency)),
            _ => println!("  {name:<28} no samples in one of the two windows"),
        }
    }
    let unfinished = |v: f64| format!("{v:.0}");
    let (a, b) = (first.unfinished as f64, last.unfinished as f64);
    println!("{}", verdict("unfinished after 1 min", a, b, unfinished));
}

fn print_end(end: &End) {
    let statuses: Vec<String> = end
        .statuses
        .iter()
        .map(|(status, n, age)| format!("{status} {n} (oldest {age:.0} s)"))
        .collect();
    println!(
        "tasks by status at the end (oldest: since its last change): {}",
        statuses.join(", ")
    );
    let vacuum: Vec<String> = end
        .vacuum
        .iter()
        .map(|(table, runs, dead, live)| format!("{table} {runs} ({dead} dead / {live} live)"))
        .collect();
    println!("autovacuum runs per table: {}", vacuum.join(", "));
}

fn print_clients(rows: &[Row], fleet: &Fleet, tracker: &Tracker) {
    let stats = &fleet.stats;
    println!(
        "droplets: {} restarts, {} heartbeats answered, {} refused or lost, {} worker runs ended in an error",
        stats.restarts.load(Ordering::Relaxed),
        stats.beats.load(Ordering::Relaxed),
        stats.beat_errors.load(Ordering::Relaxed),
        stats.worker_errors.load(Ordering::Relaxed),
    );
    // The rows' windows, and the one after the last row.
    let rest = tracker.take_window();
    let submitted: u64 = rows.iter().map(|r| r.submitted).sum::<u64>() + rest.submitted;
    let errors: u64 = rows.iter().map(|r| r.submit_errors).sum::<u64>() + rest.submit_errors;
    let (outstanding, oldest) = tracker.outstanding();
    println!(
        "loader: {submitted} tasks submitted, {errors} submissions failed; {} feed cuts; \
         {outstanding} tasks never seen completed (the oldest submitted {oldest:.0} s ago)",
        tracker.feed_cuts.load(Ordering::Relaxed),
    );
}
