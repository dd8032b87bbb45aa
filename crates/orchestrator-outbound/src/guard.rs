//! Name resolution that keeps the endpoint policy: a droplet's host name is
//! judged by every address it resolves to, each time it is called, so that
//! a name cannot be pointed at the orchestrator's host after it was
//! registered.

use std::error::Error as StdError;
use std::net::SocketAddr;

use orchestrator_domain::EndpointPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves with the system's resolver, then refuses a name any of whose
/// addresses the policy refuses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardedResolver {
    policy: EndpointPolicy,
}

impl GuardedResolver {
    pub(crate) fn new(policy: EndpointPolicy) -> Self {
        GuardedResolver { policy }
    }
}

/// A name whose address the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RefusedAddress(String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(why) = addrs
                .iter()
                .find_map(|addr| policy.address_refusal(&host, addr.ip()))
            {
                return Err(Box::new(RefusedAddress(why)) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether the call failed because the policy refused the address.
pub(crate) fn is_refusal(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<RefusedAddress>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// What went wrong with a call, in words: the refusal when the policy
/// refused the address, else the error and its causes.
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return format!("refused: {refused}");
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.dedup();
    causes.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[tokio::test]
    async fn a_name_for_this_host_is_refused_when_it_is_resolved() {
        let resolve = |policy| async move {
            let name = Name::from_str("localhost").expect("name");
            GuardedResolver::new(policy).resolve(name).await
        };
        let refused = resolve(EndpointPolicy::RefusePrivate)
            .await
            .err()
            .expect("refused");
        assert!(
            refused.to_string().starts_with("localhost resolves to "),
            "{refused}"
        );
        let allowed: Vec<SocketAddr> = resolve(EndpointPolicy::AllowPrivate)
            .await
            .expect("allowed")
            .collect();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");
    }
}
