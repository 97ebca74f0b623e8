//! grants: what comes out of the token endpoint once a client is authenticated — code
//! exchange (single use, PKCE S256, redirect URI), refresh (rotation; a reused refresh token
//! or code revokes the whole grant), access and ID tokens — and revocation and
//! introspection. Each decision runs in one database transaction.

use super::endpoints::Endpoints;
use super::protocol::{server_error, OAuthError, TokenForm, ACCESS_TOKEN_SECONDS};
use crate::auth::scopes::Scopes;
use crate::auth::token::{Claims, TokenService, AUDIENCE, ISSUER};
use crate::repository::{ClientRow, GrantRow, RefreshRow, Repository};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// How long an authorization code may wait for its exchange.
pub const CODE_SECONDS: i64 = 60;
/// Lifetime of a refresh token with `offline_access` (each rotation starts a new one).
pub const OFFLINE_REFRESH_SECONDS: i64 = 90 * 24 * 3600;
/// However often it is refreshed, a grant ends this long after the person approved it.
pub const GRANT_MAX_SECONDS: i64 = 365 * 24 * 3600;
/// Spent refresh tokens kept per grant (to recognise a replay and revoke the grant).
const SPENT_REFRESH_KEPT: i64 = 10;
/// Lifetime of a refresh token with `online_access` only.
pub const ONLINE_REFRESH_SECONDS: i64 = 8 * 3600;
/// Lifetime of the ID tokens.
const ID_TOKEN_SECONDS: i64 = 300;

/// 32 random bytes, base64url: codes, refresh tokens, request ids, cookies.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored instead of a code, a refresh token or a cookie: its SHA-256, base64url.
pub fn hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn seconds_us(s: i64) -> i64 {
    s * 1_000_000
}

/// Records a grant without a code (client credentials): tokens name it.
pub fn record_grant(
    repo: &Repository,
    client_id: &str,
    subject: &str,
    patient: Option<&str>,
    scope: &str,
) -> Result<GrantRow, OAuthError> {
    repo.oauth_write(|store| {
        let now = store.now_us();
        let row = GrantRow {
            id: uuid::Uuid::now_v7().to_string(),
            client_id: client_id.to_string(),
            subject: subject.to_string(),
            patient: patient.map(str::to_string),
            scope: scope.to_string(),
            nonce: None,
            redirect_uri: String::new(),
            code_hash: None,
            code_challenge: None,
            code_expires_us: 0,
            code_used: true,
            revoked: false,
            created_us: now,
            expires_us: now + seconds_us(ACCESS_TOKEN_SECONDS + 60),
            regulation: false,
        };
        store.insert_grant(&row)?;
        Ok(row)
    })
    .map_err(server_error)
}

/// An emergency declared at the token endpoint: the access token carries it.
#[derive(Debug, Clone)]
pub struct Declared {
    /// `BTG` (break the glass) or `ETREAT` (SAMU regulation).
    pub purpose: &'static str,
    pub reason: String,
    pub patient: String,
}

/// The purpose of use a token request declares, checked before anything is spent: `BTG`
/// (break the glass) for a professional's grant, with a written reason and a patient (the
/// grant's, or `patient`). The consent engine then opens that record for 4 hours unless
/// the patient objected, traces every access with the reason and tells the patient.
pub fn declared_purpose(
    form: &TokenForm,
    grant_subject: Option<&str>,
    grant_patient: Option<&str>,
    grant_regulation: bool,
) -> Result<Option<Declared>, OAuthError> {
    let bad = |why: &str| OAuthError::new("invalid_request", why.to_string());
    match form.purpose_of_use.as_deref() {
        None | Some("") => {
            if form.purpose_reason.is_some() {
                return Err(bad("purpose_reason comes with purpose_of_use"));
            }
            Ok(None)
        }
        Some("BTG") => {
            if grant_subject.is_some_and(|s| !s.starts_with("Practitioner/")) {
                return Err(bad(
                    "an emergency access (BTG) is declared by a professional",
                ));
            }
            let reason = form
                .purpose_reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| bad("an emergency access (BTG) needs a written purpose_reason"))?;
            if reason.len() > 1000 {
                return Err(bad("purpose_reason is limited to 1000 characters"));
            }
            let patient = match (form.patient.as_deref(), grant_patient) {
                (Some(asked), Some(launched)) if asked != launched => {
                    return Err(bad(
                        "an emergency is declared for the patient this login was launched for",
                    ))
                }
                (Some(p), _) | (None, Some(p)) => p.to_string(),
                (None, None) => String::new(),
            };
            if !crate::fhir::resource_types::is_valid_id(&patient) {
                return Err(bad(
                    "an emergency access (BTG) names the patient whose record it opens (patient)",
                ));
            }
            Ok(Some(Declared {
                purpose: "BTG",
                reason: reason.to_string(),
                patient,
            }))
        }
        Some("ETREAT") if !grant_regulation => Err(bad(
            "ETREAT (SAMU regulation) is for the SAMU regulating doctor, as the login's \
             provider vouches",
        )),
        Some("ETREAT") => {
            let patient = form
                .patient
                .as_deref()
                .or(grant_patient)
                .filter(|p| crate::fhir::resource_types::is_valid_id(p))
                .ok_or_else(|| {
                    bad("SAMU regulation (ETREAT) names the patient whose record it opens (patient)")
                })?;
            let reason = form
                .purpose_reason
                .as_deref()
                .map(str::trim)
                .unwrap_or_default();
            if reason.len() > 1000 {
                return Err(bad("purpose_reason is limited to 1000 characters"));
            }
            Ok(Some(Declared {
                purpose: "ETREAT",
                reason: reason.to_string(),
                patient: patient.to_string(),
            }))
        }
        Some(other) => Err(bad(&format!(
            "purpose_of_use {other}: Carnet knows BTG (emergency access)"
        ))),
    }
}

/// An access token for `grant` with `scope` (the grant's, or narrower on refresh).
pub fn access_token(
    tokens: &TokenService,
    grant: &GrantRow,
    scope: &str,
    about: TokenAbout,
) -> Result<(String, Claims), OAuthError> {
    access_token_for(tokens, grant, scope, None, false, about)
}

/// What a token says besides its grant: the client's role, the establishment a
/// professional's token was obtained by, names for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenAbout {
    pub client_role: Option<String>,
    pub establishment: Option<String>,
    pub establishment_name: Option<String>,
    pub name: Option<String>,
}

/// [`access_token`], declaring an emergency.
fn access_token_for(
    tokens: &TokenService,
    grant: &GrantRow,
    scope: &str,
    declared: Option<&Declared>,
    first_party: bool,
    about: TokenAbout,
) -> Result<(String, Claims), OAuthError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: grant.subject.clone(),
        client_id: grant.client_id.clone(),
        scope: scope.to_string(),
        patient: declared
            .map(|d| d.patient.clone())
            .or_else(|| grant.patient.clone()),
        iat: now,
        exp: now + ACCESS_TOKEN_SECONDS,
        jti: uuid::Uuid::new_v4().to_string(),
        grant: Some(grant.id.clone()),
        dev: false,
        purpose_of_use: declared.map(|d| d.purpose.to_string()),
        purpose_reason: declared.map(|d| d.reason.clone()).filter(|r| !r.is_empty()),
        regulation: grant.regulation,
        first_party,
        client_role: about.client_role,
        establishment: about.establishment,
        establishment_name: about.establishment_name,
        name: about.name,
    };
    let token = tokens.issue(&claims).map_err(server_error)?;
    Ok((token, claims))
}

/// The ID token of an `openid` grant: who logged in, for this client, with `fhirUser`.
fn id_token(
    tokens: &TokenService,
    endpoints: &Endpoints,
    grant: &GrantRow,
    scopes: &Scopes,
) -> Result<String, OAuthError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "iss": endpoints.issuer,
        "sub": grant.subject,
        "aud": grant.client_id,
        "iat": now,
        "exp": now + ID_TOKEN_SECONDS,
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    if scopes.has("fhirUser") {
        claims["fhirUser"] = json!(format!("{}/{}", endpoints.fhir_base, grant.subject));
    }
    tokens.sign_value(&claims).map_err(server_error)
}

/// The token response for `grant` (and a new refresh token if it asked for one).
fn token_response(
    tokens: &TokenService,
    endpoints: &Endpoints,
    client: &ClientRow,
    grant: &GrantRow,
    scope: &str,
    refresh_token: Option<String>,
    declared: Option<&Declared>,
) -> Result<Value, OAuthError> {
    let scopes = Scopes::parse(scope);
    let (access, _) = access_token_for(
        tokens,
        grant,
        scope,
        declared,
        client.first_party,
        TokenAbout::default(),
    )?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": scope,
    });
    if let Some(patient) = &grant.patient {
        if scopes.has("launch/patient") || scopes.has_patient_scopes() {
            body["patient"] = json!(patient);
        }
    }
    if let Some(d) = declared {
        body["patient"] = json!(d.patient);
        body["purpose_of_use"] = json!(d.purpose);
    }
    if scopes.has("openid") {
        body["id_token"] = json!(id_token(tokens, endpoints, grant, &scopes)?);
    }
    if let Some(r) = refresh_token {
        body["refresh_token"] = json!(r);
    }
    Ok(body)
}

/// The refresh-token lifetime a grant's scopes ask for, if any.
fn refresh_lifetime(scope: &str) -> Option<i64> {
    let scopes = Scopes::parse(scope);
    if scopes.has("offline_access") {
        Some(OFFLINE_REFRESH_SECONDS)
    } else if scopes.has("online_access") {
        Some(ONLINE_REFRESH_SECONDS)
    } else {
        None
    }
}

/// Stores a new refresh token for `grant` (and keeps the grant alive as long as it).
fn new_refresh_token(
    store: &mut crate::repository::OAuthStore,
    grant: &GrantRow,
) -> Result<Option<String>, crate::error::FhirError> {
    let Some(lifetime) = refresh_lifetime(&grant.scope) else {
        return Ok(None);
    };
    let token = random_token();
    let expires = (store.now_us() + seconds_us(lifetime))
        .min(grant.created_us + seconds_us(GRANT_MAX_SECONDS));
    if expires <= store.now_us() {
        return Ok(None);
    }
    store.prune_spent_refresh(&grant.id, SPENT_REFRESH_KEPT)?;
    store.insert_refresh(&RefreshRow {
        hash: hash(&token),
        grant_id: grant.id.clone(),
        expires_us: expires,
        used: false,
    })?;
    store.extend_grant(&grant.id, expires.max(grant.expires_us))?;
    Ok(Some(token))
}

/// S256: base64url(SHA-256(verifier)) must equal the challenge.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let ok_len = (43..=128).contains(&verifier.len());
    let ok_chars = verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    ok_len && ok_chars && constant_eq(computed.as_bytes(), challenge.as_bytes())
}

/// The `authorization_code` grant.
pub fn exchange_code(
    repo: &Repository,
    tokens: &TokenService,
    endpoints: &Endpoints,
    client: &ClientRow,
    form: &TokenForm,
) -> Result<Value, OAuthError> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_request", "code is missing"))?;
    let invalid = |why: &str| OAuthError::new("invalid_grant", why.to_string());
    let outcome = repo
        .oauth_write(|store| {
            let Some(grant) = store.grant_by_code(&hash(code))? else {
                return Ok(Err(invalid("unknown authorization code")));
            };
            if grant.client_id != client.client_id {
                return Ok(Err(invalid("this code was issued to another client")));
            }
            // A declaration the grant cannot make is refused before the code is spent.
            let declared = match declared_purpose(
                form,
                Some(&grant.subject),
                grant.patient.as_deref(),
                grant.regulation,
            ) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            if grant.code_used || grant.revoked {
                // A code presented twice: whoever holds it may be an attacker; what the
                // first exchange produced is revoked too (RFC 6749 §4.1.2).
                store.revoke_grant(&grant.id)?;
                return Ok(Err(invalid(
                    "this code was already used: the tokens issued with it are revoked",
                )));
            }
            // From here on the code is spent, whatever the outcome.
            if !store.use_code(&grant.id)? {
                store.revoke_grant(&grant.id)?;
                return Ok(Err(invalid("this code was already used")));
            }
            if grant.code_expires_us < store.now_us() {
                return Ok(Err(invalid("the authorization code has expired")));
            }
            if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
                return Ok(Err(invalid(
                    "redirect_uri differs from the authorization request's",
                )));
            }
            let challenge = grant.code_challenge.as_deref().unwrap_or_default();
            match form.code_verifier.as_deref() {
                Some(v) if pkce_matches(v, challenge) => {}
                Some(_) => return Ok(Err(invalid("code_verifier does not match (PKCE)"))),
                None => return Ok(Err(invalid("code_verifier is missing (PKCE)"))),
            }
            let refresh = new_refresh_token(store, &grant)?;
            Ok(Ok((grant, refresh, declared)))
        })
        .map_err(server_error)?;
    let (grant, refresh, declared) = outcome?;
    token_response(
        tokens,
        endpoints,
        client,
        &grant,
        &grant.scope,
        refresh,
        declared.as_ref(),
    )
}

/// The `refresh_token` grant: rotation (the old token is spent), reuse detection (a spent
/// token presented again revokes the grant), never more scope than was granted.
pub fn refresh(
    repo: &Repository,
    tokens: &TokenService,
    endpoints: &Endpoints,
    client: &ClientRow,
    form: &TokenForm,
) -> Result<Value, OAuthError> {
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is missing"))?;
    let invalid = |why: &str| OAuthError::new("invalid_grant", why.to_string());
    let outcome = repo
        .oauth_write(|store| {
            let h = hash(presented);
            let Some(row) = store.refresh(&h)? else {
                return Ok(Err(invalid("unknown refresh token")));
            };
            let Some(grant) = store.grant(&row.grant_id)? else {
                return Ok(Err(invalid("unknown refresh token")));
            };
            if grant.client_id != client.client_id {
                return Ok(Err(invalid(
                    "this refresh token was issued to another client",
                )));
            }
            if form.purpose_of_use.is_some() {
                return Ok(Err(OAuthError::new(
                    "invalid_request",
                    "an emergency is declared when the professional logs in (with the code), \
                     not on a refresh",
                )));
            }
            if row.used {
                store.revoke_grant(&grant.id)?;
                return Ok(Err(invalid(
                    "this refresh token was already used: the grant is revoked",
                )));
            }
            if grant.revoked {
                return Ok(Err(invalid("this grant was revoked")));
            }
            if row.expires_us < store.now_us() {
                return Ok(Err(invalid("the refresh token has expired")));
            }
            // Never more than was granted; a narrower scope is for this access token only.
            let granted = Scopes::parse(&grant.scope);
            let scope = match form.scope.as_deref() {
                None => grant.scope.clone(),
                Some(asked) => {
                    let asked = Scopes::parse(asked);
                    let kept = granted.narrow(&asked);
                    if kept.granted.len() != asked.granted.len() {
                        return Ok(Err(OAuthError::new(
                            "invalid_scope",
                            "a refresh cannot widen the scopes that were granted",
                        )));
                    }
                    kept.to_string()
                }
            };
            if !store.use_refresh(&h)? {
                store.revoke_grant(&grant.id)?;
                return Ok(Err(invalid("this refresh token was already used")));
            }
            let next = new_refresh_token(store, &grant)?;
            Ok(Ok((grant, scope, next)))
        })
        .map_err(server_error)?;
    let (grant, scope, next) = outcome?;
    token_response(tokens, endpoints, client, &grant, &scope, next, None)
}

/// The grant a presented token (access token or refresh token) belongs to, if it is one of
/// ours and was issued to `client`.
fn grant_of(
    repo: &Repository,
    tokens: &TokenService,
    client: &ClientRow,
    token: &str,
) -> Result<Option<(GrantRow, TokenKind)>, OAuthError> {
    let found = if token.matches('.').count() == 2 {
        match tokens.verify(token) {
            Ok(claims) if !claims.dev => claims
                .grant
                .clone()
                .map(|g| (g, TokenKind::Access(Box::new(claims)))),
            _ => None,
        }
    } else {
        repo.oauth_read(|store| store.refresh(&hash(token)))
            .map_err(server_error)?
            .map(|r| (r.grant_id.clone(), TokenKind::Refresh(r)))
    };
    let Some((grant_id, kind)) = found else {
        return Ok(None);
    };
    let grant = repo
        .oauth_read(|store| store.grant(&grant_id))
        .map_err(server_error)?;
    Ok(grant
        .filter(|g| g.client_id == client.client_id)
        .map(|g| (g, kind)))
}

enum TokenKind {
    Access(Box<Claims>),
    Refresh(RefreshRow),
}

/// `POST /auth/revoke` (RFC 7009): revokes the grant of the token, so that its access and
/// refresh tokens all stop working. Answers the same whether or not the token was known.
pub fn revoke(
    repo: &Repository,
    tokens: &TokenService,
    client: &ClientRow,
    form: &TokenForm,
) -> Result<(), OAuthError> {
    let token = form
        .token
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_request", "token is missing"))?;
    if let Some((grant, _)) = grant_of(repo, tokens, client, token)? {
        repo.oauth_write(|store| store.revoke_grant(&grant.id))
            .map_err(server_error)?;
    }
    Ok(())
}

/// `POST /auth/introspect` (RFC 7662), for the client the token was issued to.
pub fn introspect(
    repo: &Repository,
    tokens: &TokenService,
    endpoints: &Endpoints,
    client: &ClientRow,
    form: &TokenForm,
) -> Result<Value, OAuthError> {
    let token = form
        .token
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_request", "token is missing"))?;
    let inactive = json!({"active": false});
    let Some((grant, kind)) = grant_of(repo, tokens, client, token)? else {
        return Ok(inactive);
    };
    if repo.grant_active(&grant.id, true) != Some(true) {
        return Ok(inactive);
    }
    let mut body = json!({
        "active": true,
        "client_id": grant.client_id,
        "sub": grant.subject,
        "iss": endpoints.issuer,
    });
    match kind {
        TokenKind::Access(claims) => {
            body["scope"] = json!(claims.scope);
            body["exp"] = json!(claims.exp);
            body["iat"] = json!(claims.iat);
            body["iss"] = json!(claims.iss);
            body["aud"] = json!(claims.aud);
            body["token_type"] = json!("Bearer");
        }
        TokenKind::Refresh(row) => {
            let now = crate::fhir::instant::now_us();
            if row.used || row.expires_us < now {
                return Ok(inactive);
            }
            body["scope"] = json!(grant.scope);
            body["exp"] = json!(row.expires_us / 1_000_000);
            body["token_type"] = json!("refresh_token");
        }
    }
    if let Some(p) = &grant.patient {
        body["patient"] = json!(p);
    }
    if !grant.subject.starts_with("client/") {
        body["fhirUser"] = json!(format!("{}/{}", endpoints.fhir_base, grant.subject));
    }
    Ok(body)
}

/// The apps a patient connected (their live grants, one entry per app): what a portal
/// lists so that the patient can revoke any one. Only the patient, through Carnet's own
/// portal (a third-party app does not see the others).
pub fn connected_apps(
    repo: &Repository,
    ctx: &crate::auth::RequestContext,
) -> Result<Value, crate::error::FhirError> {
    let subject = patients_own(ctx)?;
    let grants = repo.oauth_read(|store| store.live_grants_of(&subject))?;
    let mut apps: Vec<Value> = Vec::new();
    for (grant, name) in grants {
        if grant.client_id == crate::auth::SERVICE_CLIENT {
            continue;
        }
        let since = crate::fhir::instant::format_us(grant.created_us);
        match apps
            .iter_mut()
            .find(|a| a["client_id"] == grant.client_id.as_str())
        {
            Some(app) => {
                let mut scopes: Vec<String> = app["scope"]
                    .as_str()
                    .unwrap_or_default()
                    .split(' ')
                    .chain(grant.scope.split(' '))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                scopes.sort();
                scopes.dedup();
                app["scope"] = json!(scopes.join(" "));
                app["last_authorised"] = json!(since);
                if let Some(p) = &grant.patient {
                    push_unique(&mut app["patients"], p);
                }
            }
            None => {
                let mut app = json!({"client_id": grant.client_id, "name": name,
                    "scope": grant.scope, "connected_since": since, "last_authorised": since,
                    "patients": []});
                if let Some(p) = &grant.patient {
                    push_unique(&mut app["patients"], p);
                }
                apps.push(app);
            }
        }
    }
    Ok(json!({"apps": apps}))
}

fn push_unique(list: &mut Value, patient: &str) {
    let reference = json!(format!("Patient/{patient}"));
    if let Some(a) = list.as_array_mut() {
        if !a.contains(&reference) {
            a.push(reference);
        }
    }
}

/// Revokes every grant the patient gave `client_id`: its tokens stop at once (grants are
/// checked on every request) and its refresh tokens are refused. False when the patient
/// had connected no such app.
pub fn revoke_app(
    repo: &Repository,
    ctx: &crate::auth::RequestContext,
    client_id: &str,
) -> Result<bool, crate::error::FhirError> {
    let subject = patients_own(ctx)?;
    let n = repo.oauth_write(|store| store.revoke_grants_of(&subject, client_id))?;
    Ok(n > 0)
}

/// The subject of a patient acting for themself through Carnet's own portal.
fn patients_own(ctx: &crate::auth::RequestContext) -> Result<String, crate::error::FhirError> {
    match ctx.actor() {
        crate::auth::Actor::Patient(_) if ctx.first_party() => Ok(ctx.subject()),
        crate::auth::Actor::Patient(_) => Err(crate::error::FhirError::Forbidden(
            "the apps a patient connected are listed and revoked in Carnet itself, not \
             through an app"
                .into(),
        )),
        _ => Err(crate::error::FhirError::Forbidden(
            "only the patient lists and revokes the apps they connected".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches("short", challenge));
        assert_ne!(hash("a"), hash("b"));
        assert_ne!(random_token(), random_token());
    }
}
