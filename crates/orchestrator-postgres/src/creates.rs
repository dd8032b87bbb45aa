//! Grouped task creation: tasks submitted while a batch is being written
//! wait and go together in the next one, each batch a single statement
//! (tasks and their first history rows, one round trip, one commit). Like
//! the group commit of transitions, there is no timed window: a lone task is
//! written at once, and batches grow only while work arrives faster than
//! commits end.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::{NewTask, Task};
use orchestrator_ports::{ChangeRecord, StoreError, StoreResult};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::{pool_error, store_error};
use crate::rows::{TaskRow, naive};
use crate::sql;

/// The most tasks one statement carries.
const MAX_BATCH: usize = 500;
/// Batches written at once (as for transitions: one writes while one waits).
const IN_FLIGHT: usize = 2;

/// One task to create, as `TaskStore::create_task` receives it.
pub(crate) struct Creation {
    pub task: NewTask,
    pub trace_id: Uuid,
    pub record: ChangeRecord,
    pub at: DateTime<Utc>,
}

impl Creation {
    /// One creation per task, all with `record` at `at`.
    pub fn all(tasks: Vec<(NewTask, Uuid)>, record: &ChangeRecord, at: DateTime<Utc>) -> Vec<Creation> {
        tasks
            .into_iter()
            .map(|(task, trace_id)| Creation {
                task,
                trace_id,
                record: record.clone(),
                at,
            })
            .collect()
    }
}

struct Queued {
    creation: Creation,
    reply: oneshot::Sender<StoreResult<Task>>,
}

pub(crate) struct CreateBatcher {
    queue: Mutex<Vec<Queued>>,
    turns: tokio::sync::Semaphore,
}

impl Default for CreateBatcher {
    fn default() -> Self {
        CreateBatcher {
            queue: Mutex::default(),
            turns: tokio::sync::Semaphore::new(IN_FLIGHT),
        }
    }
}

impl CreateBatcher {
    /// Creates the task, in a batch with whatever else is waiting.
    pub async fn submit(&self, pool: &Pool<AsyncPgConnection>, creation: Creation) -> StoreResult<Task> {
        let (reply, receiver) = oneshot::channel();
        self.queue().push(Queued { creation, reply });
        {
            let Ok(_turn) = self.turns.acquire().await else {
                unreachable!("the semaphore is never closed")
            };
            while let Some(batch) = self.next_batch() {
                // Written on a task of its own: a caller that goes away
                // mid-write must not cut the statement of everyone else.
                if tokio::spawn(write(pool.clone(), batch)).await.is_err() {
                    tracing::error!("a grouped task creation stopped before it finished");
                }
            }
        }
        receiver.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the creation of this task was interrupted; list the tasks to see whether it was made".into(),
            ))
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut queue = self.queue();
        if queue.is_empty() {
            return None;
        }
        let size = queue.len().min(MAX_BATCH);
        let rest = queue.split_off(size);
        Some(std::mem::replace(&mut *queue, rest))
    }
}

/// Writes one batch and answers each task. When the batch as a whole fails,
/// its tasks are written one by one so that only the one at fault gets the error.
async fn write(pool: Pool<AsyncPgConnection>, batch: Vec<Queued>) {
    let (creations, replies): (Vec<Creation>, Vec<_>) =
        batch.into_iter().map(|q| (q.creation, q.reply)).unzip();
    let outcomes = match insert(&pool, &creations).await {
        Ok(tasks) => tasks,
        Err(err) if creations.len() == 1 => vec![Err(err)],
        Err(_) => {
            let mut outcomes = Vec::with_capacity(creations.len());
            for creation in &creations {
                let one = insert(&pool, std::slice::from_ref(creation)).await;
                outcomes.push(one.and_then(|mut tasks| tasks.pop().unwrap_or_else(|| Err(missing()))));
            }
            outcomes
        }
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that went away no longer needs its answer.
        let _ = reply.send(outcome);
    }
}

fn missing() -> StoreError {
    StoreError::Unavailable("the store returned no row for a created task".into())
}

/// Inserts all of `creations` in one statement, hence one commit: all of
/// them or none. Submitted as a batch by its caller, it does not wait for the
/// grouped creations of others.
pub(crate) async fn create_all(
    pool: &Pool<AsyncPgConnection>,
    creations: &[Creation],
) -> StoreResult<Vec<Task>> {
    if creations.is_empty() {
        return Ok(Vec::new());
    }
    insert(pool, creations).await?.into_iter().collect()
}

/// Inserts the tasks with their history rows in one statement; the outcomes
/// are in the order of `creations`.
async fn insert(
    pool: &Pool<AsyncPgConnection>,
    creations: &[Creation],
) -> StoreResult<Vec<StoreResult<Task>>> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    insert_on(&mut conn, creations).await
}

/// As `insert`, on the caller's connection (and in its transaction, if any).
pub(crate) async fn insert_on(
    conn: &mut AsyncPgConnection,
    creations: &[Creation],
) -> StoreResult<Vec<StoreResult<Task>>> {
    let rows: Vec<TaskRow> = columns_of(creations)
        .query()
        .load(conn)
        .await
        .map_err(store_error)?;
    let mut by_trace: HashMap<Uuid, TaskRow> = rows.into_iter().map(|row| (row.trace_id, row)).collect();
    Ok(creations
        .iter()
        .map(|c| {
            by_trace
                .remove(&c.trace_id)
                .ok_or_else(missing)
                .and_then(|row| row.into_task(None))
        })
        .collect())
}

/// A batch as the statement's parallel arrays.
fn columns_of(creations: &[Creation]) -> sql::tasks::InsertWithHistory {
    let mut columns = sql::tasks::InsertWithHistory::default();
    for Creation {
        task,
        trace_id,
        record,
        at,
    } in creations
    {
        columns.trace_id.push(*trace_id);
        columns.task_type.push(task.task_type.clone());
        columns.title.push(task.title.clone());
        columns.description.push(task.description.clone());
        columns.payload.push(task.payload.clone());
        columns
            .required_capability
            .push(task.required_capability.as_ref().map(|c| c.as_str().to_owned()));
        columns.priority.push(i32::from(task.priority.value()));
        columns.created_at.push(naive(*at));
        columns.deadline.push(task.deadline.map(naive));
        columns
            .max_retries
            .push(i32::try_from(task.max_retries).unwrap_or(i32::MAX));
        columns.created_by.push(record.changed_by.clone());
        columns.reason.push(record.reason.clone());
        columns.metadata.push(record.metadata.clone());
        columns
            .timeout_seconds
            .push(task.timeout_seconds.map(|t| i32::try_from(t).unwrap_or(i32::MAX)));
        columns.run_at.push(task.run_at.map(naive));
        columns.concurrency_key.push(task.concurrency_key.clone());
    }
    columns
}
