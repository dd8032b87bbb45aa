//! Per-caller rate limits (GCRA, by `governor`): a caller past its quota
//! gets 429 with `Retry-After`.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::ApiError;

/// At most `per_minute` requests a minute for each key, spread evenly:
/// a caller may burst its whole minute's quota, then one request every
/// `60 / per_minute` seconds.
pub struct PerCallerLimit {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    per_minute: u32,
}

impl std::fmt::Debug for PerCallerLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerCallerLimit")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

impl PerCallerLimit {
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        PerCallerLimit {
            limiter: RateLimiter::hashmap(Quota::per_minute(n)),
            per_minute: n.get(),
        }
    }

    /// Counts one request of `key`, or says how long it must wait.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        match self.limiter.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::RateLimited {
                    retry_after: wait.as_secs() + 1,
                    limit: self.per_minute,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_past_its_quota_waits_and_others_do_not() {
        let limit = PerCallerLimit::per_minute(2);
        assert!(limit.check("a").is_ok() && limit.check("a").is_ok());
        match limit.check("a") {
            Err(ApiError::RateLimited {
                retry_after,
                limit: 2,
            }) => assert!((1..=31).contains(&retry_after)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(limit.check("b").is_ok());
    }
}
