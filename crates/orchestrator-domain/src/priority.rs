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

    #[test]
    fn deserialising_out_of_range_fails() {
        assert!(serde_json::from_str::<Priority>("0").is_err());
        assert!(serde_json::from_str::<Priority>("11").is_err());
        assert_eq!(serde_json::from_str::<Priority>("3").ok(), Priority::new(3).ok());
    }
}
