//! Validation errors raised when raw input becomes a domain value.

use std::fmt;

/// A field that failed validation, with a sentence a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// PostgreSQL cannot store a NUL character in text or in `jsonb`; refusing
/// it here names the field instead of failing in the store.
pub fn storable_text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        Err(ValidationError::new(
            field,
            format!("{field} must not contain NUL characters (\\u0000)"),
        ))
    } else {
        Ok(())
    }
}

/// Checks every key and string of a JSON value with [`storable_text`].
pub fn storable_json(field: &str, value: &serde_json::Value) -> Result<(), ValidationError> {
    use serde_json::Value;
    match value {
        Value::String(s) => storable_text(field, s),
        Value::Array(items) => items.iter().try_for_each(|v| storable_json(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            storable_text(field, k)?;
            storable_json(field, v)
        }),
        _ => Ok(()),
    }
}

/// Checks that a trimmed text is non-empty, storable and at most `max` characters long.
pub(crate) fn bounded_text(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    storable_text(field, value)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Like [`bounded_text`], for optional fields: absent stays absent.
pub(crate) fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, ValidationError> {
    value.map(|v| bounded_text(field, v, max)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_anywhere_in_json() {
        let nested = serde_json::json!({ "a": [1, { "b": "x\u{0}y" }] });
        assert_eq!(
            storable_json("payload", &nested).map_err(|e| e.field),
            Err("payload".into())
        );
        let key = serde_json::json!({ "k\u{0}": 1 });
        assert!(storable_json("result", &key).is_err());
        assert!(storable_json("result", &serde_json::json!({ "ok": ["fine", 2, null] })).is_ok());
        assert!(bounded_text("title", "a\0b", 10).is_err());
    }
}
