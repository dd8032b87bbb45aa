//! `websocket_ping`: pings this replica's feed clients and drops those that
//! did not answer the previous ping.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Job, JobContext, JobSpec};
use crate::{AppResult, FeedHub};

pub const SPEC: JobSpec = JobSpec {
    id: "websocket_ping",
    leader_only: false,
    interval_setting: "WS_HEARTBEAT_INTERVAL",
    default_interval_seconds: 30,
    reloadable: false,
};

/// Pings every feed client of this replica; one that has not answered the
/// previous ping is disconnected. Each replica pings its own clients.
#[derive(Debug)]
pub struct WebSocketPingJob(pub Arc<FeedHub>);

#[async_trait]
impl Job for WebSocketPingJob {
    fn spec(&self) -> &'static JobSpec {
        &SPEC
    }
    async fn run(&self) -> AppResult<()> {
        self.0.ping_all();
        Ok(())
    }
}

/// The job, over this replica's feeds.
pub fn build(ctx: &JobContext<'_>) -> Arc<dyn Job> {
    Arc::new(WebSocketPingJob(ctx.feeds.clone()))
}
