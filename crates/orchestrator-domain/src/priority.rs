//! Task priority: 1 is the most urgent, 10 the least, 5 by default.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A priority in `1..=10`; 1 is the highest. Cannot be built out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Priority(u8);

/// An integer from 1 to 10, as the API reads and writes it.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Priority {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(10))
            .description(Some("1 (the most urgent) to 10; 5 when not given"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Priority {}

impl Priority {
    pub const HIGHEST: Priority = Priority(1);
    pub const LOWEST: Priority = Priority(10);

    pub fn new(value: i64) -> Result<Self, ValidationError> {
        match u8::try_from(value) {
            Ok(v @ 1..=10) => Ok(Priority(v)),
            _ => Err(ValidationError::new(
                "priority",
                format!("priority must be between 1 (highest) and 10 (lowest), got {value}"),
            )),
        }
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

/// The words the mesh's integration guide writes for a priority, and the
/// levels they stand for: `critical` 1, `high` 3, `normal` 5 (the default),
/// `low` 8.
pub const PRIORITY_WORDS: [(&str, i64); 4] = [("critical", 1), ("high", 3), ("normal", 5), ("low", 8)];

/// Reads a priority written as a number or as one of [`PRIORITY_WORDS`]
/// (any case), as a level still to be checked by [`Priority::new`].
pub fn deserialize_level<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    deserializer.deserialize_any(LevelVisitor)
}

struct LevelVisitor;

impl<'de> serde::de::Visitor<'de> for LevelVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a priority: a number from 1 (highest) to 10, or critical, high, normal or low")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        // Out of range either way; Priority::new says so with the bounds.
        Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        PRIORITY_WORDS
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(v.trim()))
            .map(|(_, level)| Some(*level))
            .ok_or_else(|| {
                E::custom(format!(
                    "unknown priority '{v}': use a number from 1 (highest) to 10, or critical, high, normal or low"
                ))
            })
    }
}

/// The schema of a priority as a client may write it.
#[cfg(feature = "openapi")]
pub fn level_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(10)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(PRIORITY_WORDS.iter().map(|(word, _)| *word))),
        )
        .description(Some(
            "1 (the most urgent) to 10, or a word: critical (1), high (3), normal (5), low (8); 5 when not given",
        ))
        .into()
}

impl Default for Priority {
    fn default() -> Self {
        Priority(5)
    }
}

impl TryFrom<i64> for Priority {
    type Error = ValidationError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Priority::new(value)
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        i64::from(p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_to_ten_only() {
        for v in 1..=10 {
            assert_eq!(Priority::new(v).map(Priority::value), Ok(v as u8));
        }
        for v in [i64::MIN, -1, 0, 11, 256, i64::MAX] {
            assert!(Priority::new(v).is_err(), "{v} must be refused");
        }
    }

    #[test]
    fn default_is_five_and_one_sorts_first() {
        assert_eq!(Priority::default().value(), 5);
        assert!(Priority::HIGHEST < Priority::LOWEST);
    }

    #[derive(Debug, serde::Deserialize)]
    struct Level {
        #[serde(default, deserialize_with = "deserialize_level")]
        priority: Option<i64>,
    }

    fn level(json: &str) -> Result<Option<i64>, String> {
        serde_json::from_str::<Level>(json)
            .map(|l| l.priority)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn levels_are_read_as_numbers_or_words() {
        assert_eq!(level(r#"{"priority": 2}"#), Ok(Some(2)));
        assert_eq!(level(r#"{"priority": "normal"}"#), Ok(Some(5)));
        assert_eq!(level(r#"{"priority": "Critical"}"#), Ok(Some(1)));
        assert_eq!(level(r#"{"priority": "high"}"#), Ok(Some(3)));
        assert_eq!(level(r#"{"priority": "low"}"#), Ok(Some(8)));
        assert_eq!(level(r#"{"priority": null}"#), Ok(None));
        assert_eq!(level("{}"), Ok(None));
        let unknown = level(r#"{"priority": "urgent"}"#).expect_err("unknown word");
        assert!(unknown.contains("unknown priority 'urgent'"), "{unknown}");
        assert!(level(r#"{"priority": 2.5}"#).is_err());
        assert!(level(r#"{"priority": [1]}"#).is_err());
    }

    #[test]
    fn deserialising_out_of_range_fails() {
        assert!(serde_json::from_str::<Priority>("0").is_err());
        assert!(serde_json::from_str::<Priority>("11").is_err());
        assert_eq!(serde_json::from_str::<Priority>("3").ok(), Priority::new(3).ok());
    }
}
