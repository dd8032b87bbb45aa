//! The embedded migrations of `migrations/` and the schema check at start.

use diesel::Connection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use orchestrator_ports::StoreError;

use crate::error::store_error;
use crate::sql;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// The advisory lock that serialises migrations when several replicas start
/// at once on one database (any constant unique to this purpose).
const MIGRATION_LOCK: i64 = 0x6f72_6368_6d69_6772; // "orchmigr"

/// Applies pending migrations; returns the versions applied.
///
/// Diesel's migration harness is synchronous, so it runs on a thread of its
/// own with its own runtime, never blocking the server's.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, StoreError> {
    let url = database_url.to_owned();
    let worker = std::thread::spawn(move || -> Result<Vec<String>, String> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| format!("cannot connect to the database: {e}"))?;
        let lock = |sql: &str, conn: &mut AsyncConnectionWrapper<AsyncPgConnection>| {
            diesel::RunQueryDsl::execute(diesel::sql_query(sql).bind::<BigInt, _>(MIGRATION_LOCK), conn)
                .map_err(|e| format!("cannot take the migration lock: {e}"))
        };
        lock(sql::locks::TAKE, &mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| format!("a migration failed: {e}"));
        lock(sql::locks::RELEASE, &mut conn)?;
        applied
    });
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .map_err(|e| StoreError::Unavailable(format!("the migration thread failed: {e}")))?
        .map_err(|_| StoreError::Unavailable("the migration thread panicked".into()))?
        .map_err(StoreError::Unavailable)
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = Text)]
    version: String,
}

/// The embedded migrations the database has not applied, by version. A
/// database without the migrations table has applied none.
pub async fn pending_migrations(conn: &mut AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    let applied: Vec<AppliedVersion> = diesel::sql_query(sql::catalog::APPLIED_MIGRATIONS)
        .load(conn)
        .await
        .or_else(|err| match err {
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().contains("__diesel_schema_migrations") =>
            {
                Ok(Vec::new())
            }
            other => Err(other),
        })
        .map_err(store_error)?;
    let applied: std::collections::HashSet<String> = applied.into_iter().map(|a| a.version).collect();
    let embedded = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| StoreError::Unavailable(format!("cannot read the embedded migrations: {e}")))?;
    Ok(embedded
        .iter()
        .map(|m| m.name().version().to_string())
        .filter(|version| !applied.contains(version))
        .collect())
}

/// The columns and types the store relies on, table by table.
const EXPECTED_COLUMNS: &[(&str, &[(&str, &str)])] = &[
    (
        "droplets",
        &[
            ("id", "bigint"),
            ("droplet_id", "integer"),
            ("name", "character varying"),
            ("steward", "character varying"),
            ("endpoint", "character varying"),
            ("capabilities", "jsonb"),
            ("status", "character varying"),
            ("last_heartbeat", "timestamp without time zone"),
            ("registered_at", "timestamp without time zone"),
            ("updated_at", "timestamp without time zone"),
            ("max_concurrent_tasks", "integer"),
            ("manually_deactivated", "boolean"),
            ("last_assigned_at", "timestamp without time zone"),
            ("service_id", "bigint"),
            ("session_started_at", "timestamp without time zone"),
            ("heartbeat_sampled_at", "timestamp without time zone"),
        ],
    ),
    (
        "tasks",
        &[
            ("id", "bigint"),
            ("trace_id", "uuid"),
            ("task_type", "character varying"),
            ("title", "character varying"),
            ("description", "text"),
            ("payload", "jsonb"),
            ("required_capability", "character varying"),
            ("assigned_droplet_id", "bigint"),
            ("status", "character varying"),
            ("priority", "integer"),
            ("created_at", "timestamp without time zone"),
            ("assigned_at", "timestamp without time zone"),
            ("started_at", "timestamp without time zone"),
            ("completed_at", "timestamp without time zone"),
            ("deadline", "timestamp without time zone"),
            ("result", "jsonb"),
            ("error_message", "text"),
            ("retry_count", "integer"),
            ("max_retries", "integer"),
            ("created_by", "character varying"),
            ("updated_at", "timestamp without time zone"),
            ("retry_after", "timestamp without time zone"),
            ("deadline_risk_at", "timestamp without time zone"),
            ("attempt", "integer"),
            ("cancel_requested_at", "timestamp without time zone"),
            ("timeout_seconds", "integer"),
            ("progress", "smallint"),
            ("progress_message", "text"),
            ("progress_at", "timestamp without time zone"),
            ("requeues", "integer"),
            ("run_at", "timestamp without time zone"),
            ("concurrency_key", "character varying"),
        ],
    ),
    (
        "task_queue",
        &[
            ("task_id", "bigint"),
            ("priority", "integer"),
            ("deadline", "timestamp without time zone"),
            ("created_at", "timestamp without time zone"),
            ("required_capability", "character varying"),
            ("attempt", "integer"),
            ("not_before", "timestamp without time zone"),
            ("routing_lease_until", "timestamp without time zone"),
            ("concurrency_key", "character varying"),
        ],
    ),
    (
        "task_runs",
        &[
            ("task_id", "bigint"),
            ("assigned_droplet_id", "bigint"),
            ("status", "character varying"),
            ("assigned_at", "timestamp without time zone"),
            ("started_at", "timestamp without time zone"),
            ("completed_at", "timestamp without time zone"),
            ("result", "jsonb"),
            ("error_message", "text"),
            ("retry_count", "integer"),
            ("updated_at", "timestamp without time zone"),
            ("retry_after", "timestamp without time zone"),
            ("attempt", "integer"),
            ("cancel_requested_at", "timestamp without time zone"),
            ("requeues", "integer"),
            ("progress", "smallint"),
            ("progress_message", "text"),
            ("progress_at", "timestamp without time zone"),
            ("concurrency_key", "character varying"),
        ],
    ),
    (
        "task_state_history",
        &[
            ("id", "bigint"),
            ("task_id", "bigint"),
            ("from_status", "character varying"),
            ("to_status", "character varying"),
            ("changed_by", "character varying"),
            ("reason", "text"),
            ("metadata", "jsonb"),
            ("changed_at", "timestamp without time zone"),
        ],
    ),
    (
        "task_counts",
        &[
            ("status", "character varying"),
            ("slot", "smallint"),
            ("n", "bigint"),
        ],
    ),
    (
        "task_view",
        &[
            ("id", "bigint"),
            ("assigned_droplet_id", "bigint"),
            ("status", "character varying"),
            ("stored_status", "character varying"),
            ("run_status", "character varying"),
            ("concurrency_key", "character varying"),
        ],
    ),
    (
        "schedules",
        &[
            ("name", "character varying"),
            ("cron", "text"),
            ("timezone", "text"),
            ("template", "jsonb"),
            ("overlap", "character varying"),
            ("catch_up", "character varying"),
            ("paused", "boolean"),
            ("created_by", "text"),
            ("created_at", "timestamp without time zone"),
            ("updated_at", "timestamp without time zone"),
            ("last_fire_at", "timestamp without time zone"),
            ("last_task_id", "bigint"),
            ("fires", "bigint"),
            ("skips", "bigint"),
        ],
    ),
    (
        "schedule_fires",
        &[
            ("schedule_name", "character varying"),
            ("fire_at", "timestamp without time zone"),
            ("task_id", "bigint"),
        ],
    ),
    (
        "concurrency_limits",
        &[
            ("key", "character varying"),
            ("max_running", "integer"),
            ("updated_by", "text"),
            ("updated_at", "timestamp without time zone"),
        ],
    ),
    (
        "workflows",
        &[
            ("id", "bigint"),
            ("name", "character varying"),
            ("created_by", "text"),
            ("created_at", "timestamp without time zone"),
        ],
    ),
    (
        "workflow_tasks",
        &[
            ("task_id", "bigint"),
            ("workflow_id", "bigint"),
            ("key", "character varying"),
            ("position", "integer"),
            ("on_dependency_failure", "character varying"),
        ],
    ),
    (
        "task_dependencies",
        &[("task_id", "bigint"), ("depends_on", "bigint")],
    ),
    (
        "heartbeats",
        &[
            ("id", "bigint"),
            ("droplet_id", "bigint"),
            ("status", "character varying"),
            ("metrics", "jsonb"),
            ("received_at", "timestamp without time zone"),
        ],
    ),
];

#[derive(Debug, QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
}

/// Checks that every table and column the store uses exists with its type.
/// Returns one line per difference; empty means the schema matches.
pub async fn verify_schema(conn: &mut AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    let found: Vec<ColumnRow> = diesel::sql_query(sql::catalog::COLUMNS)
        .load(conn)
        .await
        .map_err(store_error)?;
    let mut problems = Vec::new();
    for (table, columns) in EXPECTED_COLUMNS {
        for (column, expected) in *columns {
            match found
                .iter()
                .find(|r| r.table_name == *table && r.column_name == *column)
            {
                None => problems.push(format!("{table}.{column} is missing")),
                Some(row) if row.data_type != *expected => {
                    problems.push(format!(
                        "{table}.{column} is {}, expected {expected}",
                        row.data_type
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(problems)
}
