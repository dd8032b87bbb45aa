//! The PostgreSQL store passes the store contract, each case on a fresh database.

use orchestrator_postgres::{PgStore, PoolSettings, run_migrations};
use orchestrator_testkit::pg::TestDatabase;
use orchestrator_testkit::{Stores, store_contract_tests};

async fn stores() -> Stores {
    let database = TestDatabase::create().await;
    run_migrations(&database.url).await.expect("migrations apply");
    let store = PgStore::new(&database.url, PoolSettings::default()).expect("pool");
    let mut stores = Stores::from_one(store);
    stores.guard = Some(Box::new(database));
    stores
}

store_contract_tests!(stores());
