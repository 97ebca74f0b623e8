//! The authorization server's HTTP endpoints (thin: the logic is in `crate::oauth`).

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::auth::Authenticator;
use crate::oauth::{self, OAuthError, TokenForm};

/// `POST /auth/token` (application/x-www-form-urlencoded).
pub async fn token(
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
    body: web::Bytes,
) -> HttpResponse {
    let answer = match serde_urlencoded::from_bytes::<TokenForm>(&body) {
        Err(_) => Err(OAuthError {
            code: "invalid_request",
            description: "the body must be application/x-www-form-urlencoded".into(),
        }),
        Ok(form) => {
            web::block(move || oauth::token(&state.repo, &auth.tokens, &auth.endpoints, &form))
                .await
                .unwrap_or_else(|e| {
                    Err(OAuthError {
                        code: "server_error",
                        description: e.to_string(),
                    })
                })
        }
    };
    let (status, body) = match answer {
        Ok(v) => (200, v),
        Err(e) => (e.status(), e.body()),
    };
    let mut res = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    );
    res.insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"));
    if status == 401 {
        res.insert_header(("WWW-Authenticate", r#"Bearer realm="carnet""#));
    }
    res.json(body)
}

/// `GET /auth/jwks`: the public key Carnet's access tokens are signed with.
pub async fn jwks(auth: web::Data<Authenticator>) -> HttpResponse {
    HttpResponse::Ok().json(auth.tokens.key().jwks())
}

/// `GET [base]/.well-known/smart-configuration`.
pub async fn smart_configuration(auth: web::Data<Authenticator>) -> HttpResponse {
    HttpResponse::Ok().json(oauth::smart_configuration(&auth.endpoints))
}
