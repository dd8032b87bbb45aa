//! Graceful stops, by `POST /management/shutdown` or SIGTERM: readiness is
//! lost at once, the live feeds close with 1001 (going away), no new
//! connection is accepted, and the requests in flight are waited for, up to
//! `SHUTDOWN_GRACE_SECONDS`, before the server stops.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Whether a stop has begun, and the requests still being served.
#[derive(Debug, Default)]
pub struct Stopping {
    begun: AtomicBool,
    in_flight: AtomicUsize,
    finished_one: Notify,
    /// Cancelled when a stop begins; the live feeds watch it.
    pub closing: CancellationToken,
}

/// A request being served; counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Stopping>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.finished_one.notify_waiters();
    }
}

/// What waiting for the requests in flight came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub waited: Duration,
    /// Requests still in flight when the grace period ended.
    pub abandoned: usize,
}

impl Drained {
    /// Every request in flight was answered.
    pub fn graceful(&self) -> bool {
        self.abandoned == 0
    }
}

impl Stopping {
    pub fn has_begun(&self) -> bool {
        self.begun.load(Ordering::SeqCst)
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Begins a stop; false if one had begun already.
    pub fn begin(&self) -> bool {
        let first = !self.begun.swap(true, Ordering::SeqCst);
        self.closing.cancel();
        first
    }

    /// Waits until no more than `own` requests are in flight (those of the
    /// caller itself), for at most `grace`.
    pub async fn drain(&self, own: usize, grace: Duration) -> Drained {
        let started = Instant::now();
        let deadline = started + grace;
        loop {
            let mut finished = pin!(self.finished_one.notified());
            // Registered before the count is read, so no finish is missed.
            finished.as_mut().enable();
            let left = self.in_flight.load(Ordering::SeqCst).saturating_sub(own);
            if left == 0 {
                return Drained {
                    waited: started.elapsed(),
                    abandoned: 0,
                };
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                let abandoned = self.in_flight.load(Ordering::SeqCst).saturating_sub(own);
                return Drained {
                    waited: started.elapsed(),
                    abandoned,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_when_the_last_other_request_finishes() {
        let stopping = Arc::new(Stopping::default());
        let own = stopping.enter();
        let other = stopping.enter();
        assert!(stopping.begin() && !stopping.begin(), "only the first begins");
        assert!(stopping.closing.is_cancelled());
        let finishing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(other);
        });
        let drained = stopping.drain(1, Duration::from_secs(30)).await;
        assert_eq!(
            drained,
            Drained {
                waited: Duration::from_secs(2),
                abandoned: 0
            }
        );
        finishing.await.expect("join");
        drop(own);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_gives_up_after_the_grace_and_counts_what_it_abandons() {
        let stopping = Arc::new(Stopping::default());
        let _stuck = [stopping.enter(), stopping.enter()];
        let drained = stopping.drain(0, Duration::from_secs(5)).await;
        assert_eq!((drained.waited, drained.abandoned), (Duration::from_secs(5), 2));
        assert!(!drained.graceful());
    }
}
