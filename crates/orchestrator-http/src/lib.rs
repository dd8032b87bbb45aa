#![doc = include_str!("../README.md")]

mod registry;

pub use registry::{HttpRegistryClient, REGISTRY_TIMEOUT};

use std::time::Duration;

use async_trait::async_trait;
use orchestrator_api::envelope::Envelope;
use orchestrator_api::messages::PushedTask;
use orchestrator_domain::{Droplet, Task};
use orchestrator_ports::{DeliveryError, Dispatcher, DropletReply, OutgoingMessage, SendError, TaskNotice};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// How long one delivery may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pushes assignments and messages to `{endpoint}/message`.
#[derive(Debug, Clone)]
pub struct HttpDispatcher {
    client: reqwest::Client,
    /// The envelope's `source`, such as `droplet-10`.
    source: String,
    /// How long a droplet may take to answer a message (`POST /send`).
    send_timeout: Duration,
}

impl HttpDispatcher {
    pub fn new(source: impl Into<String>, send_timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(DELIVERY_TIMEOUT)
            .build()?;
        Ok(HttpDispatcher {
            client,
            source: source.into(),
            send_timeout,
        })
    }

    /// `payload` for `droplet`, from this orchestrator.
    fn envelope<P>(&self, droplet: &Droplet, trace_id: Uuid, message_type: &str, payload: P) -> Envelope<P> {
        let target = format!("droplet-{}", droplet.droplet_id);
        Envelope::wrap(trace_id, self.source.as_str(), target, message_type, payload)
    }
}

fn message_url(droplet: &Droplet) -> String {
    format!("{}/message", droplet.endpoint.trim_end_matches('/'))
}

#[async_trait]
impl Dispatcher for HttpDispatcher {
    async fn deliver(&self, droplet: &Droplet, task: &Task, notice: TaskNotice) -> Result<(), DeliveryError> {
        let envelope = self.envelope(droplet, task.trace_id, notice.message_type(), PushedTask { task });
        let url = message_url(droplet);
        let response = self
            .client
            .post(&url)
            .timeout(DELIVERY_TIMEOUT)
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

    async fn send_message(
        &self,
        droplet: &Droplet,
        message: &OutgoingMessage,
    ) -> Result<DropletReply, SendError> {
        let envelope = self.envelope(droplet, message.trace_id, &message.message_type, &message.payload);
        let url = message_url(droplet);
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SendError::TimedOut(format!("{url} did not answer within {:?}", self.send_timeout))
            } else {
                SendError::Unreachable(format!("could not reach {url}: {e}"))
            }
        };
        let response = self
            .client
            .post(&url)
            .timeout(self.send_timeout)
            .json(&envelope)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(failed)?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(DropletReply { status, body })
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
