#![doc = include_str!("../README.md")]

use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use orchestrator_domain::{Droplet, Task};
use orchestrator_ports::{DeliveryError, Dispatcher};
use reqwest::StatusCode;
use serde_json::json;

/// How long one delivery may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pushes assignments to `{endpoint}/message`.
#[derive(Debug, Clone)]
pub struct HttpDispatcher {
    client: reqwest::Client,
    /// The envelope's `source`, such as `droplet-10`.
    source: String,
}

impl HttpDispatcher {
    pub fn new(source: impl Into<String>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            .build()?;
        Ok(HttpDispatcher {
            client,
            source: source.into(),
        })
    }
}

#[async_trait]
impl Dispatcher for HttpDispatcher {
    async fn deliver_assignment(&self, droplet: &Droplet, task: &Task) -> Result<(), DeliveryError> {
        let envelope = json!({
            "udc_version": "1.0",
            "trace_id": task.trace_id,
            "source": self.source,
            "target": format!("droplet-{}", droplet.droplet_id),
            "message_type": "task_assignment",
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "payload": { "task": task },
        });
        let url = format!("{}/message", droplet.endpoint.trim_end_matches('/'));
        let response = self
            .client
            .post(&url)
            .json(&envelope)
            .send()
            .await
            .map_err(|e| DeliveryError {
                retryable: true,
                message: format!("could not reach {url}: {e}"),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(DeliveryError {
            retryable: is_retryable(status),
            message: format!("{url} answered {status}"),
        })
    }
}

/// Server errors, timeouts and rate limits may pass; other refusals will not.
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_refusals_are_retried() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(
                is_retryable(StatusCode::from_u16(status).expect("status")),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 405, 422] {
            assert!(
                !is_retryable(StatusCode::from_u16(status).expect("status")),
                "{status}"
            );
        }
    }
}
