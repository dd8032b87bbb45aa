//! Statements of the events that cross replicas by `LISTEN/NOTIFY`.

use diesel::sql_types::{Array, Text};

/// The channel the replicas' events travel on.
pub(crate) const CHANNEL: &str = "orchestrator_events";

pub(crate) const LISTEN: &str = statement!("LISTEN ", CHANNEL);

named_statement! {
    /// Sends each of `payloads` on channel `channel`, in order.
    pub(crate) NOTIFY_ALL: NotifyAll<'a> {
        channel: Text = &'a str,
        payloads: Array<Text> = &'a [String],
    } = "SELECT pg_notify(:channel, payload) FROM unnest(:payloads::text[]) AS payload";
}

/// For the notifying connection's session: its commits do not wait for the disk.
pub(crate) const ASYNC_COMMIT: &str = "SET synchronous_commit = off";
