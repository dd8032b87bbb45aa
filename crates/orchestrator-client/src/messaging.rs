//! UDC messaging: commands and queries addressed to the orchestrator in a
//! full envelope (`POST /message`), messages forwarded to one droplet
//! (`POST /send`) or to many (`POST /broadcast`).

pub use orchestrator_api::envelope::{Envelope, UDC_VERSION};
pub use orchestrator_api::messages::{
    Broadcast, BroadcastMessage, BroadcastOutcome, DeliveryOutcome, DirectMessage, Message, Sent,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use orchestrator_api::tasks::TaskReply;

use crate::{Cancelled, Client, ClientError, FeedStatus, TaskCreated, TaskRecord};

/// The payload of the orchestrator's answer to `POST /message`: what the
/// matching endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageReply {
    /// To `create_task`, as `POST /tasks` answers.
    Created(TaskCreated),
    /// To `cancel_task`, as `DELETE /tasks/{id}` answers.
    Cancelled(Cancelled),
    /// To `task_status`, as `GET /tasks/{id}` answers.
    Task(Box<TaskRecord>),
    /// To `droplet_list`, as `GET /droplets` answers.
    Droplets(DropletListing),
    /// To `system_status`.
    System(SystemStatus),
    /// To a command or query this client does not know, as it came.
    Other(Value),
}

/// The droplet directory, as `GET /droplets` answers.
pub use orchestrator_api::droplets::DropletList as DropletListing;

/// The answer to the `system_status` query.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SystemStatus {
    /// `active`.
    pub status: String,
    pub tasks: TaskCounts,
    pub droplets: DropletCounts,
    pub feeds: FeedStatus,
}

/// All tasks now, by where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct TaskCounts {
    pub pending: u64,
    /// `assigned` or `in_progress`.
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
}

/// All droplets now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct DropletCounts {
    pub active: u64,
    pub total: u64,
}

impl Client {
    /// Sends a command or query in `envelope` to the orchestrator's
    /// `/message` and returns the payload of its answer, read as the
    /// answer to that command or query. Build the envelope with
    /// [`Envelope::new`]; its `target` must be the orchestrator's name.
    pub async fn message(&self, envelope: &Envelope) -> Result<MessageReply, ClientError> {
        let payload: Value = self
            .send(reqwest::Method::POST, "/message", Some(envelope))
            .await?;
        reply_to(envelope, payload).map_err(|message| ClientError::Decode {
            url: self.url("/message"),
            message,
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

/// Reads `payload` as the answer to the command or query of `envelope`.
fn reply_to(envelope: &Envelope, payload: Value) -> Result<MessageReply, String> {
    fn read<T: serde::de::DeserializeOwned>(payload: Value) -> Result<T, String> {
        serde_json::from_value(payload).map_err(|e| e.to_string())
    }
    let name = match envelope.message_type.as_str() {
        "command" => envelope.payload["command"].as_str(),
        "query" => envelope.payload["query"].as_str(),
        _ => None,
    };
    Ok(match (envelope.message_type.as_str(), name) {
        ("command", Some("create_task")) => MessageReply::Created(read(payload)?),
        ("command", Some("cancel_task")) => MessageReply::Cancelled(read(payload)?),
        ("query", Some("task_status")) => MessageReply::Task(Box::new(read::<TaskReply>(payload)?.task)),
        ("query", Some("droplet_list")) => MessageReply::Droplets(read(payload)?),
        ("query", Some("system_status")) => MessageReply::System(read(payload)?),
        _ => MessageReply::Other(payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_message_names_its_kind_and_the_answer_is_read_as_its_own() {
        let cancel = Envelope::new("droplet-5", "droplet-10", &Message::CancelTask(7));
        assert_eq!(
            (cancel.message_type.as_str(), &cancel.payload),
            ("command", &json!({ "command": "cancel_task", "task_id": 7 }))
        );
        let answer = json!({ "task_id": 7, "status": "cancelled", "cancelled_at": null });
        assert!(matches!(
            reply_to(&cancel, answer),
            Ok(MessageReply::Cancelled(Cancelled { task_id: 7, .. }))
        ));
        let counts = json!({ "active": 1, "total": 2 });
        let listing = Envelope::new("a", "b", &Message::DropletList);
        assert!(reply_to(&listing, counts.clone()).is_err(), "not a listing");

        let mut unknown = Envelope::new("a", "b", &Message::SystemStatus);
        unknown.payload = json!({ "query": "weather" });
        assert_eq!(
            reply_to(&unknown, counts.clone()),
            Ok(MessageReply::Other(counts))
        );
    }
}
