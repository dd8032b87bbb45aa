//! Cheap heartbeats: a heartbeat that changes nothing but the time is held
//! in memory and written with the others once a second; one that changes a
//! status is written at once; changes made on another replica are seen
//! within a flush; replicas sharing the database sample heartbeats
//! as one. Most cases keep every heartbeat as a row, to count them.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use orchestrator_domain::{DropletRegistration, DropletStatus, HeartbeatReport, RegistrationDraft};
use orchestrator_ports::{DropletChange, DropletStore, HeartbeatBacklog};
use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::pg::{Cluster, TestDatabase};

async fn database() -> TestDatabase {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    database
}

fn store(database: &TestDatabase) -> PgStore {
    PgStore::new(&database.url, PoolSettings::default()).expect("pool")
}

async fn register(store: &PgStore, id: i64) {
    let registration = DropletRegistration::parse(RegistrationDraft {
        droplet_id: id,
        name: format!("droplet {id}"),
        endpoint: format!("http://127.0.0.1:9/{id}"),
        capabilities: vec!["echo".into()],
        ..RegistrationDraft::default()
    })
    .expect("valid");
    store
        .register_droplet(registration, Utc::now())
        .await
        .expect("register");
}

async fn beat(store: &PgStore, id: i64, at: DateTime<Utc>) -> DropletChange {
    sampled_beat(store, id, at, Duration::ZERO).await
}

/// A heartbeat kept as a row only when `every` has passed since the last one kept.
async fn sampled_beat(store: &PgStore, id: i64, at: DateTime<Utc>, every: Duration) -> DropletChange {
    store
        .record_heartbeat(id, HeartbeatReport::default(), at, every)
        .await
        .expect("heartbeat")
}

async fn heartbeat_rows(database: &TestDatabase) -> i64 {
    database.count("SELECT count(*) AS n FROM heartbeats").await
}

/// Beats through `store` until `until` holds of the answer, for at most 3 s:
/// less than the time the cache is trusted without a flush.
async fn beat_until(store: &PgStore, id: i64, until: impl Fn(&DropletChange) -> bool) -> DropletChange {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let change = beat(store, id, Utc::now()).await;
        if until(&change) || tokio::time::Instant::now() > give_up {
            return change;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn quiet_heartbeats_are_written_together_within_a_second_or_two() {
    let database = database().await;
    let store = store(&database);
    for id in 1..=20 {
        register(&store, id).await;
        beat(&store, id, Utc::now()).await;
    }
    assert_eq!(
        heartbeat_rows(&database).await,
        20,
        "first heartbeats are written at once"
    );

    // Whole microseconds, as PostgreSQL keeps them.
    let latest = Utc::now().trunc_subsecs(6) + chrono::Duration::seconds(30);
    for id in 1..=20 {
        for step in (0..5).rev() {
            beat(&store, id, latest - chrono::Duration::seconds(step)).await;
        }
    }
    assert_eq!(
        heartbeat_rows(&database).await,
        20,
        "quiet heartbeats wait in memory"
    );
    let seen = store.get_droplet(7).await.expect("droplet");
    assert_eq!(
        seen.last_heartbeat,
        Some(latest),
        "reads see heartbeats not yet written"
    );

    let give_up = tokio::time::Instant::now() + Duration::from_secs(4);
    while heartbeat_rows(&database).await < 120 && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(heartbeat_rows(&database).await, 120, "the flusher wrote them");
    let current = format!(
        "SELECT count(*) AS n FROM droplets WHERE last_heartbeat = '{}'",
        latest.naive_utc()
    );
    assert_eq!(database.count(&current).await, 20, "last_heartbeat moved forward");
}

#[tokio::test]
async fn flushing_writes_what_is_held_at_once() {
    let database = database().await;
    let store = store(&database);
    register(&store, 1).await;
    beat(&store, 1, Utc::now()).await;
    beat(&store, 1, Utc::now()).await;
    beat(&store, 1, Utc::now()).await;
    store.flush_heartbeats().await.expect("flush");
    assert_eq!(heartbeat_rows(&database).await, 3);
}

#[tokio::test]
async fn the_health_monitor_counts_heartbeats_not_yet_written() {
    let database = database().await;
    let store = store(&database);
    register(&store, 1).await;
    beat(&store, 1, Utc::now()).await;
    beat(&store, 1, Utc::now()).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let fresh = beat(&store, 1, Utc::now()).await;
    assert_eq!(fresh.droplet.status, DropletStatus::Active);
    let silenced = store
        .mark_silent_droplets(Duration::from_secs(1))
        .await
        .expect("health check");
    assert!(
        silenced.is_empty(),
        "a droplet that just beat is alive: {silenced:?}"
    );
}

#[tokio::test]
async fn a_deactivation_on_another_replica_reaches_this_one() {
    let database = database().await;
    let (here, there) = (store(&database), store(&database));
    register(&here, 1).await;
    beat(&here, 1, Utc::now()).await;
    there
        .set_droplet_status(1, DropletStatus::Inactive, true, Utc::now())
        .await
        .expect("deactivate");

    let change = beat_until(&here, 1, |c| c.droplet.status == DropletStatus::Inactive).await;
    assert_eq!(change.droplet.status, DropletStatus::Inactive);
    assert!(change.droplet.manually_deactivated);
    let active = database
        .count("SELECT count(*) AS n FROM droplets WHERE status = 'active'")
        .await;
    assert_eq!(active, 0, "a held heartbeat never undoes an admin");
}

#[tokio::test]
async fn a_droplet_marked_silent_elsewhere_is_revived_by_its_next_heartbeat() {
    let database = database().await;
    let (here, there) = (store(&database), store(&database));
    register(&here, 1).await;
    beat(&here, 1, Utc::now() - chrono::Duration::seconds(60)).await;
    let silenced = there
        .mark_silent_droplets(Duration::from_secs(30))
        .await
        .expect("health check");
    assert_eq!(silenced.len(), 1);

    let revived = beat_until(&here, 1, |c| c.previous_status == Some(DropletStatus::Inactive)).await;
    assert_eq!(
        (revived.previous_status, revived.droplet.status),
        (Some(DropletStatus::Inactive), DropletStatus::Active)
    );
    let active = database
        .count("SELECT count(*) AS n FROM droplets WHERE status = 'active'")
        .await;
    assert_eq!(active, 1, "the revival is written at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_only_each_droplets_latest_heartbeat_is_held() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    run_migrations(&cluster.url()).await.expect("migrations apply");
    // No periodic flush: the failures below are the test's own.
    let store = PgStore::new(&cluster.url(), PoolSettings::default())
        .expect("pool")
        .with_heartbeat_flush_every(Duration::from_secs(3600));
    for id in 1..=3 {
        register(&store, id).await;
        beat(&store, id, Utc::now()).await;
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .expect("stop");

    let latest = Utc::now().trunc_subsecs(6) + chrono::Duration::seconds(30);
    for id in 1..=3 {
        for step in (0..50).rev() {
            beat(&store, id, latest - chrono::Duration::milliseconds(step * 100)).await;
        }
    }
    assert_eq!(store.heartbeat_backlog().held, 150, "acknowledged, held");
    store.flush_heartbeats().await.expect_err("the database is down");
    assert_eq!(
        store.heartbeat_backlog(),
        HeartbeatBacklog {
            held: 3,
            dropped: 147
        },
        "one heartbeat per droplet is left, the rest counted"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.resume();
        cluster
    })
    .await
    .expect("resume");
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Err(err) = store.flush_heartbeats().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the database came back: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(store.heartbeat_backlog().held, 0);
    for id in 1..=3 {
        let seen = store.get_droplet(id).await.expect("droplet");
        assert_eq!(seen.last_heartbeat, Some(latest), "the latest was kept");
    }
    drop(cluster);
}

#[tokio::test]
async fn replicas_sharing_the_database_keep_one_sample_between_them() {
    let database = database().await;
    let (here, there) = (store(&database), store(&database));
    let minute = Duration::from_secs(60);
    let start = Utc::now().trunc_subsecs(6);
    let second = |n: i64| start + chrono::Duration::seconds(n);
    register(&here, 1).await;
    sampled_beat(&here, 1, second(0), minute).await;
    sampled_beat(&there, 1, second(1), minute).await;
    assert_eq!(
        heartbeat_rows(&database).await,
        1,
        "each replica's first beat is written at once, but only one is due"
    );
    for n in 2..30 {
        let store = if n % 2 == 0 { &here } else { &there };
        sampled_beat(store, 1, second(n), minute).await;
    }
    sampled_beat(&here, 1, second(61), minute).await;
    sampled_beat(&there, 1, second(62), minute).await;
    here.flush_heartbeats().await.expect("flush here");
    there.flush_heartbeats().await.expect("flush there");
    assert_eq!(
        heartbeat_rows(&database).await,
        2,
        "one more a minute after the first, from whichever replica wrote first"
    );
    let sampled = format!(
        "SELECT count(*) AS n FROM droplets WHERE heartbeat_sampled_at = '{}' AND last_heartbeat = '{}'",
        second(61).naive_utc(),
        second(62).naive_utc()
    );
    assert_eq!(
        database.count(&sampled).await,
        1,
        "the sample's time, the latest beat's time"
    );
}
