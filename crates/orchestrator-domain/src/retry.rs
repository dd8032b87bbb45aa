//! How long a failed task waits before it is routed again.
//!
//! Exponential backoff with "equal jitter": before retry number `n` (0 for
//! the first retry) the task waits
//!
//! ```text
//! delay(n) = min(max, base · 2ⁿ) · (1 + r) / 2      with r uniform in [0, 1)
//! ```
//!
//! that is between half and all of the capped exponential delay. The jitter
//! spreads retries of tasks that failed together (a droplet dying with many
//! tasks) so that they do not all come back at the same instant.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry_count` (0-based), for a jitter sample `r` in `[0, 1)`.
    pub fn delay(&self, retry_count: u32, r: f64) -> Duration {
        let exponential = self.base.saturating_mul(2u32.saturating_pow(retry_count.min(31)));
        let capped = exponential.min(self.max);
        capped.mul_f64((1.0 + r.clamp(0.0, 1.0)) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_half_to_full_jitter() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        assert_eq!(policy.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(policy.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(2, 1.0), Duration::from_secs(4));
        assert_eq!(policy.delay(10, 1.0), Duration::from_secs(10), "capped");
        assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(5), "no overflow");
        for r in [0.0, 0.3, 0.99] {
            let d = policy.delay(3, r);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }
}
