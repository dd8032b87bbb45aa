//! Raw statements prepared once per connection. `diesel::sql_query` marks
//! every statement unsafe to cache, so each call is parsed, described and
//! planned again, one round trip more than its execution: 450 µs a call
//! for the grouped transition in W1 (docs/hot-path.md). The statements of
//! `sql` are constants, so their text is a safe cache key; [`Prepare::prepared`]
//! says so, and diesel-async keeps the prepared statement for the
//! connection's life.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A raw statement with its binds, cached as a prepared statement.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<Q>(Q);

/// Marks a raw statement whose text never changes as safe to prepare once.
pub(crate) trait Prepare: Sized {
    /// Only for a statement built from a constant: a text made per call
    /// would grow the connection's statement cache without bound.
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryFragment<Pg>> Prepare for Q {}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // Cached by its text and bind types, as diesel caches any statement
    // without a static id.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;
    use orchestrator_domain::Task;
    use orchestrator_ports::{
        ChangeRecord, DropletStore, RoundPlanner, RoutableQuery, TaskStore, Transition,
    };
    use orchestrator_testkit::fixtures::{assign_all_to, capability, new_task, registration};
    use orchestrator_testkit::pg::TestDatabase;
    use uuid::Uuid;

    use crate::{PgStore, PoolSettings, run_migrations, sql};

    struct AssignAllToSeven;

    impl RoundPlanner for AssignAllToSeven {
        fn plan(&mut self, pending: &[Task]) -> Vec<Transition> {
            assign_all_to(7, pending)
        }
    }

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lifecycles_statements_are_prepared_once_per_connection() {
        let database = TestDatabase::create().await;
        run_migrations(&database.url).await.expect("migrations");
        let one_connection = PoolSettings {
            max_size: 1,
            timeout: Duration::from_secs(10),
        };
        let store = PgStore::new(&database.url, one_connection).expect("pool");
        store
            .register_droplet(registration(7, &["echo"]), Utc::now())
            .await
            .expect("register");
        let query = RoutableQuery {
            capabilities: vec![capability("echo")],
            include_unconstrained: true,
            limit: 10,
            lease: Duration::from_secs(30),
        };
        for _ in 0..2 {
            let task = new_task("echo", 5, Some("echo"));
            store
                .create_task(task, Uuid::new_v4(), ChangeRecord::default(), Utc::now())
                .await
                .expect("create");
            let round = store
                .route_round(&query, &mut AssignAllToSeven)
                .await
                .expect("round");
            assert_eq!(round.claimed, 1);
        }

        let mut conn = store.conn().await.expect("the pool's one connection");
        for statement in [
            sql::tasks::INSERT_WITH_HISTORY,
            sql::tasks::LOCK_ROUTABLE,
            sql::droplets::LOCK_TARGETS,
            sql::tasks::COUNT_HELD,
            sql::tasks::APPLY_TRANSITIONS,
        ] {
            let found: Count =
                diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1")
                    .bind::<Text, _>(statement)
                    .get_result(&mut conn)
                    .await
                    .expect("pg_prepared_statements");
            assert_eq!(found.n, 1, "prepared once, used twice: {statement}");
        }
    }
}
