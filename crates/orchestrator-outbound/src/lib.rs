#![doc = include_str!("../README.md")]

mod guard;
mod registry;

pub use registry::{HttpRegistryClient, REGISTRY_TIMEOUT};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_api::envelope::Envelope;
use orchestrator_api::messages::PushedTask;
use orchestrator_domain::{Droplet, EndpointPolicy, Task};
use orchestrator_ports::{DeliveryError, Dispatcher, DropletReply, OutgoingMessage, SendError, TaskNotice};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// How long one delivery may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a droplet's answer to a message is read by default.
pub const MAX_REPLY_BYTES: usize = 1_048_576;

/// How the dispatcher calls droplets.
#[derive(Debug, Clone, Copy)]
pub struct DispatchLimits {
    /// How long a droplet may take to answer a message (`POST /send`).
    pub send_timeout: Duration,
    /// The longest answer to a message that is read; a longer one is an error.
    pub max_reply_bytes: usize,
    /// Which droplet endpoints may be called.
    pub endpoints: EndpointPolicy,
}

impl Default for DispatchLimits {
    fn default() -> Self {
        DispatchLimits {
            send_timeout: Duration::from_secs(10),
            max_reply_bytes: MAX_REPLY_BYTES,
            endpoints: EndpointPolicy::RefusePrivate,
        }
    }
}

/// Pushes assignments and messages to `{endpoint}/message`. It follows no
/// redirect, and calls no endpoint its [`EndpointPolicy`] refuses, whether
/// the URL names the address or a name resolves to it.
#[derive(Debug, Clone)]
pub struct HttpDispatcher {
    client: reqwest::Client,
    /// The envelope's `source`, such as `droplet-10`.
    source: String,
    limits: DispatchLimits,
}

impl HttpDispatcher {
    pub fn new(source: impl Into<String>, limits: DispatchLimits) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(DELIVERY_TIMEOUT)
            // A redirect would take the request where the endpoint check never looked.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(guard::GuardedResolver::new(limits.endpoints)));
        if limits.endpoints == EndpointPolicy::RefusePrivate {
            // A proxy would resolve the droplet's name itself, out of the resolver's sight.
            builder = builder.no_proxy();
        }
        let client = builder.build()?;
        Ok(HttpDispatcher {
            client,
            source: source.into(),
            limits,
        })
    }

    /// `{endpoint}/message`, when the policy lets it be called.
    fn message_url(&self, droplet: &Droplet) -> Result<String, String> {
        let url = format!("{}/message", droplet.endpoint.trim_end_matches('/'));
        match self.limits.endpoints.refusal(&url) {
            Some(why) => Err(format!(
                "droplet {}'s endpoint is refused: {why}",
                droplet.droplet_id
            )),
            None => Ok(url),
        }
    }

    /// `payload` for `droplet`, from this orchestrator.
    fn envelope<P>(&self, droplet: &Droplet, trace_id: Uuid, message_type: &str, payload: P) -> Envelope<P> {
        let target = format!("droplet-{}", droplet.droplet_id);
        Envelope::wrap(trace_id, self.source.as_str(), target, message_type, payload)
    }
}

#[async_trait]
impl Dispatcher for HttpDispatcher {
    async fn deliver(&self, droplet: &Droplet, task: &Task, notice: TaskNotice) -> Result<(), DeliveryError> {
        let envelope = self.envelope(droplet, task.trace_id, notice.message_type(), PushedTask { task });
        let url = self.message_url(droplet).map_err(|message| DeliveryError {
            retryable: false,
            message,
        })?;
        let response = self
            .client
            .post(&url)
            .timeout(DELIVERY_TIMEOUT)
            .json(&envelope)
            .send()
            .await
            .map_err(|e| DeliveryError {
                // A refused address stays refused; anything else may pass.
                retryable: !guard::is_refusal(&e),
                message: format!("could not reach {url}: {}", guard::describe(&e)),
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
        let url = self.message_url(droplet).map_err(SendError::Refused)?;
        let send_timeout = self.limits.send_timeout;
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SendError::TimedOut(format!("{url} did not answer within {send_timeout:?}"))
            } else {
                SendError::Unreachable(format!("could not reach {url}: {}", guard::describe(&e)))
            }
        };
        let mut response = self
            .client
            .post(&url)
            .timeout(send_timeout)
            .json(&envelope)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let bytes = read_bounded(&mut response, self.limits.max_reply_bytes)
            .await
            .map_err(failed)?
            .ok_or_else(|| SendError::ReplyTooLarge {
                status,
                message: format!(
                    "{url} answered with more than {} bytes (MAX_REPLY_BYTES)",
                    self.limits.max_reply_bytes
                ),
            })?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(DropletReply { status, body })
    }
}

/// The body of `response` when it is at most `limit` bytes, else `None`;
/// no more than `limit` bytes (and one chunk) are ever held.
async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
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
