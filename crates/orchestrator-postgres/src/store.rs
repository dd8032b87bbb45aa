//! `PgStore`: the store ports over PostgreSQL. Every statement is
//! parameterised; every state change is one transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool::managed::{Hook, HookError, Metrics};
use diesel::dsl::count_star;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::{
    Droplet, DropletId, DropletRegistration, DropletStatus, HeartbeatReport, HistoryEntry, NewTask,
    ServiceRef, Task, TaskId, TaskStatus,
};
use orchestrator_ports::{
    ChangeRecord, DropletChange, DropletFilter, DropletStore, HeartbeatBacklog, IdempotencyKey, LiveCounts,
    OnceCreated, PageCursor, ProgressReport, RecoveryCandidate, RecoveryQuery, Report, ReportOutcome,
    RoundPlanner, RoutableQuery, RoutedRound, Spawner, StoreError, StoreResult, TaskFilter, TaskKey,
    TaskPage, TaskStore, Transition,
};
use uuid::Uuid;

use crate::creates::{CreateBatcher, Creation};
use crate::error::{TxError, pool_error, store_error};
use crate::group_commit::GroupCommit;
use crate::idempotency::Keyed;
use crate::liveness::Liveness;
use crate::migrations::verify_schema;
use crate::prepared::Prepare;
use crate::rows::{
    DropletRow, HistoryRow, NewHistoryRow, RecoveryRow, TaskRow, TaskWithDropletRow, naive, utc,
};
use crate::schema::{droplets, task_state_history, tasks};
use crate::sql;
use crate::views::task_view;

/// How the connection pool is sized and how long a request waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW`: deadpool has no
    /// separate overflow, so the pool may grow to the sum.
    pub max_size: usize,
    /// How long a request waits for a connection before the store counts as unavailable.
    pub timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 30,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    /// Shared by clones, so that all of a process's transitions are grouped.
    commits: Arc<GroupCommit<Transition>>,
    reports: Arc<GroupCommit<Report>>,
    /// Shared by clones, so that concurrent submissions share statements.
    creates: Arc<CreateBatcher>,
    /// Heartbeats absorbed in memory and written once a second.
    liveness: Arc<Liveness>,
    /// The process's services, which the store's own loops join.
    services: Option<Arc<dyn Spawner>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

type Conn = Object<AsyncPgConnection>;

impl PgStore {
    /// A pool over `database_url`. Connections are made lazily, so this
    /// succeeds while the database is down; requests then get `Unavailable`.
    pub fn new(database_url: &str, settings: PoolSettings) -> StoreResult<Self> {
        let mut config = ManagerConfig::default();
        // The round trip of a verified recycle doubles the cost of a short
        // query; only connections that sat idle are checked (see below).
        config.recycling_method = RecyclingMethod::Fast;
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
        let pool = Pool::builder(manager)
            .post_recycle(Hook::async_fn(|conn, metrics| {
                Box::pin(verify_if_idle(conn, metrics))
            }))
            .max_size(settings.max_size)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .map_err(pool_error)?;
        Ok(PgStore {
            pool,
            commits: Arc::default(),
            reports: Arc::default(),
            creates: Arc::default(),
            liveness: Arc::default(),
            services: None,
        })
    }

    /// Runs the store's long-running loops (the heartbeat flusher) as
    /// services of `services`, listed and stopped with the process's
    /// others.
    #[must_use]
    pub fn with_services(mut self, services: Arc<dyn Spawner>) -> Self {
        self.services = Some(services);
        self
    }

    /// Writes held heartbeats every `every` instead of every second: a
    /// longer interval costs fewer commits and risks more on a crash.
    #[must_use]
    pub fn with_heartbeat_flush_every(mut self, every: Duration) -> Self {
        self.liveness = Arc::new(Liveness::new(every));
        self
    }

    pub(crate) async fn conn(&self) -> StoreResult<Conn> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Writes a droplet as it registered or as the directory lists it, in
    /// a transaction; the liveness cache then forgets what it held of it.
    async fn upsert(
        &self,
        registration: DropletRegistration,
        at: DateTime<Utc>,
        arrival: Arrival,
    ) -> StoreResult<DropletChange> {
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let change = conn
            .transaction::<_, TxError, _>(async move |conn| {
                upsert_droplet(conn, registration, at, arrival).await
            })
            .await?;
        self.liveness.forget(change.droplet.droplet_id);
        Ok(change)
    }

    /// Lines describing how the database's schema differs from what the store needs.
    pub async fn schema_problems(&self) -> StoreResult<Vec<String>> {
        let mut conn = self.conn().await?;
        verify_schema(&mut conn).await
    }
}

/// A connection idle longer than this is checked with a round trip before
/// it is handed out, so that one left broken by a database restart is
/// replaced rather than failing a request. A busy connection is not: any
/// failure marks it broken and the pool drops it.
const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(2);

async fn verify_if_idle(
    conn: &mut AsyncPgConnection,
    metrics: &Metrics,
) -> Result<(), HookError<diesel_async::pooled_connection::PoolError>> {
    if metrics.last_used() < VERIFY_AFTER_IDLE {
        return Ok(());
    }
    diesel::sql_query(sql::PING)
        .execute(conn)
        .await
        .map(drop)
        .map_err(|err| HookError::Message(err.to_string().into()))
}

fn droplet_key(id: DropletId) -> StoreResult<i32> {
    i32::try_from(id).map_err(|_| StoreError::NotFound {
        entity: "droplet",
        id,
    })
}

/// The internal id of droplet `id`, locking its row when `lock` is set
/// (`NO KEY UPDATE`: its changes never touch a key, so foreign-key checks
/// against it go on).
async fn droplet_row(conn: &mut AsyncPgConnection, id: DropletId, lock: bool) -> Result<DropletRow, TxError> {
    let query = droplets::table
        .filter(droplets::droplet_id.eq(droplet_key(id)?))
        .select(DropletRow::as_select());
    let row = if lock {
        query.for_no_key_update().first(conn).await.optional()?
    } else {
        query.first(conn).await.optional()?
    };
    row.ok_or(TxError::Store(StoreError::NotFound {
        entity: "droplet",
        id,
    }))
}

/// Locks droplet `id` for the rest of the transaction; returns its
/// internal id and the droplet as it was.
async fn locked_droplet(conn: &mut AsyncPgConnection, id: DropletId) -> Result<(i64, Droplet), TxError> {
    let row = droplet_row(conn, id, true).await?;
    Ok((row.id, row.into_droplet()?))
}

pub(crate) fn history_row(
    task_id: i64,
    from: Option<TaskStatus>,
    to: TaskStatus,
    record: ChangeRecord,
    at: DateTime<Utc>,
) -> NewHistoryRow {
    NewHistoryRow {
        task_id,
        from_status: from.map(|s| s.as_str().to_owned()),
        to_status: to.as_str().to_owned(),
        changed_by: record.changed_by,
        reason: record.reason,
        metadata: record.metadata,
        changed_at: Some(naive(at)),
    }
}

type TasksAndDroplets = diesel::dsl::LeftJoin<task_view::table, droplets::table>;
/// The FROM clause of [`TasksWithDroplets`], which its filters are written over.
type TasksJoinDroplets = diesel::dsl::LeftJoinQuerySource<task_view::table, droplets::table>;
type TasksWithDroplets = diesel::dsl::IntoBoxed<'static, TasksAndDroplets, Pg>;

/// The filtered task query of `GET /tasks`, joined to droplets for their
/// external ids so that a page is read in one statement.
fn filtered(filter: &TaskFilter) -> StoreResult<TasksWithDroplets> {
    let mut query = task_view::table.left_join(droplets::table).into_boxed();
    if let Some(status) = filter.status {
        query = with_status(query, status);
    }
    if let Some(task_type) = &filter.task_type {
        query = query.filter(task_view::task_type.eq(task_type.clone()));
    }
    if let Some(min) = filter.priority_min {
        query = query.filter(task_view::priority.ge(i32::from(min.value())));
    }
    if let Some(max) = filter.priority_max {
        query = query.filter(task_view::priority.le(i32::from(max.value())));
    }
    if let Some(capability) = &filter.required_capability {
        query = query.filter(task_view::required_capability.eq(capability.as_str().to_owned()));
    }
    if let Some(text) = filter.search.as_deref().map(str::trim) {
        query = match Uuid::parse_str(text) {
            Ok(trace) => query.filter(
                task_view::trace_id
                    .eq(trace)
                    .or(task_view::title.ilike(contains(text))),
            ),
            Err(_) => query.filter(task_view::title.ilike(contains(text))),
        };
    }
    if let Some(droplet) = filter.assigned_droplet_id {
        let Ok(key) = i32::try_from(droplet) else {
            return Ok(query.filter(task_view::id.eq(-1)));
        };
        query = query.filter(droplets::droplet_id.nullable().eq(key));
    }
    Ok(query)
}

/// Tasks in `status`, filtered on the table that holds it, by its index: a
/// held status on the run rows, any other on the task rows (where every
/// unfinished task says `pending`).
fn with_status(query: TasksWithDroplets, status: TaskStatus) -> TasksWithDroplets {
    let name = status.as_str();
    match status {
        TaskStatus::Assigned | TaskStatus::InProgress => query.filter(task_view::run_status.eq(name)),
        TaskStatus::Pending => query
            .filter(task_view::stored_status.eq(name))
            .filter(task_view::run_status.is_null()),
        TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => {
            query.filter(task_view::stored_status.eq(name))
        }
    }
}

/// Tasks older than `key` in the list's order (`created_at`, then `id`).
/// Each of these comparisons leads with a bound on `created_at` alone, so
/// that `idx_tasks_created_at` starts the scan at the cursor.
fn older_than(key: TaskKey) -> KeyBound {
    let at = naive(key.created_at);
    Box::new(
        task_view::created_at
            .le(at)
            .and(task_view::created_at.lt(at).or(task_view::id.lt(key.id))),
    )
}

/// Tasks newer than `key` in the list's order.
fn newer_than(key: TaskKey) -> KeyBound {
    let at = naive(key.created_at);
    Box::new(
        task_view::created_at
            .ge(at)
            .and(task_view::created_at.gt(at).or(task_view::id.gt(key.id))),
    )
}

/// `key` itself and the tasks older than it.
fn not_newer_than(key: TaskKey) -> KeyBound {
    at_or_older(naive(key.created_at), key.id)
}

/// The task created at `at` with id `id`, and the tasks older than it.
fn at_or_older(at: NaiveDateTime, id: TaskId) -> KeyBound {
    Box::new(
        task_view::created_at
            .le(at)
            .and(task_view::created_at.lt(at).or(task_view::id.le(id))),
    )
}

/// `key` itself and the tasks newer than it.
fn not_older_than(key: TaskKey) -> KeyBound {
    let at = naive(key.created_at);
    Box::new(
        task_view::created_at
            .ge(at)
            .and(task_view::created_at.gt(at).or(task_view::id.ge(key.id))),
    )
}

type KeyBound = Box<dyn BoxableExpression<TasksJoinDroplets, Pg, SqlType = Nullable<Bool>>>;

/// The page `offset` tasks down the list. The task it starts at is found
/// first, by a statement that reads nothing but the list's order: where
/// the filter needs neither the run rows nor the droplets, the planner
/// drops the view's joins and walks `idx_tasks_created_at` alone. The page
/// is then read from that task as a cursor's page is. In one statement,
/// every task skipped went through the joins (915 ms at offset 500,000 of
/// a million, docs/benchmarks.md).
async fn offset_page(conn: &mut AsyncPgConnection, filter: &TaskFilter) -> StoreResult<Vec<ListedRow>> {
    let first: Option<(Option<NaiveDateTime>, i64)> = page_start(filter)?
        .get_result(conn)
        .await
        .optional()
        .map_err(store_error)?;
    let newest_first = (task_view::created_at.desc(), task_view::id.desc());
    let page = match first {
        // Nothing that far down.
        None => return Ok(Vec::new()),
        Some((Some(at), id)) => filtered(filter)?.filter(at_or_older(at, id)).order(newest_first),
        // A task without a creation time, which no task written by the
        // store lacks: the page as asked.
        Some((None, _)) => filtered(filter)?
            .order(newest_first)
            .offset(i64::try_from(filter.offset).unwrap_or(i64::MAX)),
    };
    page.limit(i64::from(filter.limit))
        .select(listed())
        .load(conn)
        .await
        .map_err(store_error)
}

/// The list's key of the task `filter.offset` tasks down the list.
type PageStart = diesel::dsl::Select<TasksWithDroplets, (task_view::created_at, task_view::id)>;

fn page_start(filter: &TaskFilter) -> StoreResult<PageStart> {
    Ok(filtered(filter)?
        .order((task_view::created_at.desc(), task_view::id.desc()))
        .offset(i64::try_from(filter.offset).unwrap_or(i64::MAX))
        .limit(1)
        .select((task_view::created_at, task_view::id)))
}

/// Whether `query` finds any task.
async fn any_task(conn: &mut AsyncPgConnection, query: TasksWithDroplets) -> StoreResult<bool> {
    let found: Option<i64> = query
        .select(task_view::id)
        .limit(1)
        .get_result(conn)
        .await
        .optional()
        .map_err(store_error)?;
    Ok(found.is_some())
}

/// A listed task and its droplet's external id.
type ListedRow = (TaskRow, Option<i32>);

/// What a list reads of each task: the row and its droplet's external id.
fn listed() -> (
    diesel::dsl::AsSelect<TaskRow, Pg>,
    diesel::dsl::Nullable<droplets::droplet_id>,
) {
    (TaskRow::as_select(), droplets::droplet_id.nullable())
}

/// The page next to `cursor`, newest first, and whether tasks follow it
/// (older) and precede it (newer). It reads one row past the page to know
/// whether more lie beyond, and probes the other side for one task.
async fn keyset_page(
    conn: &mut AsyncPgConnection,
    filter: &TaskFilter,
    cursor: PageCursor,
) -> StoreResult<(Vec<ListedRow>, bool, bool)> {
    let (beyond, behind, walking_back) = match cursor {
        PageCursor::After(key) => (older_than(key), not_older_than(key), false),
        PageCursor::Before(key) => (newer_than(key), not_newer_than(key), true),
    };
    let query = filtered(filter)?.filter(beyond);
    let query = if walking_back {
        query.order((task_view::created_at.asc(), task_view::id.asc()))
    } else {
        query.order((task_view::created_at.desc(), task_view::id.desc()))
    };
    let mut rows: Vec<ListedRow> = query
        .limit(i64::from(filter.limit) + 1)
        .select(listed())
        .load(conn)
        .await
        .map_err(store_error)?;
    let more_beyond = rows.len() > filter.limit as usize;
    rows.truncate(filter.limit as usize);
    let more_behind = any_task(conn, filtered(filter)?.filter(behind)).await?;
    if walking_back {
        rows.reverse();
        Ok((rows, more_behind, more_beyond))
    } else {
        Ok((rows, more_beyond, more_behind))
    }
}

/// What a list's total can be counted from without reading the tasks
/// the filter selects one by one.
enum Total {
    /// The kept counts: the filter selects by status alone, or not at all.
    KeptCounts,
    /// The droplet's rows in `tasks` and in `task_runs`, each by its
    /// droplet index: the filter selects by droplet, perhaps by status.
    DropletIndexes(i32),
    /// Counted over the filter.
    Filter,
}

impl Total {
    fn of(filter: &TaskFilter) -> Total {
        let TaskFilter {
            status: _,
            task_type,
            priority_min,
            priority_max,
            assigned_droplet_id,
            required_capability,
            search,
            limit: _,
            offset: _,
            cursor: _,
        } = filter;
        let by_status_at_most = task_type.is_none()
            && priority_min.is_none()
            && priority_max.is_none()
            && required_capability.is_none()
            && search.is_none();
        match assigned_droplet_id.map(i32::try_from) {
            _ if !by_status_at_most => Total::Filter,
            None => Total::KeptCounts,
            Some(Ok(droplet)) => Total::DropletIndexes(droplet),
            Some(Err(_)) => Total::Filter,
        }
    }
}

/// Tasks by status from the kept counts and the run rows
/// ([`sql::tasks::COUNT_BY_STATUS`]).
async fn kept_counts(conn: &mut AsyncPgConnection) -> StoreResult<Vec<crate::analytics::CountRow>> {
    diesel::sql_query(sql::tasks::COUNT_BY_STATUS)
        .prepared()
        .load(conn)
        .await
        .map_err(store_error)
}

/// The number of tasks `filter` selects.
async fn list_total(conn: &mut AsyncPgConnection, filter: &TaskFilter) -> StoreResult<u64> {
    let status = filter.status.map(|s| s.as_str());
    let total: i64 = match Total::of(filter) {
        Total::KeptCounts => kept_counts(conn)
            .await?
            .into_iter()
            .filter(|c| status.is_none_or(|s| s == c.key))
            .map(|c| c.n)
            .sum(),
        // Planned for the values bound, so that without a status the
        // droplet index alone answers.
        Total::DropletIndexes(droplet) => {
            let counted: crate::analytics::CountRow = sql::tasks::CountOfDroplet { droplet, status }
                .planned_per_call()
                .get_result(conn)
                .await
                .map_err(store_error)?;
            counted.n
        }
        Total::Filter => filtered(filter)?
            .count()
            .get_result(conn)
            .await
            .map_err(store_error)?,
    };
    Ok(u64::try_from(total).unwrap_or(0))
}

/// An `ILIKE` pattern for titles containing `text`, its wildcards escaped.
fn contains(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

#[async_trait]
impl TaskStore for PgStore {
    async fn create_task(
        &self,
        task: NewTask,
        trace_id: Uuid,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let creation = Creation {
            task,
            trace_id,
            record,
            at,
        };
        self.creates.submit(&self.pool, creation).await
    }

    async fn create_tasks(
        &self,
        tasks: Vec<(NewTask, Uuid)>,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<Task>> {
        let creations = Creation::all(tasks, &record, at);
        crate::creates::create_all(&self.pool, &creations).await
    }

    async fn create_tasks_once(
        &self,
        key: &IdempotencyKey,
        tasks: Vec<(NewTask, Uuid)>,
        record: ChangeRecord,
        at: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<OnceCreated> {
        let creations = Creation::all(tasks, &record, at);
        let mut conn = self.conn().await?;
        let keyed = crate::idempotency::create_once(&mut conn, key, &creations, at, expired_before).await?;
        drop(conn);
        match keyed {
            Keyed::Created(tasks) => Ok(OnceCreated::Created(tasks)),
            Keyed::Reused => Ok(OnceCreated::KeyReused),
            Keyed::Seen(ids) => {
                let mut tasks = Vec::with_capacity(ids.len());
                for id in ids {
                    tasks.push(self.get_task(id).await?);
                }
                Ok(OnceCreated::Replayed(tasks))
            }
        }
    }

    async fn delete_expired_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        crate::idempotency::delete_expired(&mut conn, before).await
    }

    async fn delete_finished_tasks(&self, before: DateTime<Utc>, batch: u32) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        let deleted = sql::tasks::DeleteFinished {
            before: naive(before),
            limit: i32::try_from(batch).unwrap_or(i32::MAX),
        }
        .query()
        .execute(&mut conn)
        .await
        .map_err(store_error)?;
        Ok(deleted as u64)
    }

    async fn get_task(&self, id: TaskId) -> StoreResult<Task> {
        let key = id;
        let mut conn = self.conn().await?;
        let found: Option<(TaskRow, Option<i32>)> = task_view::table
            .left_join(droplets::table)
            .filter(task_view::id.eq(key))
            .select((TaskRow::as_select(), droplets::droplet_id.nullable()))
            .first(&mut conn)
            .await
            .optional()
            .map_err(store_error)?;
        let (row, droplet) = found.ok_or(StoreError::NotFound { entity: "task", id })?;
        row.into_task(droplet)
    }

    async fn task_history(&self, id: TaskId) -> StoreResult<Vec<HistoryEntry>> {
        let key = id;
        let mut conn = self.conn().await?;
        let exists: Option<i64> = tasks::table
            .filter(tasks::id.eq(key))
            .select(tasks::id)
            .first(&mut conn)
            .await
            .optional()
            .map_err(store_error)?;
        exists.ok_or(StoreError::NotFound { entity: "task", id })?;
        let rows: Vec<HistoryRow> = task_state_history::table
            .filter(task_state_history::task_id.eq(key))
            .order(task_state_history::id.asc())
            .select(HistoryRow::as_select())
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        rows.into_iter().map(HistoryRow::into_entry).collect()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<TaskPage> {
        let mut conn = self.conn().await?;
        let total = list_total(&mut conn, filter).await?;
        let (rows, more_after, more_before) = match filter.cursor {
            None => {
                let rows = offset_page(&mut conn, filter).await?;
                let more_after = filter.offset.saturating_add(rows.len() as u64) < total;
                (rows, more_after, filter.offset > 0 && total > 0)
            }
            Some(cursor) => keyset_page(&mut conn, filter, cursor).await?,
        };
        let tasks = rows
            .into_iter()
            .map(|(row, droplet)| row.into_task(droplet))
            .collect::<StoreResult<Vec<Task>>>()?;
        Ok(TaskPage {
            tasks,
            total,
            more_after,
            more_before,
        })
    }

    async fn apply_transition(&self, transition: Transition) -> StoreResult<Task> {
        let mut outcomes = self.commits.submit(&self.pool, vec![transition]).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("no outcome for the change".into())))
    }

    async fn apply_report(&self, report: Report) -> StoreResult<ReportOutcome> {
        let mut outcomes = self.reports.submit(&self.pool, vec![report]).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("no outcome for the report".into())))
    }

    async fn record_refused_report(
        &self,
        id: TaskId,
        status: TaskStatus,
        record: ChangeRecord,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let written = sql::history::RecordForTask {
            task: id,
            status: status.as_str(),
            changed_by: record.changed_by,
            reason: record.reason,
            metadata: record.metadata,
            at: naive(at),
        }
        .planned_per_call()
        .execute(&mut conn)
        .await
        .map_err(store_error)?;
        if written == 0 {
            return Err(StoreError::NotFound { entity: "task", id });
        }
        Ok(())
    }

    async fn record_cancel_request(&self, task: &Task, record: ChangeRecord) -> StoreResult<Task> {
        let key = task.id;
        let at = task.cancel_requested_at.unwrap_or(task.updated_at);
        let droplet = task.assigned_droplet_id.map(droplet_key).transpose()?;
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        conn.transaction::<_, TxError, _>(async move |conn| {
            let marked = sql::tasks::MarkCancelRequested {
                task: key,
                at: naive(at),
                droplet,
            }
            .query()
            .execute(conn)
            .await?;
            if marked == 0 {
                return Err(TxError::Store(StoreError::Conflict(format!(
                    "task {key} is no longer running on the droplet it was asked to stop on"
                ))));
            }
            diesel::insert_into(task_state_history::table)
                .values(history_row(
                    key,
                    Some(TaskStatus::InProgress),
                    TaskStatus::InProgress,
                    record,
                    at,
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await?;
        self.get_task(task.id).await
    }

    async fn claim_pending(&self, query: &RoutableQuery) -> StoreResult<Vec<Task>> {
        let mut conn = self.conn().await?;
        let capabilities: Vec<String> = query.capabilities.iter().map(|c| c.as_str().to_owned()).collect();
        let rows: Vec<TaskRow> = sql::tasks::ClaimPending {
            unconstrained: query.include_unconstrained,
            capabilities,
            limit: i32::try_from(query.limit).unwrap_or(i32::MAX),
            lease_seconds: query.lease.as_secs_f64(),
        }
        .query()
        .load(&mut conn)
        .await
        .map_err(store_error)?;
        let mut tasks = rows
            .into_iter()
            .map(|row| row.into_task(None))
            .collect::<StoreResult<Vec<Task>>>()?;
        // RETURNING does not keep the subquery's order.
        tasks.sort_by_key(Task::routing_order);
        Ok(tasks)
    }

    /// The round in one transaction: the tasks are locked, planned and
    /// assigned with their history rows, then committed; tasks left
    /// pending are only unlocked. Nothing is written to claim them, and a
    /// round cut short rolls back and hides nothing.
    async fn route_round(
        &self,
        query: &RoutableQuery,
        planner: &mut (dyn RoundPlanner + 'static),
    ) -> StoreResult<RoutedRound> {
        let capabilities: Vec<String> = query.capabilities.iter().map(|c| c.as_str().to_owned()).collect();
        let limit = i32::try_from(query.limit).unwrap_or(i32::MAX);
        let include_unconstrained = query.include_unconstrained;
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let round = conn
            .transaction::<_, TxError, _>(async move |conn| {
                // One round trip: the pick between its planner settings,
                // and the savepoint the assignments fall back to.
                let (_, rows, _, _) = futures_util::future::try_join4(
                    diesel::sql_query(sql::tasks::PICK_BY_QUEUE_ORDER).execute(&mut &*conn),
                    sql::tasks::LockRoutable {
                        unconstrained: include_unconstrained,
                        capabilities,
                        limit,
                    }
                    .query()
                    .load::<TaskRow>(&mut &*conn),
                    diesel::sql_query(sql::tasks::PLAN_AS_USUAL).execute(&mut &*conn),
                    diesel::sql_query(sql::tasks::ROUND_SAVEPOINT).execute(&mut &*conn),
                )
                .await?;
                let pending = rows
                    .into_iter()
                    .map(|row| row.into_task(None))
                    .collect::<StoreResult<Vec<Task>>>()?;
                let plans = planner.plan(&pending);
                let outcomes = assign_or_fall_back(conn, &plans).await?;
                Ok(RoutedRound {
                    claimed: pending.len(),
                    outcomes,
                })
            })
            .await?;
        Ok(round)
    }

    async fn release_claims(&self, ids: &[TaskId]) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        sql::tasks::ReleaseClaims { tasks: ids }
            .query()
            .execute(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        #[derive(QueryableByName)]
        struct NextDue {
            #[diesel(sql_type = Nullable<Timestamp>)]
            at: Option<chrono::NaiveDateTime>,
        }
        let mut conn = self.conn().await?;
        let next: NextDue = diesel::sql_query(sql::tasks::NEXT_DUE)
            .prepared()
            .get_result(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(next.at.map(utc))
    }

    async fn active_task_counts(&self) -> StoreResult<HashMap<DropletId, u32>> {
        #[derive(QueryableByName)]
        struct Held {
            #[diesel(sql_type = Integer)]
            droplet: i32,
            #[diesel(sql_type = BigInt)]
            held: i64,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Held> = diesel::sql_query(sql::tasks::COUNT_HELD_BY_ALL)
            .prepared()
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    DropletId::from(r.droplet),
                    u32::try_from(r.held).unwrap_or(u32::MAX),
                )
            })
            .collect())
    }

    async fn tasks_to_recover(&self, query: &RecoveryQuery) -> StoreResult<Vec<RecoveryCandidate>> {
        let mut conn = self.conn().await?;
        let rows: Vec<RecoveryRow> = sql::tasks::ToRecover {
            ack_timeout: query.ack_timeout.as_secs_f64(),
            heartbeat_timeout: query.heartbeat_timeout.as_secs_f64(),
            run_timeout: query.run_timeout.as_secs_f64(),
            after: query.after,
            limit: i32::try_from(query.limit).unwrap_or(i32::MAX),
        }
        .query()
        .load(&mut conn)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|row| {
                let reason = row
                    .reason
                    .parse()
                    .map_err(|e: String| StoreError::Unavailable(e))?;
                Ok(RecoveryCandidate {
                    task: row.task.into_task(row.external_droplet_id)?,
                    reason,
                })
            })
            .collect()
    }

    async fn record_progress(&self, report: ProgressReport) -> StoreResult<ReportOutcome> {
        #[derive(QueryableByName)]
        struct Recorded {
            #[diesel(embed)]
            task: TaskRow,
            #[diesel(sql_type = Text)]
            droplet_name: String,
        }
        // A droplet beyond the column's range holds no task.
        let Ok(droplet) = i32::try_from(report.droplet) else {
            return Ok(ReportOutcome::NotApplied { current: None });
        };
        let progress = &report.progress;
        let mut conn = self.conn().await?;
        let row: Option<Recorded> = sql::tasks::RecordProgress {
            task: report.task_id,
            attempt: i32::try_from(report.attempt).unwrap_or(i32::MAX),
            droplet,
            percent: progress.percent.map(i16::from),
            message: progress.message.as_deref(),
            at: naive(progress.at),
        }
        .query()
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(store_error)?;
        Ok(match row {
            Some(row) => ReportOutcome::Applied {
                from: TaskStatus::InProgress,
                task: row.task.into_task(Some(droplet))?,
                droplet_name: Some(row.droplet_name),
            },
            None => ReportOutcome::NotApplied { current: None },
        })
    }

    async fn flag_deadline_risks(&self, floor: Duration, limit: u32) -> StoreResult<Vec<Task>> {
        let mut conn = self.conn().await?;
        let rows: Vec<TaskWithDropletRow> = sql::tasks::FlagDeadlineRisks {
            floor_seconds: floor.as_secs_f64(),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
        }
        .query()
        .load(&mut conn)
        .await
        .map_err(store_error)?;
        let mut tasks = rows
            .into_iter()
            .map(|row| row.task.into_task(row.external_droplet_id))
            .collect::<StoreResult<Vec<Task>>>()?;
        tasks.sort_by_key(|t| (t.deadline, t.id));
        Ok(tasks)
    }

    async fn count_live_tasks(&self) -> StoreResult<LiveCounts> {
        #[derive(QueryableByName)]
        struct Live {
            #[diesel(sql_type = BigInt)]
            pending: i64,
            #[diesel(sql_type = BigInt)]
            held: i64,
        }
        let mut conn = self.conn().await?;
        let live: Live = diesel::sql_query(sql::tasks::COUNT_LIVE)
            .prepared()
            .get_result(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(LiveCounts {
            pending: u64::try_from(live.pending).unwrap_or(0),
            held: u64::try_from(live.held).unwrap_or(0),
        })
    }

    async fn count_tasks_by_status(&self) -> StoreResult<HashMap<TaskStatus, u64>> {
        let mut conn = self.conn().await?;
        let rows = kept_counts(&mut conn).await?;
        Ok(counts_by_status(rows.into_iter().map(|r| (r.key, r.n)).collect()))
    }

    async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        let mut conn = self.conn().await?;
        crate::migrations::pending_migrations(&mut conn).await
    }
}

/// `(status, count)` rows as a map; a status this version does not know is left out.
fn counts_by_status<S: std::str::FromStr + Eq + std::hash::Hash>(
    rows: Vec<(String, i64)>,
) -> HashMap<S, u64> {
    rows.into_iter()
        .filter_map(|(status, n)| Some((status.parse().ok()?, u64::try_from(n).unwrap_or(0))))
        .collect()
}

/// Applies a round's assignments within its transaction, after the
/// savepoint its pick set ([`sql::tasks::ROUND_SAVEPOINT`]): all at once,
/// or, when that fails with a database error, back to the savepoint and
/// each in a savepoint of its own, so that one assignment the database
/// refuses gets the error alone and the others are still made (the tasks
/// stay locked throughout).
async fn assign_or_fall_back(
    conn: &mut AsyncPgConnection,
    plans: &[Transition],
) -> Result<Vec<StoreResult<Task>>, TxError> {
    match crate::batch::apply_batch(conn, plans).await {
        Ok(outcomes) => return Ok(outcomes),
        Err(err) => {
            tracing::debug!(error = %err, "a round's assignments failed together; applying them one by one");
            diesel::sql_query(sql::tasks::BACK_TO_ROUND_SAVEPOINT)
                .execute(conn)
                .await?;
        }
    }
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in plans {
        let one = conn
            .transaction::<_, TxError, _>(async |conn| {
                Ok(crate::batch::apply_batch(conn, std::slice::from_ref(plan)).await?)
            })
            .await;
        outcomes.push(match one {
            Ok(mut outcome) => outcome
                .pop()
                .unwrap_or_else(|| Err(StoreError::Unavailable("no outcome for the assignment".into()))),
            Err(err) => Err(StoreError::from(err)),
        });
    }
    Ok(outcomes)
}

#[async_trait]
impl DropletStore for PgStore {
    async fn register_droplet(
        &self,
        registration: DropletRegistration,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange> {
        self.upsert(registration, at, Arrival::Registered).await
    }

    async fn sync_droplet(
        &self,
        entry: DropletRegistration,
        service_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange> {
        self.upsert(entry, at, Arrival::Listed { service_id }).await
    }

    async fn find_droplet_by_service(&self, service: &ServiceRef) -> StoreResult<Option<DropletId>> {
        let mut conn = self.conn().await?;
        let found: Vec<i32> = match service {
            ServiceRef::Id(id) => {
                droplets::table
                    .filter(droplets::service_id.eq(id))
                    .select(droplets::droplet_id)
                    .load(&mut conn)
                    .await
            }
            ServiceRef::Name(name) => {
                droplets::table
                    .filter(droplets::listed_name.eq(name))
                    .select(droplets::droplet_id)
                    .limit(2)
                    .load(&mut conn)
                    .await
            }
        }
        .map_err(store_error)?;
        // A name two droplets share names neither.
        Ok(match found.as_slice() {
            [one] => Some(DropletId::from(*one)),
            _ => None,
        })
    }

    async fn get_droplet(&self, id: DropletId) -> StoreResult<Droplet> {
        let mut conn = self.conn().await?;
        let row = droplet_row(&mut conn, id, false)
            .await
            .map_err(StoreError::from)?;
        let mut droplet = row.into_droplet()?;
        self.liveness.overlay(&mut droplet);
        Ok(droplet)
    }

    async fn list_droplets(&self, filter: &DropletFilter) -> StoreResult<Vec<Droplet>> {
        let mut query = droplets::table.into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(droplets::status.eq(status.as_str()));
        }
        if let Some(capability) = &filter.capability {
            query = query.filter(droplets::capabilities.contains(serde_json::json!([capability.as_str()])));
        }
        let mut conn = self.conn().await?;
        let rows: Vec<DropletRow> = query
            .order(droplets::droplet_id.asc())
            .select(DropletRow::as_select())
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        rows.into_iter()
            .map(|row| {
                let mut droplet = row.into_droplet()?;
                self.liveness.overlay(&mut droplet);
                Ok(droplet)
            })
            .collect()
    }

    async fn record_heartbeat(
        &self,
        id: DropletId,
        report: HeartbeatReport,
        at: DateTime<Utc>,
        sample_every: Duration,
    ) -> StoreResult<DropletChange> {
        let report = match self.liveness.absorb(id, report, at, sample_every) {
            Ok(change) => {
                self.liveness.start_flusher(&self.pool, self.services.as_deref());
                return Ok(change);
            }
            Err(report) => report,
        };
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let (internal, change) = conn
            .transaction::<_, TxError, _>(async move |conn| {
                let (internal, before) = locked_droplet(conn, id).await?;
                let status = before.status_after_heartbeat(report.status);
                sql::heartbeats::Sample {
                    droplet: internal,
                    status: report.status.unwrap_or(DropletStatus::Active).as_str(),
                    metrics: &report.metrics,
                    at: naive(at),
                    sample_every: sample_every.as_secs_f64(),
                    status_changed: status != before.status,
                }
                .query()
                .execute(conn)
                .await?;
                let after =
                    update_status(conn, internal, status, before.manually_deactivated, Some(at), at).await?;
                let change = DropletChange {
                    droplet: after,
                    previous_status: Some(before.status),
                };
                Ok((internal, change))
            })
            .await?;
        self.liveness.remember(internal, change.droplet.clone());
        Ok(change)
    }

    async fn set_droplet_status(
        &self,
        id: DropletId,
        status: DropletStatus,
        manual: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<DropletChange> {
        let mut pooled = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let change = conn
            .transaction::<_, TxError, _>(async move |conn| {
                let (internal, before) = locked_droplet(conn, id).await?;
                let after = update_status(conn, internal, status, manual, before.last_heartbeat, at).await?;
                Ok(DropletChange {
                    droplet: after,
                    previous_status: Some(before.status),
                })
            })
            .await?;
        self.liveness.forget(id);
        Ok(change)
    }

    async fn mark_silent_droplets(&self, timeout: Duration) -> StoreResult<Vec<DropletChange>> {
        // Heartbeats absorbed here are signs of life the database must see first.
        self.liveness.flush(&self.pool).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<DropletRow> = sql::droplets::MarkSilent {
            timeout_seconds: timeout.as_secs_f64(),
        }
        .query()
        .load(&mut conn)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|row| {
                let droplet = row.into_droplet()?;
                self.liveness.forget(droplet.droplet_id);
                Ok(DropletChange {
                    droplet,
                    previous_status: Some(DropletStatus::Active),
                })
            })
            .collect()
    }

    async fn delete_old_heartbeats(&self, age: Duration, batch: u32) -> StoreResult<u64> {
        self.liveness.flush(&self.pool).await?;
        let mut conn = self.conn().await?;
        let deleted = sql::heartbeats::DeleteOld {
            age_seconds: age.as_secs_f64(),
            limit: i32::try_from(batch).unwrap_or(i32::MAX),
        }
        .query()
        .execute(&mut conn)
        .await
        .map_err(store_error)?;
        Ok(deleted as u64)
    }

    async fn flush_heartbeats(&self) -> StoreResult<()> {
        self.liveness.flush(&self.pool).await
    }

    fn heartbeat_backlog(&self) -> HeartbeatBacklog {
        self.liveness.backlog()
    }

    async fn count_droplets_by_status(&self) -> StoreResult<HashMap<DropletStatus, u64>> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, i64)> = droplets::table
            .group_by(droplets::status)
            .select((droplets::status, count_star()))
            .load(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(counts_by_status(rows))
    }
}

async fn update_status(
    conn: &mut AsyncPgConnection,
    internal: i64,
    status: DropletStatus,
    manual: bool,
    last_heartbeat: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Result<Droplet, TxError> {
    let row: DropletRow = diesel::update(droplets::table.filter(droplets::id.eq(internal)))
        .set((
            droplets::status.eq(status.as_str()),
            droplets::manually_deactivated.eq(manual),
            droplets::last_heartbeat.eq(last_heartbeat.map(naive)),
            droplets::updated_at.eq(Some(naive(at))),
        ))
        .returning(DropletRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row.into_droplet()?)
}

/// How a droplet comes to be known: its own registration is a sign of
/// life; the Registry listing it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Registered,
    /// Listed in the directory, with the Registry's id for the service when
    /// the directory gives one.
    Listed {
        service_id: Option<i64>,
    },
}

/// Inserts the droplet, or updates the one with this `droplet_id`: a
/// registration also sets its capacity and liveness, a listing only
/// describes it (a new listed droplet is `inactive` until it beats).
async fn upsert_droplet(
    conn: &mut AsyncPgConnection,
    registration: DropletRegistration,
    at: DateTime<Utc>,
    arrival: Arrival,
) -> Result<DropletChange, TxError> {
    let capabilities = serde_json::to_value(&registration.capabilities)
        .map_err(|e| TxError::Store(StoreError::Unavailable(e.to_string())))?;
    let key = droplet_key(registration.droplet_id)?;
    let capacity = i32::try_from(registration.max_concurrent_tasks).unwrap_or(i32::MAX);
    let (status, heartbeat, service_id) = match arrival {
        Arrival::Registered => (DropletStatus::Active, Some(naive(at)), None),
        Arrival::Listed { service_id } => (DropletStatus::Inactive, None, service_id),
    };
    // Only the Registry's listing says under which name a service is known.
    let listed_name = matches!(arrival, Arrival::Listed { .. }).then_some(registration.name.as_str());
    if let Some(service_id) = service_id {
        // The directory's latest word wins: a service id moved to another
        // droplet leaves the one that had it.
        diesel::update(
            droplets::table
                .filter(droplets::service_id.eq(service_id))
                .filter(droplets::droplet_id.ne(key)),
        )
        .set(droplets::service_id.eq(None::<i64>))
        .execute(conn)
        .await?;
    }
    let inserted: Option<DropletRow> = diesel::insert_into(droplets::table)
        .values((
            droplets::droplet_id.eq(key),
            droplets::name.eq(&registration.name),
            droplets::steward.eq(&registration.steward),
            droplets::endpoint.eq(&registration.endpoint),
            droplets::capabilities.eq(Some(&capabilities)),
            droplets::status.eq(status.as_str()),
            droplets::max_concurrent_tasks.eq(capacity),
            droplets::last_heartbeat.eq(heartbeat),
            droplets::registered_at.eq(Some(naive(at))),
            droplets::updated_at.eq(Some(naive(at))),
            droplets::service_id.eq(service_id),
            droplets::session_started_at.eq(heartbeat),
            droplets::listed_name.eq(listed_name),
        ))
        .on_conflict(droplets::droplet_id)
        .do_nothing()
        .returning(DropletRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(row) = inserted {
        return Ok(DropletChange {
            droplet: row.into_droplet()?,
            previous_status: None,
        });
    }
    let (internal, before) = locked_droplet(conn, registration.droplet_id).await?;
    let target = droplets::table.filter(droplets::id.eq(internal));
    let described = (
        droplets::name.eq(&registration.name),
        droplets::steward.eq(&registration.steward),
        droplets::endpoint.eq(&registration.endpoint),
        droplets::capabilities.eq(Some(&capabilities)),
        droplets::updated_at.eq(Some(naive(at))),
    );
    // A registration without `resume` is a new process: what was assigned
    // before it is recovered (see `TO_RECOVER`).
    let session = match before.session_started_at {
        Some(kept) if registration.resume => naive(kept),
        _ => naive(at),
    };
    let update = match arrival {
        Arrival::Registered => {
            diesel::update(target)
                .set((
                    described,
                    droplets::max_concurrent_tasks.eq(capacity),
                    droplets::status.eq(before.status_after_heartbeat(None).as_str()),
                    droplets::last_heartbeat.eq(heartbeat),
                    droplets::session_started_at.eq(Some(session)),
                ))
                .returning(DropletRow::as_returning())
                .get_result(conn)
                .await
        }
        Arrival::Listed { service_id: None } => {
            diesel::update(target)
                .set((described, droplets::listed_name.eq(listed_name)))
                .returning(DropletRow::as_returning())
                .get_result(conn)
                .await
        }
        Arrival::Listed {
            service_id: Some(service_id),
        } => {
            diesel::update(target)
                .set((
                    described,
                    droplets::service_id.eq(service_id),
                    droplets::listed_name.eq(listed_name),
                ))
                .returning(DropletRow::as_returning())
                .get_result(conn)
                .await
        }
    };
    let row: DropletRow = update?;
    Ok(DropletChange {
        droplet: row.into_droplet()?,
        previous_status: Some(before.status),
    })
}

#[cfg(test)]
mod tests {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use orchestrator_ports::TaskFilter;
    use orchestrator_testkit::pg::TestDatabase;

    use crate::run_migrations;
    use crate::sql::plans::explain;

    /// The walk down to an offset page's first task reads the task rows
    /// alone: the view's run rows and the droplets drop out of its plan
    /// (join removal, whatever the statistics), so that skipping half a
    /// million tasks is a walk of one index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_offset_page_is_found_in_the_task_rows_alone() {
        let database = TestDatabase::create().await;
        run_migrations(&database.url).await.expect("migrations");
        let filter = TaskFilter {
            limit: 50,
            offset: 500_000,
            ..TaskFilter::default()
        };
        let query = super::page_start(&filter).expect("query");
        let rendered = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
        let (sql, binds) = rendered.split_once(" -- binds: ").expect("binds");
        assert_eq!(binds, "[1, 500000]", "{rendered}");
        let mut conn = AsyncPgConnection::establish(&database.url)
            .await
            .expect("connect");
        diesel::sql_query(format!("PREPARE page_start AS {sql}"))
            .execute(&mut conn)
            .await
            .expect("prepare");
        let plan = explain(&mut conn, "EXECUTE page_start(1, 500000)")
            .await
            .expect("explain");
        assert!(plan.contains("on tasks"), "{plan}");
        assert!(
            !plan.contains("task_runs") && !plan.contains("droplets"),
            "{plan}"
        );
    }
}
