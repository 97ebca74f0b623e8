//! The authorization server's HTTP endpoints (thin: the logic is in `crate::oauth`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::state::AppState;
use crate::auth::Authenticator;
use crate::oauth::authorize::{self, BrowserAnswer};
use crate::oauth::{self, OAuthError, TokenForm};

/// `POST /auth/token` (application/x-www-form-urlencoded).
pub async fn token(
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
    body: web::Bytes,
) -> HttpResponse {
    form_endpoint(body, move |form| {
        oauth::token(&state.repo, &auth.tokens, &state.endpoints, &form)
    })
    .await
}

/// Runs a form-posted OAuth endpoint on the blocking pool; answers JSON, `no-store`, with
/// the OAuth error format on failure.
async fn form_endpoint(
    body: web::Bytes,
    f: impl FnOnce(TokenForm) -> Result<serde_json::Value, OAuthError> + Send + 'static,
) -> HttpResponse {
    let answer = match serde_urlencoded::from_bytes::<TokenForm>(&body) {
        _ if has_control(&body) => Err(OAuthError::new(
            "invalid_request",
            "the form holds a control character (NUL, line break…)",
        )),
        Err(_) => Err(OAuthError::new(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        )),
        Ok(form) => web::block(move || f(form))
            .await
            .unwrap_or_else(|e| Err(oauth::server_error(e))),
    };
    let (status, body) = match answer {
        Ok(v) => (200, v),
        Err(e) => (e.status(), e.body()),
    };
    let mut res =
        HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST));
    res.insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"));
    if status == 401 {
        res.insert_header(("WWW-Authenticate", r#"Bearer realm="carnet""#));
    }
    res.json(body)
}

/// `GET /auth/jwks`: the public key Carnet's access tokens are signed with.
pub async fn jwks(auth: web::Data<Authenticator>) -> HttpResponse {
    HttpResponse::Ok().json(auth.tokens.jwks())
}

/// `GET [base]/.well-known/smart-configuration`.
pub async fn smart_configuration(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(oauth::smart_configuration(&state.endpoints))
}

/// `GET /auth/.well-known/openid-configuration`.
pub async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(oauth::openid_configuration(&state.endpoints))
}

/// The configured upstream identity providers (none when no identity file is given).
pub struct Upstreams(pub Option<crate::identity::Identity>);

fn cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(authorize::COOKIE).map(|c| c.value().to_string())
}

/// A page, or an OperationOutcome for a client that asks for FHIR JSON rather than HTML.
fn browser(
    req: &HttpRequest,
    answer: BrowserAnswer,
    set_cookie: Option<(String, bool)>,
) -> HttpResponse {
    let mut res = match &answer {
        BrowserAnswer::Redirect(to) => {
            let mut r = HttpResponse::SeeOther();
            r.insert_header(("Location", to.as_str()));
            r
        }
        BrowserAnswer::Page { status, .. } => {
            HttpResponse::build(StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST))
        }
    };
    res.insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .insert_header(("Referrer-Policy", "no-referrer"));
    if let Some((value, secure)) = set_cookie {
        let c = actix_web::cookie::Cookie::build(authorize::COOKIE, value)
            .path("/auth")
            .http_only(true)
            .secure(secure)
            .same_site(actix_web::cookie::SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::minutes(10))
            .finish();
        res.cookie(c);
    }
    match answer {
        BrowserAnswer::Redirect(_) => res.finish(),
        BrowserAnswer::Page {
            status,
            message,
            html,
            ..
        } => {
            let accept = req
                .headers()
                .get("Accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if status >= 400 && accept.contains("json") && !accept.contains("html") {
                let code = match status {
                    403 => "forbidden",
                    401 => "security",
                    404 => "not-found",
                    s if s >= 500 => "exception",
                    _ => "invalid",
                };
                res.content_type("application/fhir+json").body(
                    serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                        {"severity": "error", "code": code, "diagnostics": message}]})
                    .to_string(),
                )
            } else {
                res.content_type("text/html; charset=utf-8").body(html)
            }
        }
    }
}

fn secure(state: &AppState) -> bool {
    state.endpoints.origin.starts_with("https://")
}

/// Whether a form body or query string holds, once percent-decoded, a control character
/// (NUL included) or bytes that are not UTF-8: such input never reaches the database.
pub fn has_control(encoded: &[u8]) -> bool {
    let plus: Vec<u8> = encoded
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let decoded: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
    match std::str::from_utf8(&decoded) {
        Ok(text) => text
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\n' && c != '\r'),
        Err(_) => true,
    }
}

/// Refuses, with a page in French, a request to the OAuth pages whose path or query holds
/// a control character or bytes that are not UTF-8 (before any handler looks them up).
pub fn refuse_unreadable(req: &actix_web::dev::ServiceRequest) -> Option<HttpResponse> {
    let path = req.uri().path().as_bytes();
    let query = req.uri().query().unwrap_or("").as_bytes();
    if has_control(path) || has_control(query) {
        Some(page_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Demande invalide",
            "Le lien suivi contient des caractères illisibles. Revenez à l'application et recommencez la connexion.",
        ))
    } else {
        None
    }
}

/// An error page in French for a person in a browser (the OAuth pages never answer a
/// browser with plain text or an empty body).
fn page_error(status: actix_web::http::StatusCode, title: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(crate::oauth::pages::error(title, message))
}

fn no_identity_provider() -> HttpResponse {
    page_error(
        actix_web::http::StatusCode::NOT_FOUND,
        "Connexion indisponible",
        "Aucun fournisseur d'identité n'est configuré sur ce serveur : la connexion par \
         navigateur n'y est pas proposée.",
    )
}

fn internal_page() -> HttpResponse {
    page_error(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "Erreur du serveur",
        "Une erreur inattendue est survenue. Réessayez dans quelques instants.",
    )
}

/// The answer to a query string the OAuth pages cannot read (a missing or malformed
/// parameter): a page for the person, never the extractor's plain text.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    tracing::debug!(error = %err, "unreadable query on an OAuth page");
    actix_web::error::InternalError::from_response(
        err,
        page_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Demande invalide",
            "Le lien suivi est incomplet ou abîmé. Revenez à l'application et recommencez la connexion.",
        ),
    )
    .into()
}

/// `GET /auth/authorize`.
pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    upstreams: web::Data<Upstreams>,
    query: web::Query<authorize::AuthorizeQuery>,
) -> HttpResponse {
    let (state2, upstreams2) = (state.clone(), upstreams.clone());
    let answer = web::block(move || {
        authorize::start(
            &state2.repo,
            &state2.endpoints,
            upstreams2.0.as_ref(),
            &query,
        )
    })
    .await;
    match answer {
        Ok((answer, cookie)) => browser(&req, answer, cookie.map(|c| (c, secure(&state)))),
        Err(_) => internal_page(),
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    request: String,
}

/// `GET /auth/login/{provider}?request=ID`.
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    upstreams: web::Data<Upstreams>,
    provider: web::Path<String>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    let Some(identity) = upstreams.0.as_ref() else {
        return no_identity_provider();
    };
    let answer = authorize::login(
        state.repo.clone(),
        identity,
        &provider,
        query.into_inner().request,
        cookie(&req),
    )
    .await;
    browser(&req, answer, None)
}

/// `GET /auth/callback/{provider}`.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    upstreams: web::Data<Upstreams>,
    provider: web::Path<String>,
    query: web::Query<authorize::CallbackQuery>,
) -> HttpResponse {
    let Some(identity) = upstreams.0.as_ref() else {
        return no_identity_provider();
    };
    let answer = authorize::callback(
        state.repo.clone(),
        &state.endpoints,
        identity,
        &provider,
        query.into_inner(),
        cookie(&req),
    )
    .await;
    browser(&req, answer, None)
}

/// `GET /auth/consent/{id}`.
pub async fn consent_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let c = cookie(&req);
    let answer = web::block(move || {
        authorize::consent_page(&state.repo, &state.endpoints, &id, c.as_deref())
    })
    .await;
    match answer {
        Ok(a) => browser(&req, a, None),
        Err(_) => internal_page(),
    }
}

/// `POST /auth/consent/{id}` (application/x-www-form-urlencoded).
pub async fn consent_decision(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if has_control(&body) {
        return page_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Demande invalide",
            "Le formulaire envoyé contient des caractères illisibles.",
        );
    }
    let form: authorize::ConsentForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let c = cookie(&req);
    let answer = web::block(move || {
        authorize::decide(&state.repo, &state.endpoints, &id, &form, c.as_deref())
    })
    .await;
    match answer {
        Ok(a) => browser(&req, a, None),
        Err(_) => internal_page(),
    }
}

/// `POST /auth/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
    body: web::Bytes,
) -> HttpResponse {
    form_endpoint(body, move |form| {
        let client = oauth::authenticate(&state.repo, &state.endpoints, &form)?;
        oauth::grants::revoke(&state.repo, &auth.tokens, &client, &form)?;
        Ok(serde_json::json!({}))
    })
    .await
}

/// `POST /auth/introspect` (RFC 7662), for the client the token was issued to.
pub async fn introspect(
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
    body: web::Bytes,
) -> HttpResponse {
    form_endpoint(body, move |form| {
        let client = oauth::authenticate(&state.repo, &state.endpoints, &form)?;
        oauth::grants::introspect(&state.repo, &auth.tokens, &state.endpoints, &client, &form)
    })
    .await
}

/// `GET /auth/apps`: the apps the patient connected (name, scopes, since when), for the
/// patient's own portal, with the patient's token.
pub async fn apps(ctx: crate::auth::RequestContext, state: web::Data<AppState>) -> HttpResponse {
    let repo = state.repo.clone();
    match web::block(move || oauth::grants::connected_apps(&repo, &ctx)).await {
        Ok(Ok(apps)) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(apps),
        Ok(Err(e)) => fhir_error(&e),
        Err(_) => fhir_error(&crate::error::FhirError::Internal("blocking pool".into())),
    }
}

/// `DELETE /auth/apps/{client_id}`: revokes an app the patient connected, at once.
pub async fn revoke_app(
    ctx: crate::auth::RequestContext,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let client_id = path.into_inner();
    let repo = state.repo.clone();
    match web::block(move || oauth::grants::revoke_app(&repo, &ctx, &client_id)).await {
        Ok(Ok(true)) => HttpResponse::NoContent().finish(),
        Ok(Ok(false)) => fhir_error(&crate::error::FhirError::NotFound(
            "no app connected by this patient has this client id".into(),
        )),
        Ok(Err(e)) => fhir_error(&e),
        Err(_) => fhir_error(&crate::error::FhirError::Internal("blocking pool".into())),
    }
}

fn fhir_error(e: &crate::error::FhirError) -> HttpResponse {
    super::response::error_response(crate::fhir::format::Negotiated::default(), e)
}
