//! Group commit: transitions submitted while a batch is being committed
//! wait and go together in the next one, so that a hundred droplets
//! reporting at once cost a few transactions, not a hundred. There is no
//! timed window: an idle store commits a lone transition at once, and
//! batches grow only as fast as work arrives faster than commits end.
//!
//! Whoever holds the turn commits everything queued; the others wait for
//! the turn and, getting it, usually find their work already done. No
//! transition waits for one submitted after it.

use std::collections::HashSet;
use std::sync::Mutex;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use orchestrator_domain::{Task, TaskStatus};
use orchestrator_ports::{StoreError, StoreResult, Transition};
use tokio::sync::oneshot;

use crate::batch::apply_batch;
use crate::error::{TxError, pool_error};

/// The most transitions one transaction carries.
const MAX_BATCH: usize = 500;
/// Batches committed at once: while one waits for the disk or the network,
/// the next runs (measured: two beat one by a fifth in `make bench`; three
/// add nothing).
const IN_FLIGHT: usize = 2;

struct Queued {
    transition: Transition,
    reply: oneshot::Sender<StoreResult<Task>>,
}

pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Queued>>,
    turns: tokio::sync::Semaphore,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::default(),
            turns: tokio::sync::Semaphore::new(IN_FLIGHT),
        }
    }
}

impl GroupCommit {
    /// Applies `transitions`, each with its own outcome, in order.
    pub async fn submit(
        &self,
        pool: &Pool<AsyncPgConnection>,
        transitions: Vec<Transition>,
    ) -> Vec<StoreResult<Task>> {
        let replies: Vec<_> = {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            transitions
                .into_iter()
                .map(|transition| {
                    let (reply, receiver) = oneshot::channel();
                    queue.push(Queued { transition, reply });
                    receiver
                })
                .collect()
        };
        {
            let Ok(_turn) = self.turns.acquire().await else {
                unreachable!("the semaphore is never closed")
            };
            while let Some(batch) = self.next_batch() {
                // Committed on a task of its own: a caller that goes away
                // mid-commit must not cut the transaction of everyone else.
                let pool = pool.clone();
                if tokio::spawn(commit(pool, batch)).await.is_err() {
                    tracing::error!("a group commit stopped before it finished");
                }
            }
        }
        let mut outcomes = Vec::with_capacity(replies.len());
        for reply in replies {
            outcomes.push(reply.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the commit of this change was interrupted; read the task to see whether it was applied"
                        .into(),
                ))
            }));
        }
        outcomes
    }

    /// Up to `MAX_BATCH` queued transitions on distinct tasks, oldest first;
    /// a second change to a task waits for the next batch. Assignments and
    /// other changes go in separate batches: only assignments need droplet
    /// locks and a transaction, the others are a single statement.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let assigning = is_assignment(&queue.first()?.transition);
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        for queued in queue.drain(..) {
            if batch.len() < MAX_BATCH
                && is_assignment(&queued.transition) == assigning
                && seen.insert(queued.transition.task.id)
            {
                batch.push(queued);
            } else {
                rest.push(queued);
            }
        }
        *queue = rest;
        // Rows are locked in task order, so that two batches in flight
        // cannot deadlock over the same tasks.
        batch.sort_by_key(|q| q.transition.task.id);
        Some(batch)
    }
}

/// Commits one batch and answers each of its transitions. When the batch as a
/// whole fails, its transitions are committed one by one so that only the
/// one at fault gets the error.
async fn commit(pool: Pool<AsyncPgConnection>, batch: Vec<Queued>) {
    let (transitions, replies): (Vec<Transition>, Vec<_>) =
        batch.into_iter().map(|q| (q.transition, q.reply)).unzip();
    let outcomes = match in_transaction(&pool, &transitions).await {
        Ok(outcomes) => outcomes,
        Err(err) if transitions.len() == 1 => vec![Err(err)],
        Err(_) => {
            let mut outcomes = Vec::with_capacity(transitions.len());
            for transition in &transitions {
                let one = in_transaction(&pool, std::slice::from_ref(transition)).await;
                outcomes.push(one.and_then(|mut o| o.pop().unwrap_or_else(|| Err(missing()))));
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
    StoreError::Unavailable("the store returned no outcome for a change".into())
}

fn is_assignment(transition: &Transition) -> bool {
    transition.task.status == TaskStatus::Assigned
}

async fn in_transaction(
    pool: &Pool<AsyncPgConnection>,
    batch: &[Transition],
) -> StoreResult<Vec<StoreResult<Task>>> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    let conn: &mut AsyncPgConnection = &mut conn;
    if !batch.iter().any(is_assignment) {
        // Without an assignment there is no droplet to lock: the batch is
        // one statement (the compare-and-set and its history rows), atomic
        // on its own, so it runs without BEGIN and COMMIT round trips.
        return apply_batch(conn, batch)
            .await
            .map_err(|e| StoreError::from(TxError::from(e)));
    }
    conn.transaction::<_, TxError, _>(async move |conn| Ok(apply_batch(conn, batch).await?))
        .await
        .map_err(StoreError::from)
}
