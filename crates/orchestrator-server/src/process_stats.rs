//! This process's CPU, memory and threads for `/state`, read from `/proc`
//! (Linux). Elsewhere the figures are reported as absent.

use std::sync::Mutex;
use std::time::Instant;

/// Linux reports CPU times in `/proc` in these ticks per second (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// CPU used since the previous sample (or since start), as a percentage
    /// of one core: two busy cores read 200.
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub uptime_seconds: u64,
    pub num_threads: Option<u64>,
}

#[derive(Debug)]
pub struct ProcessStats {
    started: Instant,
    /// The previous sample: when, and the CPU seconds used by then.
    previous: Mutex<(Instant, f64)>,
}

impl Default for ProcessStats {
    fn default() -> Self {
        let now = Instant::now();
        ProcessStats {
            started: now,
            previous: Mutex::new((now, read_cpu_seconds().unwrap_or(0.0))),
        }
    }
}

impl ProcessStats {
    pub fn sample(&self) -> Sample {
        let now = Instant::now();
        let cpu_seconds = read_cpu_seconds();
        let cpu_percent = cpu_seconds.map(|cpu| {
            let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
            let (then, cpu_then) = *previous;
            *previous = (now, cpu);
            let wall = now.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                ((cpu - cpu_then) / wall * 1000.0).round() / 10.0
            } else {
                0.0
            }
        });
        Sample {
            cpu_percent,
            memory_mb: read_status_kb("VmRSS:").map(|kb| (kb / 1024.0 * 10.0).round() / 10.0),
            uptime_seconds: self.started.elapsed().as_secs(),
            num_threads: read_status_kb("Threads:").map(|n| n as u64),
        }
    }
}

/// User plus system CPU seconds of this process (fields 14 and 15 of `/proc/self/stat`).
fn read_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// A numeric field of `/proc/self/status`, such as `VmRSS:` (in kB) or `Threads:`.
fn read_status_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_real_figures_on_linux() {
        let stats = ProcessStats::default();
        let busy: u64 = (0..2_000_000u64).map(|i| i % 7).sum();
        assert!(busy > 0);
        let sample = stats.sample();
        assert!(sample.memory_mb.is_some_and(|mb| mb > 1.0), "{sample:?}");
        assert!(sample.num_threads.is_some_and(|n| n >= 1), "{sample:?}");
        assert!(sample.cpu_percent.is_some_and(|p| p >= 0.0), "{sample:?}");
    }
}
