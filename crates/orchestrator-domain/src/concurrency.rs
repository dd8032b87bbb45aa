//! Concurrency limits per key: a task may name a `concurrency_key`, and a
//! limit per key says how many tasks with it may be assigned or running at
//! once (those in a status that [occupies a
//! droplet](crate::TaskStatus::occupies_droplet)), across replicas. A key
//! without a limit has none.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::error::bounded_text;

/// Longest concurrency key.
pub const MAX_KEY_CHARS: usize = 100;
/// Highest `max_running` a limit takes.
pub const MAX_RUNNING: u32 = 100_000;

/// A concurrency key as given: trimmed, 1 to [`MAX_KEY_CHARS`] letters,
/// digits and `_ . : -` (as a capability: it goes in a URL path).
pub fn parse_key(field: &str, key: &str) -> Result<String, ValidationError> {
    let key = bounded_text(field, key, MAX_KEY_CHARS)?;
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        return Err(ValidationError::new(
            field,
            format!("{field} takes letters, digits and _ . : - only, got '{key}'"),
        ));
    }
    Ok(key)
}

/// A limit's `max_running`: 0 (hold every task of the key) to [`MAX_RUNNING`].
pub fn parse_max_running(value: i64) -> Result<u32, ValidationError> {
    u32::try_from(value)
        .ok()
        .filter(|n| *n <= MAX_RUNNING)
        .ok_or_else(|| {
            ValidationError::new(
                "max_running",
                format!("max_running must be between 0 and {MAX_RUNNING}, got {value}"),
            )
        })
}

/// The limit of one key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencyLimit {
    pub key: String,
    /// At most this many tasks with the key are assigned or running at
    /// once; 0 holds them all.
    pub max_running: u32,
    pub updated_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl ConcurrencyLimit {
    /// Whether one more task with the key may be assigned while `running`
    /// are assigned or running: the one rule the router and both stores use.
    pub fn has_room(&self, running: u32) -> bool {
        crate::has_room(running, self.max_running)
    }

    /// How many more may be assigned while `running` are.
    pub fn room(&self, running: u32) -> u32 {
        self.max_running.saturating_sub(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_running: u32) -> ConcurrencyLimit {
        ConcurrencyLimit {
            key: "tenant-7".into(),
            max_running,
            updated_by: None,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_key_has_room_below_its_limit_and_none_at_zero() {
        assert!(limit(2).has_room(1));
        assert!(!limit(2).has_room(2));
        assert!(!limit(2).has_room(5));
        assert_eq!((limit(2).room(0), limit(2).room(3)), (2, 0));
        assert!(!limit(0).has_room(0), "0 holds every task of the key");
    }

    #[test]
    fn keys_and_limits_are_bounded() {
        assert_eq!(
            parse_key("concurrency_key", " tenant-7 ").expect("valid"),
            "tenant-7"
        );
        assert_eq!(
            parse_key("concurrency_key", "").expect_err("empty").field,
            "concurrency_key"
        );
        assert!(parse_key("concurrency_key", &"k".repeat(MAX_KEY_CHARS + 1)).is_err());
        assert!(parse_key("concurrency_key", "a/b").is_err());
        assert_eq!(parse_max_running(0).expect("valid"), 0);
        assert_eq!(
            parse_max_running(i64::from(MAX_RUNNING)).expect("valid"),
            MAX_RUNNING
        );
        assert_eq!(parse_max_running(-1).expect_err("negative").field, "max_running");
        assert!(parse_max_running(i64::from(MAX_RUNNING) + 1).is_err());
    }
}
