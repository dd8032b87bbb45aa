//! Cheap heartbeats. A heartbeat that changes nothing but the time of a
//! droplet's last sign of life is absorbed in memory and written with every
//! other heartbeat of the same second in one statement: a thousand droplets
//! beating once a second cost one commit a second, not a thousand
//! synchronous writes on their hot rows.
//!
//! A heartbeat that changes a droplet's status (a revival, a droplet
//! reporting itself in error) is written at once, as before. So is the first
//! one a process sees of a droplet, and any whose cached state is older than
//! [`TRUST_FOR`]: the cache only ever stands in for state that the database
//! confirmed moments ago. Each flush re-reads the state of every droplet it
//! knows, which is how a change made on another replica (an admin's
//! deactivate, say) reaches this one within a flush interval; a droplet
//! another replica marked silent while it beat here is revived by its first
//! heartbeat after that flush.
//!
//! Heartbeat rows are samples: a flush keeps, of each droplet's heartbeats,
//! the first one due, one sample interval after the row last kept
//! (`droplets.heartbeat_sampled_at`, read under the droplet's row lock so
//! that replicas sample as one), or every one when the interval is zero;
//! a heartbeat that changes the status is always kept, and written at once.
//! A flush keeps at most one row per droplet when sampling, so a flush
//! interval longer than the sample interval keeps fewer samples, never more.
//!
//! What can be lost: the heartbeats of the last flush interval (a second
//! by default, `HEARTBEAT_FLUSH_INTERVAL_MS`) if the process dies; the
//! droplet's next heartbeat makes up for them.
//!
//! While the database is down, what is held stays bounded: after a failed
//! flush only each droplet's latest heartbeat is kept (it carries the time
//! that matters); the others, which would only have been rows of the
//! `heartbeats` history, are dropped and counted
//! (`orchestrator_heartbeats_dropped_total`). After [`TRUST_FOR`] without a
//! flush, heartbeats go the synchronous way and their callers get 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_domain::{Droplet, DropletId, DropletStatus, HeartbeatReport};
use orchestrator_ports::{DropletChange, HeartbeatBacklog, Spawner, StoreResult};
use serde_json::Value;

use crate::error::{pool_error, store_error};
use crate::rows::{DropletRow, naive};
use crate::sql;

/// How often absorbed heartbeats are written by default. Well within any
/// health check interval, so that `droplets.last_heartbeat` lags by at most
/// this much.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long a droplet's cached state stands in for the database's.
const TRUST_FOR: Duration = Duration::from_secs(5);
/// Beyond this many unwritten heartbeats (the database is down, say), a
/// heartbeat goes the synchronous way and its caller learns of the outage.
const MAX_PENDING: usize = 100_000;

struct Known {
    internal: i64,
    droplet: Droplet,
    /// When the database last confirmed `droplet`'s state.
    confirmed: Instant,
}

struct Beat {
    internal: i64,
    status: DropletStatus,
    metrics: Option<Value>,
    at: DateTime<Utc>,
    /// Kept as a row only when the droplet's last one is this old.
    sample_every: Duration,
}

#[derive(Default)]
struct State {
    known: HashMap<DropletId, Known>,
    pending: Vec<Beat>,
}

pub(crate) struct Liveness {
    state: Mutex<State>,
    /// One flush at a time, so that one that returns has written every
    /// heartbeat absorbed before it began.
    flushing: tokio::sync::Mutex<()>,
    flusher_started: AtomicBool,
    flush_every: Duration,
    /// Heartbeats given up while the database could not be written.
    dropped: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(FLUSH_EVERY)
    }
}

impl Liveness {
    pub fn new(flush_every: Duration) -> Self {
        Liveness {
            state: Mutex::default(),
            flushing: tokio::sync::Mutex::default(),
            flusher_started: AtomicBool::new(false),
            flush_every,
            dropped: AtomicU64::new(0),
        }
    }

    /// What is held in memory, and what was given up during outages.
    pub fn backlog(&self) -> HeartbeatBacklog {
        HeartbeatBacklog {
            held: self.state().pending.len(),
            dropped: AtomicU64::load(&self.dropped, Ordering::Relaxed),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The change `report` makes if it can be written later, or the report
    /// back when it must be written now.
    pub fn absorb(
        &self,
        id: DropletId,
        report: HeartbeatReport,
        at: DateTime<Utc>,
        sample_every: Duration,
    ) -> Result<DropletChange, HeartbeatReport> {
        let mut state = self.state();
        if state.pending.len() >= MAX_PENDING {
            return Err(report);
        }
        let Some(known) = state.known.get_mut(&id) else {
            return Err(report);
        };
        let status = known.droplet.status;
        if known.confirmed.elapsed() > TRUST_FOR
            || known.droplet.status_after_heartbeat(report.status) != status
        {
            return Err(report);
        }
        known.droplet.last_heartbeat = known.droplet.last_heartbeat.max(Some(at));
        let change = DropletChange {
            droplet: known.droplet.clone(),
            previous_status: Some(status),
        };
        let beat = Beat {
            internal: known.internal,
            status: report.status.unwrap_or(DropletStatus::Active),
            metrics: report.metrics,
            at,
            sample_every,
        };
        state.pending.push(beat);
        Ok(change)
    }

    /// Caches `droplet` as the database has it now.
    pub fn remember(&self, internal: i64, droplet: Droplet) {
        let known = Known {
            internal,
            droplet,
            confirmed: Instant::now(),
        };
        self.state().known.insert(known.droplet.droplet_id, known);
    }

    /// Drops what is cached of `id`, whose state just changed another way.
    pub fn forget(&self, id: DropletId) {
        self.state().known.remove(&id);
    }

    /// The latest heartbeat this process has seen of `id`, written or not.
    pub fn overlay(&self, droplet: &mut Droplet) {
        if let Some(known) = self.state().known.get(&droplet.droplet_id) {
            droplet.last_heartbeat = droplet.last_heartbeat.max(known.droplet.last_heartbeat);
        }
    }

    /// Starts the task that flushes every flush interval, once, as a
    /// service of `services` when the store was given them (else on its
    /// own); it ends when the store is dropped or the services stop.
    pub fn start_flusher(self: &Arc<Self>, pool: &Pool<AsyncPgConnection>, services: Option<&dyn Spawner>) {
        if self.flusher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let flusher = flush_periodically(Arc::downgrade(self), pool.clone(), self.flush_every);
        match services {
            Some(services) => {
                services.spawn_service("heartbeats: write those held".into(), Box::pin(flusher))
            }
            None => drop(tokio::spawn(flusher)),
        }
    }

    /// Writes every absorbed heartbeat and refreshes the cached state. On
    /// failure the heartbeats are kept for the next try.
    pub async fn flush(&self, pool: &Pool<AsyncPgConnection>) -> StoreResult<()> {
        let _turn = self.flushing.lock().await;
        let started = Instant::now();
        let (beats, known) = {
            let mut state = self.state();
            let known: Vec<i64> = state.known.values().map(|k| k.internal).collect();
            (std::mem::take(&mut state.pending), known)
        };
        if beats.is_empty() {
            return Ok(());
        }
        match write(pool, &beats, known).await {
            Ok(rows) => {
                self.refresh(rows, started);
                Ok(())
            }
            Err(err) => {
                let mut state = self.state();
                let newer = std::mem::replace(&mut state.pending, beats);
                state.pending.extend(newer);
                let dropped = keep_latest_of_each(&mut state.pending);
                if dropped > 0 {
                    self.dropped.fetch_add(dropped, Ordering::Relaxed);
                    tracing::warn!(
                        dropped,
                        held = state.pending.len(),
                        "the database is unavailable: only each droplet's latest heartbeat is kept"
                    );
                }
                Err(err)
            }
        }
    }

    /// Takes the database's state of each droplet, unless this process
    /// changed it since `started`; keeps the later of the two heartbeats.
    fn refresh(&self, rows: Vec<DropletRow>, started: Instant) {
        let mut state = self.state();
        for row in rows {
            let internal = row.id;
            let Ok(mut droplet) = row.into_droplet() else {
                continue;
            };
            let Some(known) = state.known.get_mut(&droplet.droplet_id) else {
                continue;
            };
            if known.confirmed > started {
                continue;
            }
            droplet.last_heartbeat = droplet.last_heartbeat.max(known.droplet.last_heartbeat);
            *known = Known {
                internal,
                droplet,
                confirmed: started,
            };
        }
    }
}

/// Keeps the latest beat of each droplet, in the order they came; returns
/// how many were removed.
fn keep_latest_of_each(beats: &mut Vec<Beat>) -> u64 {
    let mut latest: HashMap<i64, DateTime<Utc>> = HashMap::new();
    for beat in beats.iter() {
        let at = latest.entry(beat.internal).or_insert(beat.at);
        *at = (*at).max(beat.at);
    }
    let before = beats.len();
    beats.retain(|beat| {
        latest.get(&beat.internal) == Some(&beat.at) && latest.remove(&beat.internal).is_some()
    });
    (before - beats.len()) as u64
}

async fn write(
    pool: &Pool<AsyncPgConnection>,
    beats: &[Beat],
    known: Vec<i64>,
) -> StoreResult<Vec<DropletRow>> {
    let droplets: Vec<i64> = beats.iter().map(|b| b.internal).collect();
    let statuses: Vec<&str> = beats.iter().map(|b| b.status.as_str()).collect();
    let metrics: Vec<Option<&Value>> = beats.iter().map(|b| b.metrics.as_ref()).collect();
    let times: Vec<NaiveDateTime> = beats.iter().map(|b| naive(b.at)).collect();
    let samples: Vec<f64> = beats.iter().map(|b| b.sample_every.as_secs_f64()).collect();
    let mut conn = pool.get().await.map_err(pool_error)?;
    sql::heartbeats::Flush {
        droplet: droplets,
        status: statuses,
        metrics,
        received_at: times,
        known,
        sample_every: samples,
    }
    .query()
    .load(&mut conn)
    .await
    .map_err(store_error)
}

async fn flush_periodically(liveness: Weak<Liveness>, pool: Pool<AsyncPgConnection>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(liveness) = liveness.upgrade() else {
            return;
        };
        if let Err(err) = liveness.flush(&pool).await {
            tracing::warn!(error = %err, "writing heartbeats failed; they are kept for the next try");
        }
    }
}
