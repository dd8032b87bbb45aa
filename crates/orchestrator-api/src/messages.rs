//! UDC messaging: the commands and queries a `POST /message` envelope
//! carries to the orchestrator, and the bodies of `POST /send` and
//! `POST /broadcast`.

use orchestrator_domain::{DropletId, Task, TaskDraft, TaskId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use crate::droplets::DropletList;
use crate::envelope::Envelope;
use crate::feeds::FeedStatus;
use crate::tasks::{Cancelled, TaskCreated, TaskReply};

/// A command or query the orchestrator runs when it arrives at `/message`.
///
/// On the wire it is the envelope's `message_type` (`command` or `query`)
/// and its `payload`, which names the command or query in a field of that
/// name: `{"command": "cancel_task", "task_id": 7}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"command": "create_task", "task_data": {…}}`, answered as
    /// `POST /tasks` answers. (Boxed: a draft is large; [`Message::create_task`]
    /// boxes it.)
    CreateTask(Box<TaskDraft>),
    /// `{"command": "cancel_task", "task_id": N}`, answered as
    /// `DELETE /tasks/{id}` answers.
    CancelTask(TaskId),
    /// `{"query": "task_status", "task_id": N}`, answered as
    /// `GET /tasks/{id}` answers.
    TaskStatus(TaskId),
    /// `{"query": "droplet_list"}`, answered as `GET /droplets` answers.
    DropletList,
    /// `{"query": "system_status"}`, answered with the counts of tasks,
    /// droplets and feeds.
    SystemStatus,
}

/// The commands `/message` runs, as `payload.command` names them.
pub const COMMANDS: &str = "create_task, cancel_task";
/// The queries `/message` answers, as `payload.query` names them.
pub const QUERIES: &str = "task_status, droplet_list, system_status";

/// Why an envelope's `message_type` and `payload` are not a [`Message`]:
/// the field at fault, named as the error body names it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage {
    /// Such as `payload.task_id`.
    pub field: &'static str,
    pub message: String,
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

    /// Reads the command or query of an envelope of `message_type` with
    /// `payload`, naming the first field that does not fit.
    pub fn read(message_type: &str, payload: &Value) -> Result<Message, InvalidMessage> {
        match message_type {
            "command" => Self::command(payload),
            "query" => Self::query(payload),
            other => Err(InvalidMessage {
                field: "message_type",
                message: format!("'{other}' is not handled here; send a 'command' or a 'query'"),
            }),
        }
    }

    fn command(payload: &Value) -> Result<Message, InvalidMessage> {
        match payload["command"].as_str() {
            Some("create_task") => Ok(Message::create_task(field(payload, "payload.task_data")?)),
            Some("cancel_task") => Ok(Message::CancelTask(field(payload, "payload.task_id")?)),
            other => Err(unknown("payload.command", other, COMMANDS)),
        }
    }

    fn query(payload: &Value) -> Result<Message, InvalidMessage> {
        match payload["query"].as_str() {
            Some("task_status") => Ok(Message::TaskStatus(field(payload, "payload.task_id")?)),
            Some("droplet_list") => Ok(Message::DropletList),
            Some("system_status") => Ok(Message::SystemStatus),
            other => Err(unknown("payload.query", other, QUERIES)),
        }
    }
}

/// The payload, as [`Message::payload`] gives it.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.payload().serialize(serializer)
    }
}

/// The payload's field at `path` (such as `payload.task_id`) read as `T`.
fn field<T: DeserializeOwned>(payload: &Value, path: &'static str) -> Result<T, InvalidMessage> {
    let name = path.trim_start_matches("payload.");
    serde_json::from_value(payload[name].clone()).map_err(|e| InvalidMessage {
        field: path,
        message: e.to_string(),
    })
}

fn unknown(field: &'static str, given: Option<&str>, known: &str) -> InvalidMessage {
    let message = match given {
        Some(name) => format!("'{name}' is not known; known: {known}"),
        None => format!("is required; one of {known}"),
    };
    InvalidMessage { field, message }
}

/// The payload of the orchestrator's answer to a `Message`: what the
/// matching endpoint answers.
///
/// On the wire it is that answer alone (the enum is untagged), so a reader
/// tells the variants apart by the message it sent: `MessageReply::read`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageReply {
    /// To `create_task`, as `POST /tasks` answers.
    Created(TaskCreated),
    /// To `cancel_task`, as `DELETE /tasks/{id}` answers.
    Cancelled(Cancelled),
    /// To `task_status`, as `GET /tasks/{id}` answers.
    Task(Box<TaskReply>),
    /// To `droplet_list`, as `GET /droplets` answers.
    Droplets(DropletList),
    /// To `system_status`.
    System(SystemStatus),
    /// To a command or query this crate does not know, as it came. The
    /// server never answers with it, so it stays out of the OpenAPI
    /// document (which leaves out the variants serde skips in either
    /// direction).
    #[serde(skip_deserializing)]
    Other(Value),
}

impl MessageReply {
    /// Reads `answer`, the payload of the orchestrator's reply, as the
    /// answer to the command or query that `envelope` carried. A command or
    /// query not known here is kept as it came, in [`MessageReply::Other`].
    pub fn read(envelope: &Envelope, answer: Value) -> Result<Self, serde_json::Error> {
        let Ok(message) = Message::read(&envelope.message_type, &envelope.payload) else {
            return Ok(MessageReply::Other(answer));
        };
        Ok(match message {
            Message::CreateTask(_) => MessageReply::Created(serde_json::from_value(answer)?),
            Message::CancelTask(_) => MessageReply::Cancelled(serde_json::from_value(answer)?),
            Message::TaskStatus(_) => MessageReply::Task(serde_json::from_value(answer)?),
            Message::DropletList => MessageReply::Droplets(serde_json::from_value(answer)?),
            Message::SystemStatus => MessageReply::System(serde_json::from_value(answer)?),
        })
    }
}

/// The answer to the `system_status` query.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SystemStatus {
    /// `active`.
    pub status: String,
    pub tasks: TaskCounts,
    pub droplets: DropletCounts,
    pub feeds: FeedStatus,
}

/// All tasks now, by where they are.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct TaskCounts {
    pub pending: u64,
    /// `assigned` or `in_progress`.
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
}

/// All droplets now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct DropletCounts {
    pub active: u64,
    pub total: u64,
}

/// The payload of what the orchestrator pushes to a droplet's `/message`
/// about one of its tasks (`message_type` `task_assignment` or
/// `task_cancel_requested`): the task as it now stands. The sender may
/// lend it (`PushedTask<&Task>`); a droplet reads a `PushedTask`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PushedTask<T = Task> {
    pub task: T,
}

/// The body of `POST /send` and `POST /broadcast` as the server reads it.
/// Every field may come in the query instead (the spec's form, `payload`
/// as JSON text), so none is required here; a client sends a
/// [`DirectMessage`] or a [`BroadcastMessage`], which are this body with
/// the fields their endpoint needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    /// `/send`: the droplet to deliver to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_droplet_id: Option<DropletId>,
    /// Such as `status_update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// Absent: `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// `/broadcast`: only the active droplets offering this capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_filter: Option<String>,
}

/// The query string of `POST /send` and `POST /broadcast`, the spec's form
/// of their fields: all text, `payload` as JSON text. The server reads the
/// body first and takes from the query what the body leaves out.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_droplet_id: Option<DropletId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// JSON text, read when merged with the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_filter: Option<String>,
}

/// The query's values, `payload` still text (a JSON string).
impl From<MessageQuery> for MessageParams {
    fn from(query: MessageQuery) -> Self {
        MessageParams {
            target_droplet_id: query.target_droplet_id,
            message_type: query.message_type,
            payload: query.payload.map(Value::String),
            capability_filter: query.capability_filter,
        }
    }
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

impl From<DirectMessage> for MessageParams {
    fn from(message: DirectMessage) -> Self {
        MessageParams {
            target_droplet_id: Some(message.target_droplet_id),
            message_type: Some(message.message_type),
            payload: message.payload,
            capability_filter: None,
        }
    }
}

impl From<BroadcastMessage> for MessageParams {
    fn from(message: BroadcastMessage) -> Self {
        MessageParams {
            target_droplet_id: None,
            message_type: Some(message.message_type),
            payload: message.payload,
            capability_filter: message.capability_filter,
        }
    }
}

/// The answer to `POST /send`: the droplet's answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Sent {
    pub target_droplet_id: DropletId,
    /// The HTTP status the droplet answered with.
    pub status: u16,
    /// Its body: JSON, or the text as a string.
    pub response: Value,
}

/// The answer to `POST /broadcast`: each target's outcome.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_from_its_own_payload() {
        let draft: TaskDraft = serde_json::from_value(json!({
            "title": "resize", "task_type": "image", "priority": 3,
        }))
        .expect("a draft");
        for message in [
            Message::create_task(draft),
            Message::CancelTask(7),
            Message::TaskStatus(8),
            Message::DropletList,
            Message::SystemStatus,
        ] {
            let read = Message::read(message.message_type(), &message.payload());
            assert_eq!(read, Ok(message));
        }
    }

    #[test]
    fn an_answer_is_read_as_the_answer_to_the_message_sent() {
        let cancel = Envelope::new("droplet-5", "droplet-10", &Message::CancelTask(7));
        assert_eq!(
            (cancel.message_type.as_str(), &cancel.payload),
            ("command", &json!({ "command": "cancel_task", "task_id": 7 }))
        );
        let answer = json!({ "task_id": 7, "status": "cancelled", "cancelled_at": null });
        assert!(matches!(
            MessageReply::read(&cancel, answer),
            Ok(MessageReply::Cancelled(Cancelled { task_id: 7, .. }))
        ));
        let counts = json!({ "active": 1, "total": 2 });
        let listing = Envelope::new("a", "b", &Message::DropletList);
        assert!(
            MessageReply::read(&listing, counts.clone()).is_err(),
            "not a listing"
        );

        let mut unknown = Envelope::new("a", "b", &Message::SystemStatus);
        unknown.payload = json!({ "query": "weather" });
        assert_eq!(
            MessageReply::read(&unknown, counts.clone()).expect("kept"),
            MessageReply::Other(counts)
        );
    }

    #[test]
    fn a_direct_or_broadcast_message_is_the_body_the_server_reads() {
        let direct = DirectMessage {
            target_droplet_id: 4,
            message_type: "status_update".into(),
            payload: Some(json!({"ok": true})),
        };
        let broadcast = BroadcastMessage {
            message_type: "announcement".into(),
            payload: None,
            capability_filter: Some("scan".into()),
        };
        let read = |body: Value| serde_json::from_value::<MessageParams>(body).expect("reads");
        assert_eq!(read(json!(direct)), MessageParams::from(direct));
        assert_eq!(read(json!(broadcast)), MessageParams::from(broadcast));
    }

    #[test]
    fn a_payload_that_does_not_fit_names_its_field() {
        let bad = |kind: &str, payload: Value| Message::read(kind, &payload).expect_err("invalid").field;
        assert_eq!(bad("event", json!({})), "message_type");
        assert_eq!(bad("command", json!({})), "payload.command");
        assert_eq!(bad("command", json!({"command": "launch"})), "payload.command");
        assert_eq!(
            bad("command", json!({"command": "cancel_task"})),
            "payload.task_id"
        );
        assert_eq!(
            bad("command", json!({"command": "create_task"})),
            "payload.task_data"
        );
        assert_eq!(bad("query", json!({"query": "weather"})), "payload.query");
        assert_eq!(
            bad("query", json!({"query": "task_status", "task_id": "x"})),
            "payload.task_id"
        );
    }
}
