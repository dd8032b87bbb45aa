//! The live feeds: the query of `/ws/tasks` and `/ws/droplets`, the events
//! they send, and `GET /ws/status`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use orchestrator_domain::{Droplet, DropletId, Task};
use serde::{Deserialize, Serialize};
use serde_json::Value;

// The doc comment is the schema's description in the OpenAPI document.
/// The two feeds of the spec.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    Tasks,
    Droplets,
}

impl FeedKind {
    /// The feed's path: `/ws/tasks` or `/ws/droplets`.
    pub fn path(self) -> &'static str {
        match self {
            FeedKind::Tasks => "/ws/tasks",
            FeedKind::Droplets => "/ws/droplets",
        }
    }
}

/// The query of `/ws/tasks` and `/ws/droplets`: the token and the
/// optional filters. An absent field is left out of the query.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The bearer token, for clients that cannot set a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Only tasks of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Only tasks requiring it, or droplets offering it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Only tasks assigned to it, or that droplet's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub droplet_id: Option<DropletId>,
}

/// One event of `/ws/tasks` or `/ws/droplets`, a text frame:
/// `task_assigned`, `droplet_registered`, ….
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FeedEvent {
    pub event: String,
    /// The task or the droplet as it is after the event (a droplet's
    /// health change adds `previous_status`).
    pub data: Value,
    #[serde(serialize_with = "crate::time::rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
}

impl FeedEvent {
    /// The task of a task event.
    pub fn task(&self) -> Option<Task> {
        self.event
            .starts_with("task_")
            .then(|| serde_json::from_value(self.data.clone()).ok())
            .flatten()
    }

    /// The droplet of a droplet event.
    pub fn droplet(&self) -> Option<Droplet> {
        self.event
            .starts_with("droplet_")
            .then(|| serde_json::from_value(self.data.clone()).ok())
            .flatten()
    }
}

/// `GET /ws/status`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FeedStatus {
    pub connections: BTreeMap<FeedKind, usize>,
    pub total_connections: usize,
    pub connections_per_caller: BTreeMap<String, usize>,
    pub messages_sent: u64,
    /// Clients disconnected because they fell too far behind.
    pub dropped_slow_clients: u64,
    /// Clients disconnected because they stopped answering pings.
    pub dropped_unresponsive_clients: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_query_leaves_out_what_it_does_not_filter_on() {
        let query = FeedQuery {
            droplet_id: Some(7),
            ..FeedQuery::default()
        };
        assert_eq!(
            serde_json::to_value(&query).ok(),
            Some(json!({ "droplet_id": 7 }))
        );
        assert!(serde_json::from_value::<FeedQuery>(json!({ "droplet": 7 })).is_err());
    }

    #[test]
    fn an_event_is_written_with_milliseconds_and_read_back() {
        let text = r#"{"event":"droplet_registered","data":{"id":1},"timestamp":"2026-01-01T00:00:00.000Z"}"#;
        let event: FeedEvent = serde_json::from_str(text).expect("event");
        assert_eq!(serde_json::to_string(&event).ok().as_deref(), Some(text));
        assert_eq!(event.task(), None);
    }
}
