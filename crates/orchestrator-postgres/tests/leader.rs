//! One replica at a time leads the periodic jobs; another takes over when
//! the leader goes away.

use orchestrator_ports::LeaderElection;
use orchestrator_postgres::PgLeaderElection;
use orchestrator_testkit::pg::TestDatabase;

#[tokio::test]
async fn leadership_is_exclusive_and_passes_on_when_the_leader_goes() {
    let database = TestDatabase::create().await;
    let first = PgLeaderElection::new(&database.url);
    let second = PgLeaderElection::new(&database.url);
    assert!(first.is_leader().await, "the first to ask leads");
    assert!(!second.is_leader().await, "only one leads");
    assert!(first.is_leader().await, "and keeps leading");
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !second.is_leader().await {
        assert!(tokio::time::Instant::now() < deadline, "no takeover");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
