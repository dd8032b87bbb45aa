//! Group commit: transitions submitted while a batch is being committed
//! wait and go together in the next one, so that a hundred droplets
//! reporting at once cost a few transactions, not a hundred. There is no
//! timed window: an idle store commits a lone transition at once, and
//! batches grow only as fast as work arrives faster than commits end.
//!
//! Whoever holds a turn commits everything queued; the others wait for
//! their answer or a turn, whichever comes first, and leave with their
//! answer as soon as another's batch has committed their work. No
//! transition waits for one submitted after it.
//!
//! Two kinds of work go this way, each in a [`GroupCommit`] of its own:
//! transitions the caller computed whole, and droplets' reports, which
//! the batch reads and computes itself ([`crate::reports`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;
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

/// Work that a batch commits many at a time, each with its own outcome.
pub(crate) trait Work: Send + Sized + 'static {
    type Outcome: Send + 'static;

    /// The task it changes: a batch holds one piece of work per task.
    fn task_id(&self) -> i64;

    /// Works of one kind go in a batch together.
    fn kind(&self) -> bool;

    /// Commits `batch` and answers each piece of it, in order.
    fn commit(
        pool: Pool<AsyncPgConnection>,
        batch: Vec<Self>,
    ) -> impl Future<Output = Vec<Self::Outcome>> + Send;

    /// The answer when the commit was cut before it answered.
    fn interrupted() -> Self::Outcome;
}

struct Queued<W: Work> {
    work: W,
    reply: oneshot::Sender<W::Outcome>,
}

pub(crate) struct GroupCommit<W: Work> {
    queue: Mutex<Vec<Queued<W>>>,
    turns: tokio::sync::Semaphore,
}

impl<W: Work> Default for GroupCommit<W> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::default(),
            turns: tokio::sync::Semaphore::new(IN_FLIGHT),
        }
    }
}

impl<W: Work> GroupCommit<W> {
    /// Commits `works`, each with its own outcome, in order.
    pub async fn submit(&self, pool: &Pool<AsyncPgConnection>, works: Vec<W>) -> Vec<W::Outcome> {
        let replies: Vec<_> = {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            works
                .into_iter()
                .map(|work| {
                    let (reply, receiver) = oneshot::channel();
                    queue.push(Queued { work, reply });
                    receiver
                })
                .collect()
        };
        let answered = futures_util::future::join_all(replies);
        tokio::pin!(answered);
        // A caller whose work another caller's batch committed leaves with
        // its answer; it does not wait for a turn it no longer needs. Were
        // every caller to take its turn, each would commit the little that
        // had arrived since the last batch, one after the other: batches of
        // one or two, and callers waiting in line for a second and more.
        let answers = tokio::select! {
            answers = &mut answered => answers,
            turn = self.turns.acquire() => {
                let Ok(_turn) = turn else {
                    unreachable!("the semaphore is never closed")
                };
                // The turn passes on once this caller's work is answered:
                // under steady load the queue is never empty, and a holder
                // that drained it to the end would never return. Whoever
                // has work still queued is waiting for the turn.
                let mine = loop {
                    if let Some(answers) = (&mut answered).now_or_never() {
                        break Some(answers);
                    }
                    let Some(batch) = self.next_batch() else {
                        break None;
                    };
                    // Committed on a task of its own: a caller that goes away
                    // mid-commit must not cut the transaction of everyone else.
                    let pool = pool.clone();
                    if tokio::spawn(answer(pool, batch)).await.is_err() {
                        tracing::error!("a group commit stopped before it finished");
                    }
                };
                drop(_turn);
                match mine {
                    Some(answers) => answers,
                    None => answered.await,
                }
            }
        };
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|_| W::interrupted()))
            .collect()
    }

    /// Up to `MAX_BATCH` queued pieces of work on distinct tasks, oldest
    /// first; a second change to a task waits for the next batch. Each batch
    /// holds work of one kind. Work whose caller went away before it was
    /// taken is dropped, not committed: nobody waits for its answer, and
    /// committing it later, whenever another caller came, would apply a
    /// change at a time nobody asked for.
    fn next_batch(&self) -> Option<Vec<Queued<W>>> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queue.retain(|queued| !queued.reply.is_closed());
        let kind = queue.first()?.work.kind();
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        for queued in queue.drain(..) {
            if batch.len() < MAX_BATCH && queued.work.kind() == kind && seen.insert(queued.work.task_id()) {
                batch.push(queued);
            } else {
                rest.push(queued);
            }
        }
        *queue = rest;
        // Rows are locked in task order, so that two batches in flight
        // cannot deadlock over the same tasks.
        batch.sort_by_key(|q| q.work.task_id());
        Some(batch)
    }
}

/// Commits one batch and answers each piece of it.
async fn answer<W: Work>(pool: Pool<AsyncPgConnection>, batch: Vec<Queued<W>>) {
    let (works, replies): (Vec<W>, Vec<_>) = batch.into_iter().map(|q| (q.work, q.reply)).unzip();
    let outcomes = W::commit(pool, works).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that went away no longer needs its answer.
        let _ = reply.send(outcome);
    }
}

/// Transitions the caller computed whole. Assignments and other changes go
/// in separate batches: only assignments need droplet locks and a
/// transaction, the others are a single statement.
impl Work for Transition {
    type Outcome = StoreResult<Task>;

    fn task_id(&self) -> i64 {
        self.task.id
    }

    fn kind(&self) -> bool {
        is_assignment(self)
    }

    fn commit(
        pool: Pool<AsyncPgConnection>,
        batch: Vec<Self>,
    ) -> impl Future<Output = Vec<Self::Outcome>> + Send {
        commit(pool, batch)
    }

    fn interrupted() -> Self::Outcome {
        Err(StoreError::Unavailable(
            "the commit of this change was interrupted; read the task to see whether it was applied".into(),
        ))
    }
}

/// Commits a batch of transitions. When the batch as a whole fails, its
/// transitions are committed one by one so that only the one at fault gets
/// the error.
pub(crate) async fn commit(
    pool: Pool<AsyncPgConnection>,
    transitions: Vec<Transition>,
) -> Vec<StoreResult<Task>> {
    match in_transaction(&pool, &transitions).await {
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use diesel_async::AsyncPgConnection;
    use diesel_async::pooled_connection::AsyncDieselConnectionManager;
    use diesel_async::pooled_connection::deadpool::Pool;
    use tokio::time::Instant;

    use super::{GroupCommit, Work};

    type Batches = Arc<Mutex<Vec<Vec<i64>>>>;

    /// Work whose commit takes 5 ms and records the tasks of its batch.
    struct Timed {
        id: i64,
        batches: Batches,
    }

    impl Work for Timed {
        type Outcome = ();

        fn task_id(&self) -> i64 {
            self.id
        }

        fn kind(&self) -> bool {
            false
        }

        async fn commit(_: Pool<AsyncPgConnection>, batch: Vec<Self>) -> Vec<()> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(first) = batch.first() {
                let ids = batch.iter().map(|w| w.id).collect();
                first.batches.lock().expect("batches").push(ids);
            }
            vec![(); batch.len()]
        }

        fn interrupted() {}
    }

    fn pool() -> Pool<AsyncPgConnection> {
        Pool::builder(AsyncDieselConnectionManager::<AsyncPgConnection>::new(
            "postgres://nowhere.invalid/never",
        ))
        .build()
        .expect("a pool that never connects")
    }

    /// A hundred callers submitting one change after another, as droplets
    /// report, for twenty rounds each; returns the batches and the longest
    /// any one submission waited.
    async fn steady_load() -> (Vec<Vec<i64>>, Duration) {
        let (pool, commits) = (pool(), Arc::new(GroupCommit::<Timed>::default()));
        let batches = Batches::default();
        let callers: Vec<_> = (0..100)
            .map(|caller| {
                let (commits, pool, batches) = (commits.clone(), pool.clone(), batches.clone());
                tokio::spawn(async move {
                    let mut longest = Duration::ZERO;
                    for round in 0..20 {
                        let work = Timed {
                            id: caller * 100 + round,
                            batches: batches.clone(),
                        };
                        let started = Instant::now();
                        commits.submit(&pool, vec![work]).await;
                        longest = longest.max(started.elapsed());
                    }
                    longest
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        for caller in callers {
            longest = longest.max(caller.await.expect("caller"));
        }
        let batches = batches.lock().expect("batches").clone();
        (batches, longest)
    }

    /// While two batches are in flight the others' work gathers, so batches
    /// are large. Were every caller to wait for a turn of its own after its
    /// work was committed, each turn would commit the one or two changes
    /// that arrived since the last.
    #[tokio::test(start_paused = true)]
    async fn work_gathers_while_batches_are_in_flight() {
        let (batches, _) = steady_load().await;
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 2_000);
        assert!(
            batches.len() <= 100,
            "{} batches for 2,000 changes",
            batches.len()
        );
    }

    /// A caller holding a turn gives it up once its own work is answered:
    /// under steady load the queue is never empty, and a holder that
    /// drained it to the end would wait as long as the load lasts.
    #[tokio::test(start_paused = true)]
    async fn a_turn_passes_on_once_its_holders_work_is_answered() {
        let (_, longest) = steady_load().await;
        assert!(
            longest <= Duration::from_millis(25),
            "a submission waited {longest:?}"
        );
    }

    /// Work whose caller went away before a batch took it is not committed.
    #[tokio::test(start_paused = true)]
    async fn work_whose_caller_went_away_is_dropped() {
        let (pool, commits) = (pool(), Arc::new(GroupCommit::<Timed>::default()));
        let batches = Batches::default();
        let turns = commits.turns.acquire_many(2).await.expect("both turns");
        let gone = {
            let (commits, pool, batches) = (commits.clone(), pool.clone(), batches.clone());
            tokio::spawn(async move { commits.submit(&pool, vec![Timed { id: 1, batches }]).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        gone.abort();
        assert!(gone.await.is_err_and(|e| e.is_cancelled()));
        drop(turns);
        let work = Timed {
            id: 2,
            batches: batches.clone(),
        };
        commits.submit(&pool, vec![work]).await;
        assert_eq!(*batches.lock().expect("batches"), vec![vec![2]]);
    }
}
