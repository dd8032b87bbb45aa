//! Per-caller rate limits (GCRA, by `governor`): a caller past its quota
//! gets 429 with `Retry-After`. Probes are never limited, and behind a
//! trusted proxy an anonymous caller is its forwarded address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;

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
        && !is_probe(req.request())
        && let Some(limit) = req.app_data::<web::Data<RequestLimit>>()
        && let Err(refused) = limit
            .limit
            .check(&request_key(req.request(), &limit.trusted).await)
    {
        let response = actix_web::ResponseError::error_response(&refused);
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// What load balancers and monitors call: never refused, so that a flood of
/// other requests from behind the same proxy cannot take the orchestrator
/// out of rotation. Each answers from memory or one cheap read.
const PROBES: [&str; 4] = ["/health", "/readyz", "/v1/metadata", "/metrics"];

fn is_probe(req: &HttpRequest) -> bool {
    req.method() == actix_web::http::Method::GET && PROBES.contains(&req.path())
}

/// The standard limit and the proxies whose forwarded address is believed,
/// as app data for the middleware.
#[derive(Debug)]
pub struct RequestLimit {
    pub limit: PerCallerLimit,
    pub trusted: TrustedProxies,
}

async fn request_key(req: &HttpRequest, trusted: &TrustedProxies) -> String {
    let caller = if req.headers().contains_key(header::AUTHORIZATION) {
        crate::auth::authenticate(req).await.ok()
    } else {
        None
    };
    match caller {
        Some(Authenticated(caller)) => format!("caller:{}", caller.subject),
        None => match client_address(req, trusted) {
            Some(address) => format!("address:{address}"),
            None => "address:unknown".to_owned(),
        },
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy;
/// then the last address of `X-Forwarded-For` that is not a trusted proxy
/// itself (the ones before it are the client's word and may be forged).
fn client_address(req: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !trusted.contains(*a))
            .unwrap_or(peer),
    )
}

/// `TRUSTED_PROXIES`: addresses and networks (`10.0.0.0/8`, `::1`), comma
/// separated, of the proxies in front of the orchestrator. Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0
            .iter()
            .any(|(network, bits)| within(address, *network, *bits))
    }
}

fn within(address: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (address, network, width) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(v4) => return within(IpAddr::V4(v4), network, bits),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (address >> shift) == (network >> shift)
}

impl FromStr for TrustedProxies {
    type Err = String;
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (address, bits) = entry.split_once('/').unwrap_or((entry, ""));
                let address: IpAddr = address
                    .parse()
                    .map_err(|_| format!("{entry:?} is not an IP address or network"))?;
                let width = if address.is_ipv4() { 32 } else { 128 };
                let bits = if bits.is_empty() {
                    width
                } else {
                    bits.parse::<u8>()
                        .ok()
                        .filter(|b| *b <= width)
                        .ok_or_else(|| format!("{entry:?} has a prefix length beyond {width}"))?
                };
                Ok((address, bits))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(TrustedProxies)
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

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.7, ::1, fd00::/8".parse().expect("valid");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("192.168.1.7")));
        assert!(!trusted.contains(ip("192.168.1.8")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(trusted.contains(ip("::ffff:10.1.1.1")), "v4 mapped into v6");
        assert!(!trusted.contains(ip("11.0.0.1")));
        let everything: TrustedProxies = "0.0.0.0/0".parse().expect("valid");
        assert!(everything.contains(ip("203.0.113.9")));
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }
}
