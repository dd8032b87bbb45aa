//! How the wire writes instants.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// RFC 3339 in UTC with exactly three decimals, `2026-01-01T12:00:00.000Z`:
/// what the envelopes and the feed events have always carried (serde's
/// default would drop the decimals of a whole second and show nanoseconds).
pub(crate) fn rfc3339_millis<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}
