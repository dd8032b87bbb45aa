//! UDC messaging: commands and queries addressed to the orchestrator in a
//! full envelope (`POST /message`), messages forwarded to one droplet
//! (`POST /send`) or to many (`POST /broadcast`).

pub use orchestrator_api::envelope::{Envelope, UDC_VERSION};
pub use orchestrator_api::messages::{
    Broadcast, BroadcastMessage, BroadcastOutcome, DeliveryOutcome, DirectMessage, DropletCounts, Message,
    MessageReply, Sent, SystemStatus, TaskCounts,
};
use serde_json::Value;

use crate::{Client, ClientError};

/// The droplet directory, as `GET /droplets` answers.
pub use orchestrator_api::droplets::DropletList as DropletListing;

impl Client {
    /// Sends a command or query in `envelope` to the orchestrator's
    /// `/message` and returns the payload of its answer, read as the
    /// answer to that command or query. Build the envelope with
    /// [`Envelope::new`]; its `target` must be the orchestrator's name.
    pub async fn message(&self, envelope: &Envelope) -> Result<MessageReply, ClientError> {
        let payload: Value = self
            .send(reqwest::Method::POST, "/message", Some(envelope))
            .await?;
        MessageReply::read(envelope, payload).map_err(|e| ClientError::Decode {
            url: self.url("/message"),
            message: e.to_string(),
        })
    }

    /// Forwards a message to one droplet's `/message` and returns its answer:
    /// `not_found` for an unknown droplet, 502 when it cannot be reached,
    /// 504 when it does not answer in time.
    pub async fn send_to_droplet(&self, message: &DirectMessage) -> Result<Sent, ClientError> {
        self.send(reqwest::Method::POST, "/send", Some(message)).await
    }

    /// Sends a message to every active droplet, or to those offering
    /// `capability_filter`, at once (`admin`; rate limited).
    pub async fn broadcast(&self, message: &BroadcastMessage) -> Result<Broadcast, ClientError> {
        self.send(reqwest::Method::POST, "/broadcast", Some(message))
            .await
    }
}
