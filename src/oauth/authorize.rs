//! authorize: the browser side of the SMART App Launch (standalone launch).
//!
//! `GET /auth/authorize` (the app's request, checked) → `GET /auth/login/{provider}` (off to
//! the upstream OpenID Connect provider) → `GET /auth/callback/{provider}` (the person is
//! verified and linked to their Patient or Practitioner; an unknown person is refused with a
//! 403) → `GET /auth/consent/{id}` (the consent screen) → `POST /auth/consent/{id}` (approve:
//! back to the app with a single-use code; refuse: `access_denied`).
//!
//! Each step is bound to the browser that started it by a cookie (stored hashed), and the
//! consent form carries an anti-forgery value. Errors that cannot be trusted to the app
//! (unknown client, unregistered redirect URI) are shown in the browser, never redirected.

use super::endpoints::Endpoints;
use super::grants::{constant_eq, hash, random_token, CODE_SECONDS};
use super::pages;
use crate::auth::scopes::{ScopeContext, Scopes};
use crate::identity::{Identity, IdentityError, PersonKind};
use crate::repository::{AuthorizationRow, ClientRow, GrantRow, Repository};
use serde::Deserialize;

/// The cookie that binds an authorization in progress to one browser.
pub const COOKIE: &str = "carnet_authorize";
/// How long a person has to log in and decide.
const REQUEST_SECONDS: i64 = 600;

/// The query of `GET /auth/authorize`.
#[derive(Debug, Default, Deserialize)]
pub struct AuthorizeQuery {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub aud: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
}

/// The query the upstream provider sends the browser back with.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// The consent form.
#[derive(Debug, Default, Deserialize)]
pub struct ConsentForm {
    pub csrf: Option<String>,
    pub decision: Option<String>,
}

/// What the browser gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserAnswer {
    /// 303 See Other to this URL.
    Redirect(String),
    /// A page: status, title, message (for an OperationOutcome) and HTML.
    Page {
        status: u16,
        title: String,
        message: String,
        html: String,
    },
}

impl BrowserAnswer {
    fn error(status: u16, title: &str, message: &str) -> BrowserAnswer {
        BrowserAnswer::Page {
            status,
            title: title.into(),
            message: message.into(),
            html: pages::error(title, message),
        }
    }

    fn bad_request(message: &str) -> BrowserAnswer {
        BrowserAnswer::error(400, "Demande refusée", message)
    }

    fn server_error() -> BrowserAnswer {
        BrowserAnswer::error(
            500,
            "Erreur",
            "Carnet n'a pas pu traiter la demande. Réessayez plus tard.",
        )
    }
}

/// Back to the app's redirect URI with `params` (and `iss`, RFC 9207).
fn back_to_app(
    endpoints: &Endpoints,
    redirect_uri: &str,
    params: &[(&str, &str)],
) -> BrowserAnswer {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => {
            return BrowserAnswer::bad_request("L'adresse de retour de l'application est invalide.")
        }
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &endpoints.issuer);
    }
    BrowserAnswer::Redirect(url.to_string())
}

fn app_error(
    endpoints: &Endpoints,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> BrowserAnswer {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    back_to_app(endpoints, redirect_uri, &params)
}

fn registered_redirects(client: &ClientRow) -> Vec<String> {
    serde_json::from_str(&client.redirect_uris).unwrap_or_default()
}

/// The scopes an authorization may carry: what was asked, within the registration, never
/// `system/` (no user there) nor an EHR `launch`.
fn requested_scope(client: &ClientRow, asked: &str) -> Scopes {
    let registered = Scopes::parse(&client.scopes);
    let kept = registered.narrow(&Scopes::parse(asked));
    let text: Vec<&str> = kept
        .granted
        .iter()
        .map(String::as_str)
        .filter(|s| !s.starts_with("system/") && *s != "launch")
        .collect();
    Scopes::parse(&text.join(" "))
}

/// The scopes once the person is known: a professional gets no `patient/` scopes (Carnet
/// offers no patient picker in a standalone launch).
fn scope_for(subject: &str, scope: &str) -> Scopes {
    let scopes = Scopes::parse(scope);
    if subject.starts_with("Patient/") {
        return scopes;
    }
    let text: Vec<&str> = scopes
        .granted
        .iter()
        .map(String::as_str)
        .filter(|s| {
            *s != "launch/patient"
                && !Scopes::parse(s)
                    .resources
                    .first()
                    .is_some_and(|r| r.context == ScopeContext::Patient)
        })
        .collect();
    Scopes::parse(&text.join(" "))
}

/// `GET /auth/authorize`. Returns the answer and, when a request was recorded, the cookie
/// value to set.
pub fn start(
    repo: &Repository,
    endpoints: &Endpoints,
    identity: Option<&Identity>,
    q: &AuthorizeQuery,
) -> (BrowserAnswer, Option<String>) {
    let Some(client_id) = q.client_id.as_deref() else {
        return (BrowserAnswer::bad_request("client_id manque."), None);
    };
    let client = match repo.client(client_id) {
        Ok(Some(c)) if !c.suspended => c,
        Ok(_) => return (
            BrowserAnswer::bad_request(
                "Cette application n'est pas enregistrée auprès de Carnet, ou elle est suspendue.",
            ),
            None,
        ),
        Err(_) => return (BrowserAnswer::server_error(), None),
    };
    let Some(redirect_uri) = q
        .redirect_uri
        .as_deref()
        .filter(|r| registered_redirects(&client).iter().any(|x| x == r))
    else {
        return (
            BrowserAnswer::bad_request(
                "L'adresse de retour (redirect_uri) n'est pas enregistrée pour cette application.",
            ),
            None,
        );
    };
    let state = q.state.as_deref();
    let fail = |error: &str, description: &str| {
        (
            app_error(endpoints, redirect_uri, state, error, description),
            None,
        )
    };
    if q.response_type.as_deref() != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    let too_long = |v: &Option<String>, max: usize| v.as_deref().is_some_and(|v| v.len() > max);
    if too_long(&q.state, 512) || too_long(&q.nonce, 512) || too_long(&q.scope, 2048) {
        return fail(
            "invalid_request",
            "state and nonce are limited to 512 characters, scope to 2048",
        );
    }
    let challenge = q.code_challenge.as_deref().unwrap_or_default();
    if q.code_challenge_method.as_deref() != Some("S256")
        || challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail(
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        );
    }
    if q.aud.as_deref().map(|a| a.trim_end_matches('/')) != Some(endpoints.fhir_base.as_str()) {
        return fail("invalid_request", "aud must be this server's FHIR base URL");
    }
    let scopes = requested_scope(&client, q.scope.as_deref().unwrap_or_default());
    if scopes.resources.is_empty() {
        return fail(
            "invalid_scope",
            "none of the requested resource scopes is registered for this application",
        );
    }
    let Some(identity) = identity.filter(|i| i.providers().next().is_some()) else {
        return fail(
            "temporarily_unavailable",
            "no identity provider is configured",
        );
    };
    let cookie = random_token();
    let row = AuthorizationRow {
        id: random_token(),
        browser: hash(&cookie),
        csrf: random_token(),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: scopes.to_string(),
        state: q.state.clone(),
        nonce: q.nonce.clone(),
        code_challenge: challenge.to_string(),
        provider: None,
        upstream_state: None,
        upstream_nonce: None,
        upstream_verifier: None,
        subject: None,
        expires_us: crate::fhir::instant::now_us() + REQUEST_SECONDS * 1_000_000,
        regulation: false,
    };
    if repo.oauth_write(|s| s.insert_authorization(&row)).is_err() {
        return (BrowserAnswer::server_error(), None);
    }
    // A patient context needs a patient's login; otherwise every provider is offered.
    let wants_patient = scopes.has("launch/patient") || scopes.has_patient_scopes();
    let mut offered: Vec<_> = identity
        .providers()
        .filter(|p| !wants_patient || p.kind == PersonKind::Patient)
        .collect();
    if offered.is_empty() {
        offered = identity.providers().collect();
    }
    let login = |name: &str| format!("{}/auth/login/{name}?request={}", endpoints.origin, row.id);
    let answer = if offered.len() == 1 {
        BrowserAnswer::Redirect(login(&offered[0].name))
    } else {
        let links: Vec<(String, String)> = offered
            .iter()
            .map(|p| (p.label.clone(), login(&p.name)))
            .collect();
        BrowserAnswer::Page {
            status: 200,
            title: "Connexion".into(),
            message: String::new(),
            html: pages::choose_provider(&client.name, &links),
        }
    };
    (answer, Some(cookie))
}

/// The request `id`, if it exists and was started by this browser.
fn own_request(
    repo: &Repository,
    id: &str,
    cookie: Option<&str>,
) -> Result<AuthorizationRow, BrowserAnswer> {
    let row = repo
        .oauth_read(|s| s.authorization(id))
        .map_err(|_| BrowserAnswer::server_error())?
        .ok_or_else(|| BrowserAnswer::bad_request("Cette demande d'autorisation est inconnue ou a expiré. Recommencez depuis l'application."))?;
    same_browser(&row, cookie)?;
    Ok(row)
}

fn same_browser(row: &AuthorizationRow, cookie: Option<&str>) -> Result<(), BrowserAnswer> {
    let ok = cookie.is_some_and(|c| constant_eq(hash(c).as_bytes(), row.browser.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(BrowserAnswer::bad_request(
            "Cette demande d'autorisation a été commencée dans un autre navigateur.",
        ))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// `GET /auth/login/{provider}?request=ID`: off to the upstream provider.
pub async fn login(
    repo: Repository,
    identity: &Identity,
    provider: &str,
    request_id: String,
    cookie: Option<String>,
) -> BrowserAnswer {
    if identity.provider(provider).is_none() {
        return BrowserAnswer::error(
            404,
            "Introuvable",
            "Ce fournisseur d'identité n'est pas configuré.",
        );
    }
    let r = repo.clone();
    let row = match blocking(move || own_request(&r, &request_id, cookie.as_deref())).await {
        Some(Ok(row)) => row,
        Some(Err(answer)) => return answer,
        None => return BrowserAnswer::server_error(),
    };
    if row.subject.is_some() {
        return BrowserAnswer::bad_request("Vous êtes déjà identifié(e) pour cette demande.");
    }
    let start = match identity.begin(provider).await {
        Ok(s) => s,
        Err(e) => return identity_failure(&e),
    };
    let mut row = row;
    row.provider = Some(provider.to_string());
    row.upstream_state = Some(start.state);
    row.upstream_nonce = Some(start.nonce);
    row.upstream_verifier = Some(start.pkce_verifier);
    match blocking(move || repo.oauth_write(|s| s.update_authorization(&row))).await {
        Some(Ok(())) => BrowserAnswer::Redirect(start.url),
        _ => BrowserAnswer::server_error(),
    }
}

fn identity_failure(e: &IdentityError) -> BrowserAnswer {
    // The kind only at warn: the details can quote the provider's answer.
    tracing::warn!(failure = %e, "upstream login failed");
    tracing::debug!(error = ?e, "upstream login failure details");
    match e {
        IdentityError::UnknownProvider => BrowserAnswer::error(
            404,
            "Introuvable",
            "Ce fournisseur d'identité n'est pas configuré.",
        ),
        IdentityError::Unavailable(_) => BrowserAnswer::error(
            502,
            "Connexion impossible",
            "Le service d'identification ne répond pas. Réessayez plus tard.",
        ),
        IdentityError::Invalid(_) => BrowserAnswer::error(
            401,
            "Connexion refusée",
            "La réponse du service d'identification n'a pas pu être vérifiée.",
        ),
    }
}

/// `GET /auth/callback/{provider}`: the person comes back from the provider; they are
/// verified, then linked to their record, or refused (403) if Carnet does not know them.
pub async fn callback(
    repo: Repository,
    endpoints: &Endpoints,
    identity: &Identity,
    provider: &str,
    q: CallbackQuery,
    cookie: Option<String>,
) -> BrowserAnswer {
    let Some(state) = q.state.clone() else {
        return BrowserAnswer::bad_request(
            "La réponse du service d'identification est incomplète (state).",
        );
    };
    let r = repo.clone();
    let found = blocking(move || r.oauth_read(|s| s.authorization_by_upstream_state(&state))).await;
    let row = match found {
        Some(Ok(Some(row))) => row,
        Some(Ok(None)) => {
            return BrowserAnswer::bad_request("Cette connexion est inconnue, a déjà servi ou a expiré. Recommencez depuis l'application.")
        }
        _ => return BrowserAnswer::server_error(),
    };
    if let Err(answer) = same_browser(&row, cookie.as_deref()) {
        return answer;
    }
    if row.provider.as_deref() != Some(provider) {
        return BrowserAnswer::bad_request(
            "Cette connexion ne vient pas du service d'identification attendu.",
        );
    }
    // Whatever happens next, this upstream state is spent.
    let mut spent = row.clone();
    spent.upstream_state = None;
    let r = repo.clone();
    let s2 = spent.clone();
    if !matches!(
        blocking(move || r.oauth_write(|s| s.update_authorization(&s2))).await,
        Some(Ok(()))
    ) {
        return BrowserAnswer::server_error();
    }
    let forget = |repo: Repository, id: String| async move {
        let _ = blocking(move || repo.oauth_write(|s| s.delete_authorization(&id))).await;
    };
    if q.error.is_some() {
        forget(repo, row.id.clone()).await;
        return app_error(
            endpoints,
            &row.redirect_uri,
            row.state.as_deref(),
            "access_denied",
            "the person did not log in",
        );
    }
    let Some(code) = q.code.as_deref() else {
        return BrowserAnswer::bad_request(
            "La réponse du service d'identification est incomplète (code).",
        );
    };
    let person = match identity
        .finish(
            provider,
            code,
            row.upstream_verifier.as_deref().unwrap_or_default(),
            row.upstream_nonce.as_deref().unwrap_or_default(),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => {
            forget(repo, row.id.clone()).await;
            return identity_failure(&e);
        }
    };
    let resource_type = person.kind.resource_type();
    let unknown = || {
        BrowserAnswer::error(
            403,
            "Dossier introuvable",
            match person.kind {
                PersonKind::Patient => "Aucun dossier Carnet n'est associé à votre identité. Carnet ne crée pas de dossier à la connexion : votre dossier est ouvert par l'Assurance Maladie.",
                PersonKind::Practitioner => "Aucun professionnel de santé enregistré dans Carnet ne correspond à votre identité.",
            },
        )
    };
    let Some(value) = person.identifier.clone() else {
        forget(repo, row.id.clone()).await;
        return unknown();
    };
    let r = repo.clone();
    let system = person.identifier_system.clone();
    let ids = blocking(move || linked_records(&r, resource_type, &system, &value)).await;
    let id = match ids {
        Some(Ok(ids)) if ids.len() == 1 => ids[0].clone(),
        Some(Ok(ids)) => {
            forget(repo, row.id.clone()).await;
            if ids.is_empty() {
                return unknown();
            }
            return BrowserAnswer::error(403, "Identité ambiguë", "Plusieurs dossiers correspondent à votre identité : contactez le support de Carnet.");
        }
        _ => return BrowserAnswer::server_error(),
    };
    let subject = format!("{resource_type}/{id}");
    if scope_for(&subject, &spent.scope).resources.is_empty() {
        forget(repo, row.id.clone()).await;
        return app_error(
            endpoints,
            &row.redirect_uri,
            row.state.as_deref(),
            "invalid_scope",
            "the requested scopes need a patient's login",
        );
    }
    let mut logged_in = spent;
    logged_in.regulation = person.regulation && subject.starts_with("Practitioner/");
    logged_in.subject = Some(subject);
    let target = format!("{}/auth/consent/{}", endpoints.origin, logged_in.id);
    match blocking(move || repo.oauth_write(|s| s.update_authorization(&logged_in))).await {
        Some(Ok(())) => BrowserAnswer::Redirect(target),
        _ => BrowserAnswer::server_error(),
    }
}

/// `GET /auth/consent/{id}`: the consent screen.
pub fn consent_page(
    repo: &Repository,
    endpoints: &Endpoints,
    id: &str,
    cookie: Option<&str>,
) -> BrowserAnswer {
    let row = match own_request(repo, id, cookie) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let Some(subject) = row.subject.as_deref() else {
        return BrowserAnswer::bad_request("Identifiez-vous d'abord.");
    };
    let client_name = repo
        .client(&row.client_id)
        .ok()
        .flatten()
        .map(|c| c.name)
        .unwrap_or_else(|| row.client_id.clone());
    let scopes = scope_for(subject, &row.scope);
    BrowserAnswer::Page {
        status: 200,
        title: "Autoriser l'application".into(),
        message: String::new(),
        html: pages::consent(
            &client_name,
            subject,
            &pages::describe(&scopes),
            &format!("{}/auth/consent/{}", endpoints.origin, row.id),
            &row.csrf,
        ),
    }
}

/// `POST /auth/consent/{id}`: the person's decision, taken once.
pub fn decide(
    repo: &Repository,
    endpoints: &Endpoints,
    id: &str,
    form: &ConsentForm,
    cookie: Option<&str>,
) -> BrowserAnswer {
    let row = match own_request(repo, id, cookie) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| constant_eq(c.as_bytes(), row.csrf.as_bytes()));
    if !csrf_ok {
        return BrowserAnswer::bad_request(
            "Le formulaire n'est pas valide. Recommencez depuis l'application.",
        );
    }
    let Some(subject) = row.subject.clone() else {
        return BrowserAnswer::bad_request("Identifiez-vous d'abord.");
    };
    let state = row.state.as_deref();
    let approve = match form.decision.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => return BrowserAnswer::bad_request("Choisissez Autoriser ou Refuser."),
    };
    let scopes = scope_for(&subject, &row.scope);
    let code = random_token();
    let decided = repo.oauth_write(|store| {
        // One decision per request: a second submission finds nothing.
        if !store.delete_authorization(&row.id)? {
            return Ok(false);
        }
        if approve && !scopes.resources.is_empty() {
            let now = store.now_us();
            store.insert_grant(&GrantRow {
                id: uuid::Uuid::now_v7().to_string(),
                client_id: row.client_id.clone(),
                subject: subject.clone(),
                patient: subject.strip_prefix("Patient/").map(str::to_string),
                scope: scopes.to_string(),
                nonce: row.nonce.clone(),
                redirect_uri: row.redirect_uri.clone(),
                code_hash: Some(hash(&code)),
                code_challenge: Some(row.code_challenge.clone()),
                code_expires_us: now + CODE_SECONDS * 1_000_000,
                code_used: false,
                revoked: false,
                created_us: now,
                expires_us: now
                    + (CODE_SECONDS + super::protocol::ACCESS_TOKEN_SECONDS) * 1_000_000,
                regulation: row.regulation,
            })?;
        }
        Ok(true)
    });
    match decided {
        Ok(true) if !approve => app_error(
            endpoints,
            &row.redirect_uri,
            state,
            "access_denied",
            "the person refused",
        ),
        Ok(true) if scopes.resources.is_empty() => app_error(
            endpoints,
            &row.redirect_uri,
            state,
            "invalid_scope",
            "the requested scopes need a patient's login",
        ),
        Ok(true) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = state {
                params.push(("state", s));
            }
            back_to_app(endpoints, &row.redirect_uri, &params)
        }
        Ok(false) => BrowserAnswer::bad_request("Cette demande a déjà reçu une réponse."),
        Err(_) => BrowserAnswer::server_error(),
    }
}

/// The live Patients (or Practitioners) that carry the identifier `system|value` a provider
/// vouched for (at most two: one links the login, two are ambiguous). Looked up as a search
/// under Carnet's login-linking service context, so the access point decides it and the
/// trail records it like any backend service's access.
fn linked_records(
    repo: &Repository,
    resource_type: &'static str,
    system: &str,
    value: &str,
) -> Result<Vec<String>, crate::error::FhirError> {
    use crate::auth::{RequestContext, Service};
    let query = format!(
        "identifier={}|{}",
        escape_value(system),
        escape_value(value)
    );
    let search = crate::fhir::search_query::parse(resource_type, &query, 2, 2, "", true)?;
    let ctx = RequestContext::service(Service::LoginLinking, &uuid::Uuid::new_v4().to_string());
    let page = repo.search(&ctx, &search)?;
    Ok(page.entries.iter().map(|v| v.id.clone()).collect())
}

/// A search value with FHIR's escapes, percent-encoded for a query string.
fn escape_value(v: &str) -> String {
    let escaped: String = v
        .chars()
        .flat_map(|c| match c {
            '\\' | ',' | '|' | '$' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    percent_encoding::utf8_percent_encode(&escaped, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The professional an establishment names by their national identifier (`IDNPS`), if the
/// directory lists them at the establishment's Organization `organization` (an active
/// PractitionerRole of that organization, in its period): their Practitioner id and name.
/// Looked up under Carnet's own directory service context, decided and traced like any
/// backend service's access.
pub fn professional_at(
    repo: &Repository,
    organization: &str,
    identifier: &str,
    now_us: i64,
) -> Result<Option<(String, Option<String>)>, crate::error::FhirError> {
    use crate::auth::{RequestContext, Service};
    let ctx = RequestContext::service(
        Service::EstablishmentDirectory,
        &uuid::Uuid::new_v4().to_string(),
    );
    let query = format!(
        "identifier={}|{}",
        escape_value(crate::consent::IDNPS),
        escape_value(identifier)
    );
    let search = crate::fhir::search_query::parse("Practitioner", &query, 2, 2, "", true)?;
    let page = repo.search(&ctx, &search)?;
    let [practitioner] = page.entries.as_slice() else {
        return Ok(None);
    };
    let value: serde_json::Value = practitioner.json()?;
    if value.get("active").and_then(serde_json::Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let query = format!(
        "practitioner=Practitioner/{}&organization=Organization/{}",
        practitioner.id, organization
    );
    let search = crate::fhir::search_query::parse("PractitionerRole", &query, 50, 50, "", true)?;
    let roles = repo.search(&ctx, &search)?;
    let listed = roles.entries.iter().any(|r| {
        let Ok(role) = r.json() else { return false };
        let active = role.get("active").and_then(serde_json::Value::as_bool) != Some(false);
        let at = |key: &str| {
            role.pointer(&format!("/period/{key}"))
                .and_then(serde_json::Value::as_str)
                .and_then(crate::fhir::instant::parse_us)
        };
        active && at("start").is_none_or(|s| s <= now_us) && at("end").is_none_or(|e| now_us <= e)
    });
    if !listed {
        return Ok(None);
    }
    Ok(Some((practitioner.id.clone(), person_name(&value))))
}

/// A person's name for people: `name[0].text`, or its given names and family.
fn person_name(v: &serde_json::Value) -> Option<String> {
    let name = v.pointer("/name/0")?;
    if let Some(text) = name.get("text").and_then(serde_json::Value::as_str) {
        return Some(text.to_string());
    }
    let mut parts: Vec<&str> = name
        .get("given")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if let Some(f) = name.get("family").and_then(serde_json::Value::as_str) {
        parts.push(f);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}
