//! UDC messaging: commands and queries addressed to the orchestrator in a
//! full envelope (`POST /message`), messages forwarded to one droplet
//! (`POST /send`) or to many (`POST /broadcast`).

use chrono::{DateTime, Utc};
use orchestrator_domain::{DropletId, TaskDraft, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use orchestrator_api::tasks::TaskReply;

use crate::{Cancelled, Client, ClientError, FeedStatus, TaskCreated, TaskRecord};

/// The UDC version this client speaks.
pub const UDC_VERSION: &str = "1.0";

/// A command or query the orchestrator runs when it arrives at `/message`.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"command": "create_task", "task_data": {…}}`: answered [`MessageReply::Created`].
    /// (Boxed: a draft is large; [`Message::create_task`] boxes it.)
    CreateTask(Box<TaskDraft>),
    /// `{"command": "cancel_task", "task_id": N}`: answered [`MessageReply::Cancelled`].
    CancelTask(TaskId),
    /// `{"query": "task_status", "task_id": N}`: answered [`MessageReply::Task`].
    TaskStatus(TaskId),
    /// `{"query": "droplet_list"}`: answered [`MessageReply::Droplets`].
    DropletList,
    /// `{"query": "system_status"}`: answered [`MessageReply::System`].
    SystemStatus,
}

impl Message {
    /// The `create_task` command for `draft`.
    pub fn create_task(draft: TaskDraft) -> Self {
        Message::CreateTask(Box::new(draft))
    }

    /// `command` or `query`: the envelope's `message_type`.
    pub fn message_type(&self) -> &'static str {
        match self {
            Message::CreateTask(_) | Message::CancelTask(_) => "command",
            Message::TaskStatus(_) | Message::DropletList | Message::SystemStatus => "query",
        }
    }

    /// The envelope's `payload`.
    pub fn payload(&self) -> Value {
        match self {
            Message::CreateTask(draft) => json!({ "command": "create_task", "task_data": draft }),
            Message::CancelTask(id) => json!({ "command": "cancel_task", "task_id": id }),
            Message::TaskStatus(id) => json!({ "query": "task_status", "task_id": id }),
            Message::DropletList => json!({ "query": "droplet_list" }),
            Message::SystemStatus => json!({ "query": "system_status" }),
        }
    }
}

/// A full UDC envelope, as `POST /message` requires: every field is needed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Envelope {
    pub udc_version: String,
    pub trace_id: Uuid,
    /// The sender, such as `droplet-5`.
    pub source: String,
    /// The orchestrator, `droplet-{DROPLET_ID}`: `droplet-10` unless configured otherwise.
    pub target: String,
    /// `command` or `query` for the orchestrator.
    pub message_type: String,
    pub timestamp: DateTime<Utc>,
    pub payload: Value,
}

impl Envelope {
    /// `message` from `source` to `target`, stamped now with a new trace id.
    pub fn new(source: impl Into<String>, target: impl Into<String>, message: &Message) -> Self {
        Envelope {
            udc_version: UDC_VERSION.to_owned(),
            trace_id: Uuid::new_v4(),
            source: source.into(),
            target: target.into(),
            message_type: message.message_type().to_owned(),
            timestamp: Utc::now(),
            payload: message.payload(),
        }
    }
}

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

/// A message for one droplet (`POST /send`), delivered to its `/message`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectMessage {
    pub target_droplet_id: DropletId,
    /// Such as `status_update`.
    pub message_type: String,
    /// Absent: `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// The droplet's answer to a [`DirectMessage`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Sent {
    pub target_droplet_id: DropletId,
    /// The HTTP status the droplet answered with.
    pub status: u16,
    /// Its body: JSON, or the text as a string.
    pub response: Value,
}

/// A message for every active droplet, or those offering a capability
/// (`POST /broadcast`, `admin`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BroadcastMessage {
    pub message_type: String,
    /// Absent: `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Only the active droplets offering this capability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability_filter: Option<String>,
}

/// The answer to a broadcast: each target's outcome.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Broadcast {
    /// The droplets it was sent to.
    pub targets: u64,
    /// Those that answered 2xx.
    pub delivered: u64,
    /// One per target, by droplet id.
    pub results: Vec<BroadcastOutcome>,
}

/// How a broadcast went for one droplet.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BroadcastOutcome {
    pub droplet_id: DropletId,
    pub outcome: DeliveryOutcome,
    /// The HTTP status it answered with, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What became of a message to one droplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The droplet answered 2xx.
    Delivered,
    /// It answered otherwise.
    Refused,
    /// It could not be reached.
    Unreachable,
    /// It did not answer within `SEND_TIMEOUT_SECONDS`.
    Timeout,
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
