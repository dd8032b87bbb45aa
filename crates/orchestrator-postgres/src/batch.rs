//! Transitions applied many at a time: one transaction and a fixed number of
//! statements for a whole batch, whatever its size. Each transition is still
//! its own compare-and-set with its own outcome: one that lost a race, or an
//! assignment to a full droplet, fails alone and the others are applied.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::{ConcurrencyLimit, DropletId, DropletStatus, Task, TaskStatus, has_room};
use orchestrator_ports::{StoreError, StoreResult, Transition};

use crate::rows::{LiveRow, naive};
use crate::sql;

/// The outcome of each transition of a batch, in the batch's order.
pub(crate) type Outcomes = Vec<StoreResult<Task>>;

/// Applies `batch` inside the caller's transaction. Task ids must be
/// distinct. A database error fails the whole batch (the caller retries its
/// transitions one by one to tell which one caused it).
pub(crate) async fn apply_batch(
    conn: &mut AsyncPgConnection,
    batch: &[Transition],
) -> Result<Outcomes, diesel::result::Error> {
    let mut outcomes: Vec<Option<StoreResult<Task>>> = vec![None; batch.len()];
    let slots = reserve_slots(conn, batch, &mut outcomes).await?;
    reserve_keys(conn, batch, &mut outcomes).await?;
    let accepted: Vec<usize> = (0..batch.len()).filter(|i| outcomes[*i].is_none()).collect();
    // The history rows are written by the same statement, for the rows it changed.
    let rows = update_tasks(conn, batch, &accepted, &slots).await?;
    let mut applied: HashMap<i64, LiveRow> = rows.into_iter().map(|row| (row.id, row)).collect();
    let missed: Vec<i64> = accepted
        .iter()
        .map(|&i| batch[i].task.id)
        .filter(|key| !applied.contains_key(key))
        .collect();
    let current = current_statuses(conn, &missed).await?;
    for i in accepted {
        let transition = &batch[i];
        let key = transition.task.id;
        outcomes[i] = Some(match applied.remove(&key) {
            Some(row) => row.over(
                transition.task.clone(),
                external(transition.task.assigned_droplet_id),
            ),
            None => Err(lost_race(transition, current.get(&key))),
        });
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Unavailable("transition left unapplied".into()))))
        .collect())
}

fn external(droplet: Option<DropletId>) -> Option<i32> {
    droplet.and_then(|d| i32::try_from(d).ok())
}

fn task_not_found(id: i64) -> StoreError {
    StoreError::NotFound { entity: "task", id }
}

/// A droplet an assignment of the batch goes to, as locked.
#[derive(Debug, QueryableByName)]
struct TargetRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    droplet_id: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    max_concurrent_tasks: i32,
}

#[derive(Debug, QueryableByName)]
struct HeldRow {
    #[diesel(sql_type = Integer)]
    droplet: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    held: i64,
}

/// Locks the droplets the batch assigns to, in id order so that concurrent
/// batches cannot deadlock, and takes a slot for each assignment in batch
/// order. An assignment to a droplet that is missing, not active or full gets
/// its outcome here and is left out of the update. Returns the internal ids
/// of the droplets locked, by external id.
async fn reserve_slots(
    conn: &mut AsyncPgConnection,
    batch: &[Transition],
    outcomes: &mut [Option<StoreResult<Task>>],
) -> Result<HashMap<DropletId, i64>, diesel::result::Error> {
    let targets: Vec<i32> = batch
        .iter()
        .filter(|t| t.task.status == TaskStatus::Assigned)
        .filter_map(|t| external(t.task.assigned_droplet_id))
        .collect();
    if targets.is_empty() {
        return Ok(HashMap::new());
    }
    // One round trip: the count is sent behind the locks, and the server
    // runs it once they are held (see `sql::tasks::COUNT_HELD`).
    let (locked, held) = futures_util::future::try_join(
        sql::droplets::LockTargets { droplets: &targets }
            .query()
            .load::<TargetRow>(&mut &*conn),
        sql::tasks::CountHeld { droplets: &targets }
            .query()
            .load::<HeldRow>(&mut &*conn),
    )
    .await?;
    let held: HashMap<i32, i64> = held.into_iter().map(|r| (r.droplet, r.held)).collect();
    let mut load: HashMap<DropletId, (i64, Load)> = locked
        .into_iter()
        .map(|d| {
            let taken = held.get(&d.droplet_id).copied().unwrap_or(0);
            let load = if d.status == DropletStatus::Active.as_str() {
                Ok((
                    u32::try_from(taken).unwrap_or(u32::MAX),
                    u32::try_from(d.max_concurrent_tasks).unwrap_or(0),
                ))
            } else {
                Err(format!("it is {}", d.status))
            };
            (DropletId::from(d.droplet_id), (d.id, load))
        })
        .collect();
    for (i, transition) in batch.iter().enumerate() {
        let Some(droplet_id) = transition.task.assigned_droplet_id else {
            continue;
        };
        if transition.task.status != TaskStatus::Assigned {
            continue;
        }
        outcomes[i] = match load.get_mut(&droplet_id) {
            None => Some(Err(StoreError::NotFound {
                entity: "droplet",
                id: droplet_id,
            })),
            Some((_, Err(reason))) => Some(Err(unavailable(droplet_id, reason.clone()))),
            Some((_, Ok((held, capacity)))) if !has_room(*held, *capacity) => {
                Some(Err(unavailable(droplet_id, "it is full".to_owned())))
            }
            Some((_, Ok((held, _)))) => {
                *held += 1;
                None
            }
        };
    }
    Ok(load
        .into_iter()
        .map(|(external, (internal, _))| (external, internal))
        .collect())
}

#[derive(Debug, QueryableByName)]
struct LimitRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Integer)]
    max_running: i32,
}

#[derive(Debug, QueryableByName)]
struct RunningRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    running: i64,
}

/// Refuses the assignments of the batch (not refused already) whose
/// concurrency key has no room ([`ConcurrencyLimit::has_room`]), counting
/// the ones it lets through: the keys' limits are locked first, so that
/// what is counted stays true until the commit.
async fn reserve_keys(
    conn: &mut AsyncPgConnection,
    batch: &[Transition],
    outcomes: &mut [Option<StoreResult<Task>>],
) -> Result<(), diesel::result::Error> {
    // The key of each assignment not refused already.
    let keyed: Vec<Option<String>> = (0..batch.len())
        .map(|i| {
            let task = &batch[i].task;
            (task.status == TaskStatus::Assigned && outcomes[i].is_none())
                .then(|| task.concurrency_key.clone())
                .flatten()
        })
        .collect();
    let mut keys: Vec<String> = keyed.iter().flatten().cloned().collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    // One round trip, as for the droplets: the count runs once the locks are held.
    let (limits, running) = futures_util::future::try_join(
        sql::concurrency::LockLimits { keys: &keys }
            .query()
            .load::<LimitRow>(&mut &*conn),
        sql::concurrency::CountRunning { keys: &keys }
            .query()
            .load::<RunningRow>(&mut &*conn),
    )
    .await?;
    let running: HashMap<String, u32> = running
        .into_iter()
        .map(|r| (r.key, u32::try_from(r.running).unwrap_or(u32::MAX)))
        .collect();
    let mut usage: HashMap<String, (ConcurrencyLimit, u32)> = limits
        .into_iter()
        .map(|l| {
            let limit = ConcurrencyLimit {
                max_running: u32::try_from(l.max_running).unwrap_or(0),
                key: l.key.clone(),
                updated_by: None,
                updated_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            };
            let taken = running.get(&l.key).copied().unwrap_or(0);
            (l.key, (limit, taken))
        })
        .collect();
    for (i, key) in keyed.into_iter().enumerate() {
        let Some(key) = key else { continue };
        let Some((limit, taken)) = usage.get_mut(&key) else {
            continue;
        };
        if limit.has_room(*taken) {
            *taken += 1;
        } else {
            outcomes[i] = Some(Err(StoreError::ConcurrencyLimited {
                key,
                running: *taken,
                max_running: limit.max_running,
            }));
        }
    }
    Ok(())
}

/// A locked droplet's tasks held and capacity, or why it takes none.
type Load = Result<(u32, u32), String>;

fn unavailable(droplet_id: DropletId, reason: String) -> StoreError {
    StoreError::DropletUnavailable { droplet_id, reason }
}

/// The compare-and-set's parameters, one array per column, filled a
/// transition at a time.
impl sql::tasks::ApplyTransitions {
    fn push(&mut self, key: i64, transition: &Transition) {
        let task = &transition.task;
        self.id.push(key);
        self.expected_status
            .push(transition.expected_status.as_str().to_owned());
        self.expected_droplet.push(external(transition.expected_droplet));
        self.expected_attempt
            .push(i32::try_from(transition.expected_attempt).unwrap_or(i32::MAX));
        self.status.push(task.status.as_str().to_owned());
        self.droplet.push(external(task.assigned_droplet_id));
        self.assigned_at.push(task.assigned_at.map(naive));
        self.started_at.push(task.started_at.map(naive));
        self.completed_at.push(task.completed_at.map(naive));
        self.result.push(task.result.clone());
        self.error_message.push(task.error_message.clone());
        self.retry_count.push(i32::try_from(task.retry_count).ok());
        self.updated_at.push(naive(task.updated_at));
        self.retry_after.push(task.retry_after.map(naive));
        self.attempt.push(i32::try_from(task.attempt).unwrap_or(i32::MAX));
        self.changed_by.push(transition.record.changed_by.clone());
        self.reason.push(transition.record.reason.clone());
        self.metadata.push(transition.record.metadata.clone());
        self.cancel_requested_at.push(task.cancel_requested_at.map(naive));
        self.requeues
            .push(i32::try_from(task.requeues).unwrap_or(i32::MAX));
        let progress = task.progress.as_ref();
        self.progress
            .push(progress.and_then(|p| p.percent).map(i16::from));
        self.progress_message
            .push(progress.and_then(|p| p.message.clone()));
        self.progress_at.push(progress.map(|p| naive(p.at)));
    }
}

/// The compare-and-set of every accepted transition and the history rows
/// of those it applied, in one statement; returns the live columns of the
/// rows it changed.
async fn update_tasks(
    conn: &mut AsyncPgConnection,
    batch: &[Transition],
    accepted: &[usize],
    slots: &HashMap<DropletId, i64>,
) -> Result<Vec<LiveRow>, diesel::result::Error> {
    let mut columns = sql::tasks::ApplyTransitions::default();
    for &i in accepted {
        columns.push(batch[i].task.id, &batch[i]);
    }
    if columns.id.is_empty() {
        return Ok(Vec::new());
    }
    // Internal ids of the droplets locked above; others are looked up by the statement.
    columns.droplet_key = accepted
        .iter()
        .map(|&i| {
            batch[i]
                .task
                .assigned_droplet_id
                .and_then(|d| slots.get(&d).copied())
        })
        .collect();
    columns.query().load(conn).await
}

#[derive(Debug, QueryableByName)]
struct StatusRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    status: String,
}

/// The status now of tasks whose compare-and-set matched nothing.
async fn current_statuses(
    conn: &mut AsyncPgConnection,
    keys: &[i64],
) -> Result<HashMap<i64, String>, diesel::result::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<StatusRow> = sql::tasks::Statuses { tasks: keys }.query().load(conn).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.status)).collect())
}

/// The compare-and-set matched nothing: the task is gone or has moved.
fn lost_race(transition: &Transition, current: Option<&String>) -> StoreError {
    let id = transition.task.id;
    match current {
        Some(status) => StoreError::Conflict(format!(
            "task {id} is {status} now, not {}",
            transition.expected_status
        )),
        None => task_not_found(id),
    }
}
