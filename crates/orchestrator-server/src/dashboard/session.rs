//! Who is looking at the dashboard: a token, given once on the sign-in
//! page, kept in an HttpOnly, SameSite=Strict cookie that ends when the
//! token does, and verified again on every request, as the API verifies
//! its bearer tokens. Forms are checked against cross-site requests by
//! their `Sec-Fetch-Site` (or `Origin`) header.

use actix_web::cookie::{Cookie, SameSite, time::OffsetDateTime};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use orchestrator_app::AppError;
use orchestrator_domain::{Caller, Permission};

use crate::auth::verifier;
use crate::error::ApiError;

pub const COOKIE: &str = "orchestrator_session";
pub const PATH: &str = "/ui";

/// A signed-in viewer.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
}

impl Viewer {
    /// May change tasks (cancel, stop, retry).
    pub fn can_write(&self) -> bool {
        self.caller.can(Permission::Write)
    }

    pub fn is_admin(&self) -> bool {
        self.caller.is_admin()
    }
}

/// The viewer of `req`, or `None` without a valid session.
pub async fn viewer(req: &HttpRequest) -> Option<Viewer> {
    let token = req.cookie(COOKIE)?.value().to_owned();
    let caller = verifier(req).ok()?.verify(&token).await.ok()?;
    Some(Viewer { caller })
}

/// Checks a token typed on the sign-in page; the cookie that starts its session.
pub async fn sign_in(req: &HttpRequest, token: &str) -> Result<Cookie<'static>, ApiError> {
    let token = token.trim();
    verifier(req)?.verify(token).await?;
    let mut cookie = Cookie::build(COOKIE, token.to_owned())
        .path(PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .finish();
    if let Some(expires) = expires_at(token) {
        cookie.set_expires(expires);
    }
    Ok(cookie)
}

/// The cookie that ends a session.
pub fn sign_out() -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, "")
        .path(PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

/// When the (already verified) token expires.
fn expires_at(token: &str) -> Option<OffsetDateTime> {
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    OffsetDateTime::from_unix_timestamp(claims["exp"].as_i64()?).ok()
}

/// Refuses a form sent from another site. A browser's `Sec-Fetch-Site`
/// (which no page's script can set) must say `same-origin`; without one,
/// the `Origin` must be this server's.
pub fn same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let header_of = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let allowed = match (header_of("sec-fetch-site"), header_of(header::ORIGIN.as_str())) {
        (Some(site), _) => site == "same-origin",
        (None, Some(origin)) => {
            let info = req.connection_info();
            origin == format!("{}://{}", info.scheme(), info.host())
        }
        (None, None) => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::App(AppError::Forbidden(
            "cross-site form refused: the dashboard only takes forms from its own pages".into(),
        )))
    }
}

/// Where to go without a session.
pub fn to_sign_in() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui/login"))
        .finish()
}
