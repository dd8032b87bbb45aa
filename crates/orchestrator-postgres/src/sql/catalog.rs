//! Statements about the schema itself: diesel's record of the migrations
//! applied and PostgreSQL's of the columns there are.

/// The versions of the migrations applied.
pub(crate) const APPLIED_MIGRATIONS: &str = "SELECT version::text AS version FROM __diesel_schema_migrations";

/// Every column of every table in the current schema, with its type.
pub(crate) const COLUMNS: &str = "\
SELECT table_name::text AS table_name, column_name::text AS column_name, data_type::text AS data_type
FROM information_schema.columns WHERE table_schema = current_schema()";
