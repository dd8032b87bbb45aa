//! Leadership of the periodic jobs among replicas: a session-level
//! PostgreSQL advisory lock on a connection of its own. When the leader's
//! process or connection dies, PostgreSQL releases the lock and the next
//! replica to ask takes it, within one job interval.

use async_trait::async_trait;
use diesel::{QueryableByName, sql_types::Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_ports::LeaderElection;
use tokio::sync::Mutex;

use crate::sql;

/// The advisory lock key of the job leadership ("orchlead").
const LEADER_LOCK: i64 = 0x6f72_6368_6c65_6164;

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

pub struct PgLeaderElection {
    database_url: String,
    /// The connection holding the lock while this process leads.
    held: Mutex<Option<AsyncPgConnection>>,
}

impl std::fmt::Debug for PgLeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgLeaderElection")
    }
}

impl PgLeaderElection {
    pub fn new(database_url: &str) -> Self {
        PgLeaderElection {
            database_url: database_url.to_owned(),
            held: Mutex::new(None),
        }
    }

    async fn try_take(&self) -> Option<AsyncPgConnection> {
        let mut conn = AsyncPgConnection::establish(&self.database_url).await.ok()?;
        let taken: Taken = sql::locks::TryTake { key: LEADER_LOCK }
            .planned_per_call()
            .get_result(&mut conn)
            .await
            .ok()?;
        taken.taken.then_some(conn)
    }
}

#[async_trait]
impl LeaderElection for PgLeaderElection {
    async fn is_leader(&self) -> bool {
        let mut held = self.held.lock().await;
        if let Some(conn) = held.as_mut() {
            if diesel::sql_query(sql::PING).execute(conn).await.is_ok() {
                return true;
            }
            tracing::warn!("lost the connection holding the job leadership");
            *held = None;
        }
        *held = self.try_take().await;
        if held.is_some() {
            tracing::info!("this replica now runs the periodic jobs");
        }
        held.is_some()
    }
}
