//! Latency samples and their p50, p99 and max.

use std::time::Duration;

#[derive(Debug, Default)]
pub struct Latencies {
    ms: Vec<f64>,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.ms.push(latency.as_secs_f64() * 1e3);
    }

    pub fn record_ms(&mut self, ms: f64) {
        self.ms.push(ms);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.ms.extend(other.ms);
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// p50, p99 and max in milliseconds; `None` without samples.
    pub fn percentiles(&mut self) -> (Option<f64>, Option<f64>, Option<f64>) {
        if self.ms.is_empty() {
            return (None, None, None);
        }
        self.ms.sort_by(f64::total_cmp);
        let last = self.ms.len() - 1;
        let at = |q: f64| self.ms[(last as f64 * q).round() as usize];
        (Some(at(0.50)), Some(at(0.99)), Some(self.ms[last]))
    }

    /// `p50 1.20 ms   p99 4.10 ms   max 9.80 ms`.
    pub fn summary(&mut self) -> String {
        if self.ms.is_empty() {
            return "no samples".into();
        }
        self.ms.sort_by(f64::total_cmp);
        let last = self.ms.len() - 1;
        let at = |q: f64| self.ms[(last as f64 * q).round() as usize];
        format!(
            "p50 {:8.2} ms   p99 {:8.2} ms   max {:8.2} ms",
            at(0.50),
            at(0.99),
            self.ms[last]
        )
    }
}
