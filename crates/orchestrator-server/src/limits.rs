//! Per-caller rate limits (GCRA, by `governor`): a caller past its quota
//! gets 429 with `Retry-After`.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};

use crate::auth::Authenticated;
use crate::error::ApiError;

/// At most `per_minute` requests a minute for each key, spread evenly:
/// a caller may burst its whole minute's quota, then one request every
/// `60 / per_minute` seconds.
pub struct PerCallerLimit {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    per_minute: u32,
    checks: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PerCallerLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerCallerLimit")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

/// Checks between two sweeps of keys that have not been seen for a while.
const SWEEP_EVERY: u64 = 10_000;

impl PerCallerLimit {
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        PerCallerLimit {
            limiter: RateLimiter::hashmap(Quota::per_minute(n)),
            per_minute: n.get(),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one request of `key`, or says how long it must wait.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Keys whose quota has refilled carry no state worth keeping.
            self.limiter.retain_recent();
        }
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

/// `RATE_LIMIT_PER_MINUTE` on every endpoint but `/broadcast` (which has
/// its own limit): per caller when the request carries a valid token, else
/// per client address. A forged token cannot spend another caller's quota:
/// only a verified subject is used as the key.
pub async fn rate_limits(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.path() != "/broadcast"
        && let Some(limit) = req.app_data::<web::Data<RequestLimit>>()
        && let Err(refused) = limit.0.check(&request_key(req.request()).await)
    {
        let response = actix_web::ResponseError::error_response(&refused);
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// The standard limit, as app data for the middleware.
#[derive(Debug)]
pub struct RequestLimit(pub PerCallerLimit);

async fn request_key(req: &HttpRequest) -> String {
    let caller = if req.headers().contains_key(header::AUTHORIZATION) {
        crate::auth::authenticate(req).await.ok()
    } else {
        None
    };
    match caller {
        Some(Authenticated(caller)) => format!("caller:{}", caller.subject),
        None => format!(
            "address:{}",
            req.peer_addr()
                .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
        ),
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
