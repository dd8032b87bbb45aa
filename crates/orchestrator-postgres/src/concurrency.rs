//! `ConcurrencyStore` on PostgreSQL: the `concurrency_limits` table
//! (migration 26). The limits are enforced where assignments are made
//! (`batch::reserve_keys`) and claims are made (`sql::tasks::TAKEABLE`).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use diesel_async::RunQueryDsl;
use orchestrator_domain::ConcurrencyLimit;
use orchestrator_ports::{ConcurrencyStore, KeyUsage, StoreError, StoreResult};

use crate::error::store_error;
use crate::rows::{naive, utc};
use crate::schema::concurrency_limits;
use crate::sql;
use crate::store::PgStore;

#[derive(Debug, QueryableByName)]
struct UsageRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Integer)]
    max_running: i32,
    #[diesel(sql_type = Nullable<Text>)]
    updated_by: Option<String>,
    #[diesel(sql_type = Timestamp)]
    updated_at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    running: i64,
}

impl UsageRow {
    fn into_usage(self) -> KeyUsage {
        KeyUsage {
            limit: ConcurrencyLimit {
                key: self.key,
                max_running: u32::try_from(self.max_running).unwrap_or(0),
                updated_by: self.updated_by,
                updated_at: utc(self.updated_at),
            },
            running: u32::try_from(self.running).unwrap_or(u32::MAX),
        }
    }
}

fn unknown(key: &str) -> StoreError {
    StoreError::UnknownName {
        entity: "concurrency limit",
        name: key.to_owned(),
    }
}

impl PgStore {
    async fn usage_where(&self, filter: &str, key: Option<&str>) -> StoreResult<Vec<KeyUsage>> {
        let mut conn = self.conn().await?;
        let statement = format!(
            "{} {filter} ORDER BY l.key",
            sql::concurrency::LIMITS_WITH_RUNNING
        );
        let query = diesel::sql_query(statement);
        let rows: Vec<UsageRow> = match key {
            Some(key) => query.bind::<Text, _>(key).load(&mut conn).await,
            None => query.load(&mut conn).await,
        }
        .map_err(store_error)?;
        Ok(rows.into_iter().map(UsageRow::into_usage).collect())
    }
}

#[async_trait]
impl ConcurrencyStore for PgStore {
    async fn set_concurrency_limit(
        &self,
        key: &str,
        max_running: u32,
        by: Option<String>,
        at: DateTime<Utc>,
    ) -> StoreResult<KeyUsage> {
        let max = i32::try_from(max_running).unwrap_or(i32::MAX);
        let mut conn = self.conn().await?;
        diesel::insert_into(concurrency_limits::table)
            .values((
                concurrency_limits::key.eq(key),
                concurrency_limits::max_running.eq(max),
                concurrency_limits::updated_by.eq(&by),
                concurrency_limits::updated_at.eq(naive(at)),
            ))
            .on_conflict(concurrency_limits::key)
            .do_update()
            .set((
                concurrency_limits::max_running.eq(max),
                concurrency_limits::updated_by.eq(&by),
                concurrency_limits::updated_at.eq(naive(at)),
            ))
            .execute(&mut conn)
            .await
            .map_err(store_error)?;
        drop(conn);
        self.concurrency_limit(key).await
    }

    async fn concurrency_limit(&self, key: &str) -> StoreResult<KeyUsage> {
        self.usage_where("WHERE l.key = $1", Some(key))
            .await?
            .pop()
            .ok_or_else(|| unknown(key))
    }

    async fn concurrency_limits(&self) -> StoreResult<Vec<KeyUsage>> {
        self.usage_where("", None).await
    }

    async fn delete_concurrency_limit(&self, key: &str) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let deleted = diesel::delete(concurrency_limits::table.find(key))
            .execute(&mut conn)
            .await
            .map_err(store_error)?;
        if deleted == 0 {
            return Err(unknown(key));
        }
        Ok(())
    }
}
