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
    use std::time::Duration;

    /// CPU time of the calling thread, from the scheduler's own count
    /// (`/proc/thread-self/schedstat`, in ns), not the ticks `sample` reads.
    fn thread_cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
        let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
        Duration::from_nanos(ns.expect("run time in ns"))
    }

    /// Keeps this thread on the CPU until it has used `cpu` of it.
    fn spin(cpu: Duration) {
        let until = thread_cpu() + cpu;
        let mut n = 0_u64;
        while thread_cpu() < until {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    #[test]
    fn the_cpu_figure_is_the_work_done_since_the_previous_sample() {
        let stats = ProcessStats::default();
        let started = Instant::now();
        let used = thread_cpu();
        spin(Duration::from_millis(300));
        let busy = stats.sample().cpu_percent.expect("a CPU figure");
        let wall = started.elapsed().as_secs_f64();
        let expected = (thread_cpu() - used).as_secs_f64() / wall * 100.0;
        // Ticks are 10 ms: a few of them either way.
        let slack = 0.03 / wall * 100.0;
        assert!(
            (busy - expected).abs() <= slack,
            "busy: {busy}, expected {expected} ± {slack}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let idle = stats.sample().cpu_percent.expect("a CPU figure");
        assert!(idle < 15.0, "idle since the busy sample: {idle}");
    }

    #[test]
    fn memory_and_threads_follow_what_the_process_holds() {
        let stats = ProcessStats::default();
        let before = stats.sample();
        let mut held = vec![0_u8; 64 * 1024 * 1024];
        // Written to, so that every page is resident.
        for page in held.chunks_mut(4096) {
            page[0] = 1;
        }
        let gate = std::sync::Arc::new(std::sync::Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    gate.wait();
                })
            })
            .collect();
        let after = stats.sample();
        let listed = std::fs::read_dir("/proc/self/task").expect("/proc").count() as u64;
        gate.wait();
        for thread in threads {
            thread.join().expect("join");
        }
        let grew = after.memory_mb.expect("memory") - before.memory_mb.expect("memory");
        assert!((60.0..120.0).contains(&grew), "64 MiB written, grew by {grew} MB");
        assert_eq!(std::hint::black_box(&held)[4096], 1);
        let counted = after.num_threads.expect("threads");
        assert!(
            counted >= before.num_threads.expect("threads") + 4 && counted == listed,
            "{counted} threads, {listed} in /proc/self/task"
        );
    }
}
