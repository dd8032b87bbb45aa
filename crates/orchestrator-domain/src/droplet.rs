//! Droplets: the services that run tasks, what they can do and how healthy
//! they are.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ValidationError;
use crate::error::{bounded_text, optional_text};

/// The external droplet number the Registry gives (the spec's `droplet_id`).
pub type DropletId = i64;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_ENDPOINT_CHARS: usize = 255;
pub const MAX_CAPABILITY_CHARS: usize = 100;
pub const MAX_CAPABILITIES: usize = 100;
pub const DEFAULT_MAX_CONCURRENT_TASKS: u32 = 10;
pub const MAX_CONCURRENT_TASKS_LIMIT: u32 = 10_000;
/// Droplet ids must fit the schema's `INTEGER`.
pub const MAX_DROPLET_ID: DropletId = i32::MAX as DropletId;

/// Something a droplet can do, such as `code_verification`: letters, digits
/// and `_ - . :`, at most 100 characters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Capability(String);

impl Capability {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if value.is_empty() || value.len() > MAX_CAPABILITY_CHARS || !value.chars().all(allowed) {
            return Err(ValidationError::new(
                "capability",
                format!(
                    "capability '{}' must be 1 to {MAX_CAPABILITY_CHARS} letters, digits or _ - . :",
                    value.chars().take(MAX_CAPABILITY_CHARS).collect::<String>()
                ),
            ));
        }
        Ok(Capability(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Capability {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Capability::new(&value)
    }
}

impl From<Capability> for String {
    fn from(c: Capability) -> String {
        c.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A droplet's health as the orchestrator sees it. Only `active` droplets get work.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropletStatus {
    Active,
    Inactive,
    Error,
}

impl DropletStatus {
    pub const ALL: [DropletStatus; 3] = [
        DropletStatus::Active,
        DropletStatus::Inactive,
        DropletStatus::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropletStatus::Active => "active",
            DropletStatus::Inactive => "inactive",
            DropletStatus::Error => "error",
        }
    }
}

impl fmt::Display for DropletStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DropletStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DropletStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!("unknown status '{s}'; expected active, inactive or error"),
                )
            })
    }
}

/// A registered droplet.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Droplet {
    pub droplet_id: DropletId,
    pub name: String,
    pub steward: Option<String>,
    pub endpoint: String,
    pub capabilities: Vec<Capability>,
    pub status: DropletStatus,
    /// How many tasks it may hold at once (`assigned` plus `in_progress`).
    pub max_concurrent_tasks: u32,
    /// Set by an admin's deactivate: heartbeats do not bring it back, only activate does.
    pub manually_deactivated: bool,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub last_assigned_at: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The Registry's id for the service this droplet is, from its directory.
    #[serde(default)]
    pub service_id: Option<i64>,
    /// When its current process registered: a registration without
    /// `resume` is a new process, and the tasks assigned before it are
    /// taken back. `None` for a droplet only the Registry listed.
    #[serde(default)]
    pub session_started_at: Option<DateTime<Utc>>,
}

impl Droplet {
    pub fn has_capability(&self, capability: &Capability) -> bool {
        self.capabilities.contains(capability)
    }

    /// The status a heartbeat reporting `reported` leaves the droplet in.
    pub fn status_after_heartbeat(&self, reported: Option<DropletStatus>) -> DropletStatus {
        if self.manually_deactivated {
            DropletStatus::Inactive
        } else {
            reported.unwrap_or(DropletStatus::Active)
        }
    }
}

/// How a service of the mesh names itself in its Registry token or its
/// heartbeat: by the Registry's id for it, or by its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceRef {
    Id(i64),
    Name(String),
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceRef::Id(id) => write!(f, "service_id {id}"),
            ServiceRef::Name(name) => write!(f, "service '{name}'"),
        }
    }
}

/// A registration as a droplet sends it, before validation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationDraft {
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub droplet_id: i64,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward: Option<String>,
    /// Where the droplet takes messages: `{endpoint}/message`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^https?://[^\s]+$", max_length = 255))]
    pub endpoint: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100, inline))]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub max_concurrent_tasks: Option<i64>,
    /// `true` when the same process registers again (after a network
    /// blip, say) and keeps the tasks it holds. Otherwise a registration
    /// is a new process: what the droplet held is requeued (assigned) or
    /// failed and retried (in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<bool>,
}

/// A validated registration.
#[derive(Debug, Clone, PartialEq)]
pub struct DropletRegistration {
    pub droplet_id: DropletId,
    pub name: String,
    pub steward: Option<String>,
    pub endpoint: String,
    pub capabilities: Vec<Capability>,
    pub max_concurrent_tasks: u32,
    /// The same process registering again: it keeps its tasks.
    pub resume: bool,
}

impl DropletRegistration {
    pub fn parse(draft: RegistrationDraft) -> Result<Self, ValidationError> {
        Ok(DropletRegistration {
            droplet_id: parse_droplet_id(draft.droplet_id)?,
            name: bounded_text("name", &draft.name, MAX_NAME_CHARS)?,
            steward: optional_text("steward", draft.steward.as_deref(), MAX_NAME_CHARS)?,
            endpoint: parse_endpoint(&draft.endpoint)?,
            capabilities: parse_capabilities(&draft.capabilities)?,
            max_concurrent_tasks: parse_capacity(draft.max_concurrent_tasks)?,
            resume: draft.resume.unwrap_or(false),
        })
    }
}

/// Checks an external droplet id: positive and within the schema's `INTEGER`.
pub fn parse_droplet_id(value: i64) -> Result<DropletId, ValidationError> {
    if (1..=MAX_DROPLET_ID).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(
            "droplet_id",
            format!("droplet_id must be between 1 and {MAX_DROPLET_ID}, got {value}"),
        ))
    }
}

fn parse_endpoint(value: &str) -> Result<String, ValidationError> {
    let endpoint = bounded_text("endpoint", value, MAX_ENDPOINT_CHARS)?;
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .filter(|host| !host.is_empty() && !host.contains(char::is_whitespace))
        // `{endpoint}/message` must be a path: a query or fragment would swallow it.
        .filter(|rest| !rest.contains(['?', '#']))
        // Read as the HTTP client will read it: a host it cannot find is no endpoint.
        .filter(|_| url::Url::parse(&endpoint).is_ok_and(|url| url.host().is_some()));
    match rest {
        Some(_) => Ok(endpoint.trim_end_matches('/').to_owned()),
        None => Err(ValidationError::new(
            "endpoint",
            "endpoint must be an http:// or https:// URL without spaces, query or fragment",
        )),
    }
}

fn parse_capabilities(values: &[String]) -> Result<Vec<Capability>, ValidationError> {
    if values.len() > MAX_CAPABILITIES {
        return Err(ValidationError::new(
            "capabilities",
            format!("at most {MAX_CAPABILITIES} capabilities may be declared"),
        ));
    }
    let mut capabilities = Vec::with_capacity(values.len());
    for value in values {
        let capability =
            Capability::new(value).map_err(|e| ValidationError::new("capabilities", e.message))?;
        if !capabilities.contains(&capability) {
            capabilities.push(capability);
        }
    }
    Ok(capabilities)
}

fn parse_capacity(value: Option<i64>) -> Result<u32, ValidationError> {
    match value {
        None => Ok(DEFAULT_MAX_CONCURRENT_TASKS),
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| (1..=MAX_CONCURRENT_TASKS_LIMIT).contains(v))
            .ok_or_else(|| {
                ValidationError::new(
                    "max_concurrent_tasks",
                    format!(
                        "max_concurrent_tasks must be between 1 and {MAX_CONCURRENT_TASKS_LIMIT}, got {v}"
                    ),
                )
            }),
    }
}

/// A heartbeat as a droplet sends it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatReport {
    /// What the droplet says of itself; absent means `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DropletStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
}

/// A heartbeat as the mesh's integration guide sends it to `POST
/// /heartbeat`: the droplet is named by the Registry's id for its service
/// (`service_id`) or by its `droplet_id`; with neither, the caller's own
/// droplet is meant.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceHeartbeat {
    /// The Registry's id for the service (a number, or a string of digits).
    #[serde(
        default,
        deserialize_with = "id_or_digits",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1))]
    pub service_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub droplet_id: Option<DropletId>,
    /// What the droplet says of itself; absent means `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DropletStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
}

impl ServiceHeartbeat {
    /// The heartbeat itself, once its droplet is known.
    pub fn report(&self) -> HeartbeatReport {
        HeartbeatReport {
            status: self.status,
            metrics: self.metrics.clone(),
        }
    }
}

/// Reads an id written as a number or as a string of digits.
pub fn id_or_digits<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Digits(String),
    }
    match Option::<Id>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Id::Number(n)) => Ok(Some(n)),
        Some(Id::Digits(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is not an id: ids are integers"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> RegistrationDraft {
        RegistrationDraft {
            droplet_id: 14,
            name: "Visibility Deck".into(),
            endpoint: "https://visibility.example/".into(),
            capabilities: vec!["monitoring".into(), "alerts".into(), "monitoring".into()],
            ..RegistrationDraft::default()
        }
    }

    #[test]
    fn the_guides_heartbeat_is_read() {
        let beat: ServiceHeartbeat = serde_json::from_str(
            r#"{"service_id": 7001, "status": "active", "metrics": {"requests_per_minute": 3}}"#,
        )
        .expect("the guide's body");
        assert_eq!(beat.service_id, Some(7001));
        assert_eq!(beat.report().status, Some(DropletStatus::Active));
        let digits: ServiceHeartbeat = serde_json::from_str(r#"{"service_id": "7001"}"#).expect("digits");
        assert_eq!(digits.service_id, Some(7001));
        assert!(serde_json::from_str::<ServiceHeartbeat>(r#"{"service_id": "seven"}"#).is_err());
        assert!(serde_json::from_str::<ServiceHeartbeat>(r#"{"service": 7001}"#).is_err());
    }

    #[test]
    fn registration_is_normalised() {
        let reg = DropletRegistration::parse(draft()).expect("valid");
        assert_eq!(reg.endpoint, "https://visibility.example");
        assert_eq!(reg.capabilities.len(), 2, "duplicates are dropped");
        assert_eq!(reg.max_concurrent_tasks, DEFAULT_MAX_CONCURRENT_TASKS);
    }

    #[test]
    fn registration_refuses_bad_fields() {
        let cases: Vec<(RegistrationDraft, &str)> = vec![
            (
                RegistrationDraft {
                    droplet_id: 0,
                    ..draft()
                },
                "droplet_id",
            ),
            (
                RegistrationDraft {
                    droplet_id: MAX_DROPLET_ID + 1,
                    ..draft()
                },
                "droplet_id",
            ),
            (
                RegistrationDraft {
                    name: " ".into(),
                    ..draft()
                },
                "name",
            ),
            (
                RegistrationDraft {
                    name: "n".repeat(101),
                    ..draft()
                },
                "name",
            ),
            (
                RegistrationDraft {
                    endpoint: "ftp://x".into(),
                    ..draft()
                },
                "endpoint",
            ),
            (
                RegistrationDraft {
                    endpoint: "http://".into(),
                    ..draft()
                },
                "endpoint",
            ),
            (
                RegistrationDraft {
                    endpoint: "http://[::1".into(),
                    ..draft()
                },
                "endpoint",
            ),
            (
                RegistrationDraft {
                    endpoint: "http://a/?to=".into(),
                    ..draft()
                },
                "endpoint",
            ),
            (
                RegistrationDraft {
                    capabilities: vec!["".into()],
                    ..draft()
                },
                "capabilities",
            ),
            (
                RegistrationDraft {
                    max_concurrent_tasks: Some(0),
                    ..draft()
                },
                "max_concurrent_tasks",
            ),
        ];
        for (draft, field) in cases {
            let err = DropletRegistration::parse(draft.clone()).expect_err(field);
            assert_eq!(err.field, field, "{draft:?}");
        }
    }

    #[test]
    fn heartbeat_never_revives_a_manually_deactivated_droplet() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let mut droplet = Droplet {
            droplet_id: 1,
            name: "a".into(),
            steward: None,
            endpoint: "http://a".into(),
            capabilities: vec![],
            status: DropletStatus::Inactive,
            max_concurrent_tasks: 1,
            manually_deactivated: false,
            last_heartbeat: None,
            last_assigned_at: None,
            registered_at: now,
            updated_at: now,
            service_id: None,
            session_started_at: None,
        };
        assert_eq!(droplet.status_after_heartbeat(None), DropletStatus::Active);
        assert_eq!(
            droplet.status_after_heartbeat(Some(DropletStatus::Error)),
            DropletStatus::Error
        );
        droplet.manually_deactivated = true;
        assert_eq!(droplet.status_after_heartbeat(None), DropletStatus::Inactive);
    }
}
