//! `POST /token`: the request to sign a token and the token signed.

use orchestrator_domain::{DropletId, Permission};
use serde::{Deserialize, Serialize};

/// The body of `POST /token`: the spec's request, plus an optional
/// `subject` for callers that are not droplets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The droplet the token is for; its subject is `droplet-{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub droplet_id: Option<DropletId>,
    /// A subject for callers that are not droplets (1 to 100 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steward: Option<String>,
    /// At least one; never more than the issuer holds.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub permissions: Vec<Permission>,
}

/// The answer to `POST /token`: a signed token.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Token {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until it expires (`JWT_EXPIRATION_SECONDS`).
    pub expires_in: u64,
}
