//! `POST /token`: signs a token (API.md, "Identity and tokens"). It needs an
//! `admin` token, except in `development`, where it is open; a token never
//! carries more permissions than its issuer holds.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, http::header, middleware::from_fn, web};
use futures_util::future::LocalBoxFuture;
use orchestrator_api::tokens::{Token, TokenBody};
use orchestrator_app::AppError;

use crate::auth::{Authenticated, JwtKeys, MAX_SUBJECT_CHARS, TokenRequest, authenticate};
use crate::envelope::{Body, Udc, envelope_errors};
use crate::error::ApiError;
use crate::routes::{documented, resource};
use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("", "/token")
            .post(documented!(issue))
            .build()
            .wrap(from_fn(envelope_errors)),
    );
}

/// Who asks for a token, checked before the body is read (as every other
/// endpoint checks its caller first): `None` in development without an
/// `Authorization` header, where the endpoint is open.
pub(crate) struct Issuer(Option<Authenticated>);

impl FromRequest for Issuer {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let open = req
                .app_data::<web::Data<AppState>>()
                .is_some_and(|app| app.settings.is_development())
                && !req.headers().contains_key(header::AUTHORIZATION);
            if open {
                return Ok(Issuer(None));
            }
            Ok(Issuer(Some(authenticate(&req).await?)))
        })
    }
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::App(orchestrator_domain::ValidationError::new(field, message).into())
}

/// The subject a token for `body` is signed for.
fn subject(body: &TokenBody) -> Result<String, ApiError> {
    let subject = match (&body.subject, body.droplet_id) {
        (Some(subject), _) => subject.trim().to_owned(),
        (None, Some(id)) if id > 0 => format!("droplet-{id}"),
        (None, Some(_)) => return Err(invalid("droplet_id", "must be a positive integer")),
        (None, None) => return Err(invalid("subject", "give droplet_id or subject")),
    };
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS || subject.contains('\0') {
        return Err(invalid("subject", "must be 1 to 100 characters"));
    }
    Ok(subject)
}

/// Signs a token: admin only, except in `development` where it is open.
#[utoipa::path(
    post,
    path = "/token",
    tag = "tokens",
    request_body = TokenBody,
    responses((status = 200, description = "The token", body = Token)),
)]
pub(crate) async fn issue(
    Issuer(issuer): Issuer,
    app: web::Data<AppState>,
    keys: web::Data<JwtKeys>,
    Body(body): Body<TokenBody>,
) -> Result<Udc<Token>, ApiError> {
    if let Some(Authenticated(issuer)) = issuer {
        if !issuer.is_admin() {
            return Err(ApiError::App(AppError::Forbidden(
                "issuing tokens needs the 'admin' permission".into(),
            )));
        }
        if let Some(excess) = body.permissions.iter().find(|p| !issuer.can(**p)) {
            return Err(ApiError::App(AppError::Forbidden(format!(
                "a token may not carry '{excess}', which its issuer does not hold"
            ))));
        }
    }
    if body.permissions.is_empty() {
        return Err(invalid("permissions", "name at least one of read, write, admin"));
    }
    let ttl = app.settings.auth.jwt_expiration;
    let token = keys
        .issue(&TokenRequest {
            subject: subject(&body)?,
            permissions: body.permissions.clone(),
            droplet_id: body.droplet_id,
            steward: body.steward.clone(),
            ttl,
        })
        .map_err(|e| ApiError::Internal(format!("could not sign a token: {e}")))?;
    Ok(Udc::ok(Token {
        access_token: token,
        token_type: "bearer".into(),
        expires_in: ttl.as_secs(),
    }))
}
