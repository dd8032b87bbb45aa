//! Creations under an `Idempotency-Key`: the key and the tasks it made are
//! written in one transaction, so a request repeated after a lost answer,
//! even one cut short by a crash, finds either both or neither.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::Task;
use orchestrator_ports::{IdempotencyKey, StoreError, StoreResult};

use crate::creates::{Creation, insert_on};
use crate::error::TxError;
use crate::rows::naive;
use crate::sql;

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Text)]
    #[allow(
        dead_code,
        reason = "RETURNING needs a column; only the row's presence counts"
    )]
    caller: String,
}

#[derive(QueryableByName)]
struct Seen {
    #[diesel(sql_type = Text)]
    fingerprint: String,
    #[diesel(sql_type = Array<BigInt>)]
    task_ids: Vec<i64>,
}

/// What the key's transaction found.
pub(crate) enum Keyed {
    Created(Vec<Task>),
    /// Made before, by the same request: the ids of its tasks, in order.
    Seen(Vec<i64>),
    Reused,
}

pub(crate) async fn create_once(
    conn: &mut AsyncPgConnection,
    key: &IdempotencyKey,
    creations: &[Creation],
    at: DateTime<Utc>,
    expired_before: DateTime<Utc>,
) -> StoreResult<Keyed> {
    let outcome = conn
        .transaction::<_, TxError, _>(async |conn| {
            let taken: Vec<Taken> = sql::idempotency::Take {
                caller: &key.caller,
                key: &key.key,
                fingerprint: &key.fingerprint,
                at: naive(at),
                expired_before: naive(expired_before),
            }
            .query()
            .load(conn)
            .await?;
            if taken.is_empty() {
                return seen(conn, key).await;
            }
            let tasks: Vec<Task> = insert_on(conn, creations)
                .await?
                .into_iter()
                .collect::<StoreResult<_>>()?;
            let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
            sql::idempotency::RecordTasks {
                caller: &key.caller,
                key: &key.key,
                tasks: &ids,
            }
            .query()
            .execute(conn)
            .await?;
            Ok(Keyed::Created(tasks))
        })
        .await?;
    Ok(outcome)
}

async fn seen(conn: &mut AsyncPgConnection, key: &IdempotencyKey) -> Result<Keyed, TxError> {
    let rows: Vec<Seen> = sql::idempotency::Seen {
        caller: &key.caller,
        key: &key.key,
    }
    .query()
    .load(conn)
    .await?;
    let seen = rows.into_iter().next().ok_or_else(|| {
        StoreError::Unavailable(format!(
            "idempotency key {:?} vanished while it was read",
            key.key
        ))
    })?;
    Ok(if seen.fingerprint == key.fingerprint {
        Keyed::Seen(seen.task_ids)
    } else {
        Keyed::Reused
    })
}

/// Deletes the keys recorded before `before`.
pub(crate) async fn delete_expired(conn: &mut AsyncPgConnection, before: DateTime<Utc>) -> StoreResult<u64> {
    let deleted = sql::idempotency::DeleteExpired {
        before: naive(before),
    }
    .query()
    .execute(conn)
    .await
    .map_err(crate::error::store_error)?;
    Ok(deleted as u64)
}
