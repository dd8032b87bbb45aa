//! Statements of the events that cross replicas by `LISTEN/NOTIFY`.

/// The channel the replicas' events travel on.
pub(crate) const CHANNEL: &str = "orchestrator_events";

pub(crate) const LISTEN: &str = statement!("LISTEN ", CHANNEL);

/// Sends each of `$2` on channel `$1`, in order.
pub(crate) const NOTIFY_ALL: &str = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload";

/// For the notifying connection's session: its commits do not wait for the disk.
pub(crate) const ASYNC_COMMIT: &str = "SET synchronous_commit = off";
