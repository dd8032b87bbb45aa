//! The Registry's signing key: cached, fetched again on demand at most once
//! per refresh interval, and kept when the Registry fails.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::memory_ports;

use orchestrator_app::RegistrySync;
use orchestrator_ports::{MockRegistryClient, RegistryError, ServiceRegistration, SigningKey, SystemClock};

fn key(kid: &str) -> SigningKey {
    SigningKey {
        public_key_pem: format!("-----BEGIN PUBLIC KEY-----\n{kid}\n-----END PUBLIC KEY-----"),
        kid: Some(kid.to_owned()),
    }
}

fn me() -> ServiceRegistration {
    ServiceRegistration {
        name: "Orchestrator".into(),
        droplet_id: 10,
        endpoint: "http://localhost:8000".into(),
        port: 8000,
        health_endpoint: "/health".into(),
        capabilities: vec![],
        version: "0".into(),
        udc_compliant: true,
    }
}

fn sync(client: MockRegistryClient, refresh: Duration) -> Arc<RegistrySync> {
    let ports = memory_ports(SystemClock);
    RegistrySync::with_key_refresh(ports, Arc::new(client), me(), refresh)
}

#[tokio::test]
async fn the_key_is_cached_and_fetched_again_at_most_once_per_interval() {
    let mut client = MockRegistryClient::new();
    let mut seq = mockall::Sequence::new();
    client
        .expect_signing_key()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Ok(key("a")));
    client
        .expect_signing_key()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Ok(key("b")));
    let sync = sync(client, Duration::from_millis(300));

    assert_eq!(sync.signing_key(false).await, Some(key("a")));
    assert_eq!(sync.signing_key(false).await, Some(key("a")), "cached");
    assert_eq!(
        sync.signing_key(true).await,
        Some(key("a")),
        "a refresh asked for too soon is not made"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(sync.signing_key(true).await, Some(key("b")), "the rotated key");
    assert_eq!(sync.health().status, "connected");
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_cached_key_and_is_reported() {
    let mut client = MockRegistryClient::new();
    let mut seq = mockall::Sequence::new();
    client
        .expect_signing_key()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Ok(key("a")));
    client
        .expect_signing_key()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Err(RegistryError("the Registry answered 503".into())));
    let sync = sync(client, Duration::ZERO);

    assert_eq!(sync.signing_key(false).await, Some(key("a")));
    assert_eq!(sync.signing_key(true).await, Some(key("a")));
    let health = sync.health();
    assert_eq!(health.status, "disconnected");
    assert_eq!(health.last_error.as_deref(), Some("the Registry answered 503"));
}
