//! Tokens (API.md, "Identity and tokens"): HS256 ones signed with
//! `JWT_SECRET_KEY`, RS256 ones signed by the Registry when `REGISTRY_URL`
//! is set, and the extractor that turns a bearer token into a [`Caller`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use orchestrator_app::{RegistrySync, ServiceDirectory};
use orchestrator_domain::{Caller, DropletId, Permission, Permissions, ServiceRef};
use orchestrator_ports::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest token subject: it is stored in 100-character columns.
pub const MAX_SUBJECT_CHARS: usize = 100;

/// The claims of an orchestrator token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub permissions: Vec<Permission>,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub droplet_id: Option<DropletId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward: Option<String>,
}

/// What a new token should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub subject: String,
    pub permissions: Vec<Permission>,
    pub droplet_id: Option<DropletId>,
    pub steward: Option<String>,
    pub ttl: Duration,
}

/// Signs and verifies tokens with the configured secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(HS256, secret hidden)")
    }
}

impl JwtKeys {
    pub fn hs256(secret: &[u8]) -> Self {
        // Only one crypto backend is built in; installing it is idempotent.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(&self, request: &TokenRequest) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: request.subject.clone(),
            permissions: request.permissions.clone(),
            iat: now,
            exp: now.saturating_add(i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX)),
            droplet_id: request.droplet_id,
            steward: request.steward.clone(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Checks signature, algorithm and expiry; anything else wrong is 401.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(invalid)?;
        caller_from(data.claims)
    }
}

fn invalid(err: jsonwebtoken::errors::Error) -> ApiError {
    ApiError::Unauthorized(format!("invalid token: {}", describe(&err)))
}

fn caller_from(claims: Claims) -> Result<Caller, ApiError> {
    let sub = &claims.sub;
    // The subject is recorded as `created_by` and `changed_by` (100 characters).
    if sub.trim().is_empty() || sub.chars().count() > MAX_SUBJECT_CHARS || sub.contains('\0') {
        return Err(ApiError::Unauthorized(format!(
            "invalid token: its subject must be 1 to {MAX_SUBJECT_CHARS} characters"
        )));
    }
    Ok(Caller {
        subject: claims.sub,
        permissions: Permissions::new(claims.permissions),
        droplet_id: claims.droplet_id,
    })
}

/// The claims of a token the Registry signed, as the Registry writes them:
/// it names a service (`service_id`, `service_name` or `sub`) and needs no
/// `permissions`.
#[derive(Debug, Clone, Deserialize)]
struct RegistryClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<Permission>>,
    #[serde(default)]
    droplet_id: Option<DropletId>,
    #[serde(default, deserialize_with = "orchestrator_domain::droplet::id_or_digits")]
    service_id: Option<i64>,
    #[serde(default)]
    service_name: Option<String>,
}

impl RegistryClaims {
    /// Who the token says it is, as `created_by` and `changed_by` record it.
    fn subject(&self) -> Option<String> {
        let named = |s: &Option<String>| s.as_ref().filter(|s| !s.trim().is_empty()).cloned();
        named(&self.sub)
            .or_else(|| named(&self.service_name))
            .or_else(|| self.service_id.map(|id| format!("service-{id}")))
    }

    /// The ways the token names its service, most precise first.
    fn services(&self) -> Vec<ServiceRef> {
        let mut names: Vec<ServiceRef> = self.service_id.map(ServiceRef::Id).into_iter().collect();
        names.extend(self.service_name.clone().map(ServiceRef::Name));
        if let Some(sub) = &self.sub {
            names.push(match sub.trim().parse() {
                Ok(id) => ServiceRef::Id(id),
                Err(_) => ServiceRef::Name(sub.clone()),
            });
        }
        names
    }
}

/// What a Registry token without `permissions` may do: what a droplet does
/// for itself, never `admin`.
const REGISTRY_DEFAULT_PERMISSIONS: [Permission; 2] = [Permission::Read, Permission::Write];

/// Verifies bearer tokens: HS256 ones with the orchestrator's secret and,
/// when the Registry is configured, RS256 ones with the Registry's key. The
/// key is cached; a token naming another `kid`, or one whose signature does
/// not match, makes it be fetched again (at most once a minute), so that a
/// rotated key is picked up and a forged token is not.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: JwtKeys,
    registry: Option<Arc<RegistrySync>>,
    directory: Arc<ServiceDirectory>,
    /// `REGISTRY_AUDIENCE`: when set, a Registry token must name it in `aud`.
    audience: Option<String>,
}

impl TokenVerifier {
    pub fn new(keys: JwtKeys, registry: Option<Arc<RegistrySync>>, directory: Arc<ServiceDirectory>) -> Self {
        TokenVerifier {
            keys,
            registry,
            directory,
            audience: None,
        }
    }

    /// Accepts only the Registry tokens issued for `audience` (their `aud`),
    /// so that a token the Registry issued for another service is refused.
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let header = decode_header(token).map_err(invalid)?;
        if header.alg != Algorithm::RS256 {
            return self.keys.verify(token);
        }
        let Some(registry) = &self.registry else {
            return Err(ApiError::Unauthorized(
                "invalid token: RS256 tokens are accepted only from the Registry, and REGISTRY_URL is not set"
                    .into(),
            ));
        };
        let mut key = registry.signing_key(false).await;
        let other_kid = |k: &SigningKey| header.kid.is_some() && k.kid.is_some() && k.kid != header.kid;
        if key.as_ref().is_none_or(other_kid) {
            key = registry.signing_key(true).await;
        }
        let key = key.ok_or_else(|| {
            ApiError::Unauthorized("invalid token: the Registry's signing key is not available yet".into())
        })?;
        let audience = self.audience.as_deref();
        let claims = match verify_rs256(token, &key, audience) {
            Err(err) if is_bad_signature(&err) => match registry.signing_key(true).await {
                Some(fresh) if fresh != key => verify_rs256(token, &fresh, audience).map_err(invalid),
                _ => Err(invalid(err)),
            },
            other => other.map_err(invalid),
        }?;
        self.registry_caller(claims).await
    }

    /// The caller a Registry token names: the droplet it is (its
    /// `droplet_id` claim, else its service found in the directory) with its
    /// `permissions`, or `read` and `write` when it carries none. A service
    /// that is no droplet may still read and submit work.
    async fn registry_caller(&self, claims: RegistryClaims) -> Result<Caller, ApiError> {
        let subject = claims.subject().ok_or_else(|| {
            ApiError::Unauthorized(
                "invalid token: it names no service (sub, service_id or service_name)".into(),
            )
        })?;
        let droplet_id = match claims.droplet_id {
            Some(id) => Some(id),
            None => self.directory.droplet_of(&claims.services()).await?,
        };
        let permissions = claims
            .permissions
            .unwrap_or_else(|| REGISTRY_DEFAULT_PERMISSIONS.to_vec());
        caller_from(Claims {
            sub: subject,
            permissions,
            exp: 0,
            iat: 0,
            droplet_id,
            steward: None,
        })
    }
}

fn is_bad_signature(err: &jsonwebtoken::errors::Error) -> bool {
    matches!(err.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature)
}

fn verify_rs256(
    token: &str,
    key: &SigningKey,
    audience: Option<&str>,
) -> Result<RegistryClaims, jsonwebtoken::errors::Error> {
    let decoding = DecodingKey::from_rsa_pem(key.public_key_pem.as_bytes())?;
    let mut validation = Validation::new(Algorithm::RS256);
    // The Registry may name its service by `service_id` or `service_name`
    // alone; `registry_caller` requires one of the three.
    match audience {
        // Only tokens issued for this orchestrator.
        Some(audience) => {
            validation.set_required_spec_claims(&["exp", "aud"]);
            validation.set_audience(&[audience]);
        }
        // A mesh whose Registry names no audience: any of its tokens.
        None => {
            validation.set_required_spec_claims(&["exp"]);
            validation.validate_aud = false;
        }
    }
    validation.leeway = 5;
    Ok(decode::<RegistryClaims>(token, &decoding, &validation)?.claims)
}

fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "it has expired",
        ErrorKind::InvalidSignature => "its signature does not match",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "its algorithm is not HS256 (or RS256 from the Registry)"
        }
        ErrorKind::InvalidSubject => "its subject must be 1 to 100 characters",
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => "the Registry's key cannot be read",
        ErrorKind::InvalidAudience => "it was issued for another service (its aud is not REGISTRY_AUDIENCE)",
        ErrorKind::MissingRequiredClaim(_) => {
            "a required claim (sub, exp, or aud when REGISTRY_AUDIENCE is set) is missing"
        }
        ErrorKind::Json(_) => "its claims are not valid (sub, permissions, exp, iat expected)",
        _ => "it is not a well-formed JWT",
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

/// The subject of the authenticated caller, kept on the request for the envelope.
#[derive(Debug, Clone)]
pub struct CallerSubject(pub String);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

/// The caller named by the request's `Authorization` header. It is
/// verified once per request: the rate limiter and the handler share it.
pub async fn authenticate(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    if let Some(known) = req.extensions().get::<Authenticated>() {
        return Ok(known.clone());
    }
    let token = bearer_token(req)?.to_owned();
    let caller = verifier(req)?.verify(&token).await?;
    let mut extensions = req.extensions_mut();
    extensions.insert(CallerSubject(caller.subject.clone()));
    extensions.insert(Authenticated(caller.clone()));
    Ok(Authenticated(caller))
}

/// The server's token verifier.
pub fn verifier(req: &HttpRequest) -> Result<web::Data<TokenVerifier>, ApiError> {
    req.app_data::<web::Data<TokenVerifier>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("token keys are not configured".into()))
}

fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("missing token: send 'Authorization: Bearer <token>'".into())
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'".into(),
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(subject: &str, ttl: u64) -> TokenRequest {
        TokenRequest {
            subject: subject.into(),
            permissions: vec![Permission::Write],
            droplet_id: Some(8),
            steward: None,
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn issued_tokens_verify_with_the_same_secret_only() {
        let keys = JwtKeys::hs256(b"a-secret-that-is-long-enough-1234");
        let token = keys.issue(&request("droplet-8", 60)).expect("sign");
        let caller = keys.verify(&token).expect("valid");
        assert_eq!(
            (caller.subject.as_str(), caller.droplet_id),
            ("droplet-8", Some(8))
        );
        assert!(caller.can(Permission::Read));
        let other = JwtKeys::hs256(b"another-secret-that-is-long-enough");
        assert!(matches!(other.verify(&token), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let keys = JwtKeys::hs256(b"a-secret-that-is-long-enough-1234");
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let claims = "eyJzdWIiOiJ4IiwicGVybWlzc2lvbnMiOlsiYWRtaW4iXSwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjB9";
        let forged = format!("{header}.{claims}.");
        assert!(matches!(keys.verify(&forged), Err(ApiError::Unauthorized(_))));
    }
}
