//! Every long-running task of a process, in one place: each is started
//! here under a name, listed (`GET /management/services`), and stopped
//! with the others (a graceful stop waits for them; dropping the list
//! cancels them).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Default)]
pub struct Services {
    token: CancellationToken,
    tracker: TaskTracker,
    names: Mutex<Vec<String>>,
}

impl Services {
    /// Runs `work` as the service `name` until it ends or the services stop.
    pub fn spawn<F>(&self, name: impl Into<String>, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.clone());
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = work => tracing::debug!(service = %name, "background service ended"),
            }
        });
    }

    /// The services started, in the order they were.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many are still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Stops every service at its next wait and waits, at most `within`,
    /// until all have ended; false if some had not.
    pub async fn stop(&self, within: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(within, self.tracker.wait()).await.is_ok()
    }
}

impl orchestrator_ports::Spawner for Services {
    fn spawn_service(&self, name: String, work: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.spawn(name, work);
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn services_are_listed_and_stopped_together() {
        let services = Services::default();
        services.spawn("forever", std::future::pending());
        services.spawn("brief", async {});
        services.spawn("also forever", std::future::pending());
        assert_eq!(services.names(), ["forever", "brief", "also forever"]);
        tokio::task::yield_now().await;
        assert!(services.stop(Duration::from_secs(5)).await);
        assert_eq!(services.running(), 0);
    }

    #[tokio::test]
    async fn dropping_the_services_cancels_what_runs() {
        let services = Services::default();
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        services.spawn("holds a sender", async move {
            let _kept = sender;
            std::future::pending::<()>().await;
        });
        drop(services);
        assert!(
            receiver.await.is_err(),
            "the service ended and dropped its sender"
        );
    }
}
