//! The UDC envelope: what every authenticated endpoint answers in, what
//! `POST /message` takes, and what any request body may be wrapped in.

use crate::messages::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The UDC version spoken here.
pub const UDC_VERSION: &str = "1.0";

/// A full UDC envelope: the answers of authenticated endpoints (with
/// `message_type` `response` or `error`) and the body of `POST /message`
/// (`command` or `query`), which needs every field and no other.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<P = Value> {
    pub udc_version: String,
    pub trace_id: Uuid,
    /// The sender, such as `droplet-5`; the orchestrator is `droplet-10`
    /// unless configured otherwise.
    pub source: String,
    /// The receiver: the orchestrator for `/message`, the caller's token
    /// subject in an answer.
    pub target: String,
    /// `command` or `query` to the orchestrator; `response` or `error` from it.
    pub message_type: String,
    #[serde(serialize_with = "crate::time::rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    /// `{"command": "create_task", "task_data": {…}}`,
    /// `{"command": "cancel_task", "task_id": N}`,
    /// `{"query": "task_status", "task_id": N}`, `{"query": "droplet_list"}`
    /// or `{"query": "system_status"}` to `/message`; the answer in a response.
    pub payload: P,
}

impl Envelope {
    /// `message` from `source` to `target`, stamped now with a new trace id.
    pub fn new(source: impl Into<String>, target: impl Into<String>, message: &Message) -> Self {
        Envelope::wrap(
            Uuid::new_v4(),
            source,
            target,
            message.message_type(),
            message.payload(),
        )
    }
}

impl<P> Envelope<P> {
    /// `payload`, a message of `message_type` from `source` to `target` in
    /// the trace `trace_id`, stamped now in this UDC version.
    pub fn wrap(
        trace_id: Uuid,
        source: impl Into<String>,
        target: impl Into<String>,
        message_type: impl Into<String>,
        payload: P,
    ) -> Self {
        Envelope {
            udc_version: UDC_VERSION.to_owned(),
            trace_id,
            source: source.into(),
            target: target.into(),
            message_type: message_type.into(),
            timestamp: Utc::now(),
            payload,
        }
    }
}

/// The payload of a body that is an envelope (an object with `udc_version`
/// and `payload`) and its trace id when it names a valid one; any other body
/// is its own payload. Request bodies may come bare or wrapped, and the
/// public endpoints answer bare, so readers take both.
pub fn open(body: Value) -> (Value, Option<Uuid>) {
    match body {
        Value::Object(mut map) if map.contains_key("udc_version") && map.contains_key("payload") => {
            let trace = map
                .get("trace_id")
                .and_then(Value::as_str)
                .and_then(|t| Uuid::parse_str(t).ok());
            (map.remove("payload").unwrap_or(Value::Null), trace)
        }
        other => (other, None),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at_noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .expect("a time")
    }

    #[test]
    fn an_envelope_is_written_with_its_fields_in_order_and_milliseconds() {
        let envelope = Envelope {
            udc_version: UDC_VERSION.to_owned(),
            trace_id: Uuid::nil(),
            source: "droplet-10".to_owned(),
            target: "alice".to_owned(),
            message_type: "response".to_owned(),
            timestamp: at_noon(),
            payload: json!({ "b": 1, "a": 2 }),
        };
        assert_eq!(
            serde_json::to_string(&envelope).expect("serialise"),
            r#"{"udc_version":"1.0","trace_id":"00000000-0000-0000-0000-000000000000","source":"droplet-10","target":"alice","message_type":"response","timestamp":"2026-01-01T12:00:00.000Z","payload":{"b":1,"a":2}}"#
        );
    }

    #[test]
    fn a_full_envelope_needs_every_field_and_no_other() {
        let full = json!({
            "udc_version": "1.0", "trace_id": Uuid::nil(), "source": "a", "target": "b",
            "message_type": "query", "timestamp": "2026-01-01T12:00:00Z", "payload": {}
        });
        assert!(serde_json::from_value::<Envelope>(full.clone()).is_ok());
        let mut extra = full.clone();
        extra["extra"] = json!(1);
        assert!(serde_json::from_value::<Envelope>(extra).is_err());
        let mut missing = full;
        missing.as_object_mut().expect("object").remove("timestamp");
        assert!(serde_json::from_value::<Envelope>(missing).is_err());
    }

    #[test]
    fn opening_takes_the_payload_of_an_envelope_and_leaves_a_bare_body() {
        let wrapped = json!({ "udc_version": "1.0", "trace_id": Uuid::nil(), "payload": { "x": 1 } });
        assert_eq!(open(wrapped), (json!({ "x": 1 }), Some(Uuid::nil())));
        let odd_trace = json!({ "udc_version": "1.0", "trace_id": "not a uuid", "payload": 2 });
        assert_eq!(open(odd_trace), (json!(2), None));
        assert_eq!(open(json!({ "payload": 3 })), (json!({ "payload": 3 }), None));
        assert_eq!(open(Value::Null), (Value::Null, None));
    }
}
