//! oauth: Carnet as the OAuth 2 authorization server for SMART clients.
//!
//! - SMART App Launch (standalone): `/auth/authorize` → upstream OpenID Connect login
//!   (`crate::identity`) → consent screen → authorization code (PKCE S256 mandatory) →
//!   `/auth/token`, with refresh tokens (rotated; a reused one revokes its grant), an ID token
//!   with `fhirUser`, and `patient` in the token response ([`authorize`], [`grants`]).
//! - SMART Backend Services: the `client_credentials` grant with a `private_key_jwt` client
//!   assertion (RS384 or ES384, verified against the JWKS registered for the client), for
//!   hospital information systems with `system/` scopes.
//! - Revocation (RFC 7009) and introspection (RFC 7662); `.well-known/smart-configuration`
//!   and `openid-configuration` saying exactly that.
//!
//! Every token issued names its grant; the grant is checked on every FHIR request, so a
//! revocation or a client's suspension stops its tokens at once.
//! <https://hl7.org/fhir/smart-app-launch/>

pub mod authorize;
pub mod endpoints;
pub mod grants;
pub mod pages;
pub mod protocol;

pub use endpoints::{openid_configuration, smart_configuration, Endpoints};
pub use protocol::{server_error, OAuthError, TokenForm, ACCESS_TOKEN_SECONDS, JWT_BEARER};

use crate::auth::scopes::{ScopeContext, Scopes};
use crate::auth::token::TokenService;
use crate::repository::{ClientRow, Repository};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest lifetime accepted for a client assertion (SMART: no more than five minutes).
const MAX_ASSERTION_SECONDS: i64 = 300;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims a client assertion must carry.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: Option<String>,
}

/// `POST /auth/token`: answers a token request.
pub fn token(
    repo: &Repository,
    tokens: &TokenService,
    endpoints: &Endpoints,
    form: &TokenForm,
) -> Result<Value, OAuthError> {
    match form.grant_type.as_deref() {
        Some("client_credentials") => client_credentials(repo, tokens, endpoints, form),
        Some(JWT_BEARER) => establishment_grant(repo, tokens, endpoints, form),
        Some("authorization_code") => {
            let client = authenticate(repo, endpoints, form)?;
            grants::exchange_code(repo, tokens, endpoints, &client, form)
        }
        Some("refresh_token") => {
            let client = authenticate(repo, endpoints, form)?;
            grants::refresh(repo, tokens, endpoints, &client, form)
        }
        Some(_) => Err(OAuthError::new(
            "unsupported_grant_type",
            "grant_type must be authorization_code, refresh_token, client_credentials or \
             urn:ietf:params:oauth:grant-type:jwt-bearer",
        )),
        None => Err(OAuthError::new("invalid_request", "grant_type is missing")),
    }
}

/// The `client_credentials` grant (SMART Backend Services).
fn client_credentials(
    repo: &Repository,
    tokens: &TokenService,
    endpoints: &Endpoints,
    form: &TokenForm,
) -> Result<Value, OAuthError> {
    if form.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        return Err(OAuthError::new(
            "invalid_client",
            format!("client_assertion_type must be {ASSERTION_TYPE}"),
        ));
    }
    let assertion = form
        .client_assertion
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_client", "client_assertion is missing"))?;
    let client = authenticate_client(repo, endpoints, assertion)?;
    // Backend services get system/ scopes only, and at most what was registered.
    let granted = registered_of_context(&client, form, ScopeContext::System);
    if granted.resources.is_empty() {
        return Err(OAuthError::new(
            "invalid_scope",
            "none of the requested scopes is registered for this client (system/ scopes only)",
        ));
    }
    // A grant per token: what revocation and suspension act on.
    let subject = format!("client/{}", client.client_id);
    let grant = grants::record_grant(
        repo,
        &client.client_id,
        &subject,
        None,
        &granted.to_string(),
    )?;
    let about = grants::TokenAbout {
        client_role: (client.role == crate::repository::REGISTRY).then(|| client.role.clone()),
        ..Default::default()
    };
    let (access_token, _) = grants::access_token(tokens, &grant, &granted.to_string(), about)?;
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": granted.to_string(),
    }))
}

/// The JWT bearer grant (RFC 7523) of an establishment acting for one of its
/// professionals: an assertion signed with the establishment's registered key, whose `sub`
/// is the professional's national identifier (IDNPS, `urn:oid:1.2.250.1.71.4.2.1`; the
/// value alone or `system|value`). Granted only for a professional the directory lists at
/// the establishment's Organization; the token then carries that professional (the
/// patient's rules apply to it as to their own login) and the establishment (traced too).
fn establishment_grant(
    repo: &Repository,
    tokens: &TokenService,
    endpoints: &Endpoints,
    form: &TokenForm,
) -> Result<Value, OAuthError> {
    let assertion = form
        .assertion
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_request", "assertion is missing"))?;
    // RFC 7523 §3.1: an assertion that is not valid is an invalid grant.
    let (client, claims) = verify_assertion(repo, endpoints, assertion).map_err(|e| {
        if e.code == "invalid_client" {
            OAuthError::new("invalid_grant", e.description)
        } else {
            e
        }
    })?;
    if form.client_assertion.is_some() {
        let authenticated = authenticate(repo, endpoints, form)?;
        if authenticated.client_id != client.client_id {
            return Err(OAuthError::new(
                "invalid_client",
                "the client assertion and the grant's assertion name different clients",
            ));
        }
    }
    let Some(organization) = client
        .organization
        .clone()
        .filter(|_| client.role == crate::repository::ESTABLISHMENT)
    else {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this client is not registered as an establishment acting for its professionals \
             (carnet client add --establishment)",
        ));
    };
    let identifier = match claims.sub.split_once('|') {
        Some((system, value)) if system == crate::consent::IDNPS => value,
        Some(_) => {
            return Err(OAuthError::new(
                "invalid_grant",
                format!(
                    "the assertion's sub is the professional's national identifier ({})",
                    crate::consent::IDNPS
                ),
            ))
        }
        None => claims.sub.as_str(),
    };
    if identifier.is_empty() || identifier.len() > 64 {
        return Err(OAuthError::new(
            "invalid_grant",
            "the assertion's sub is the professional's national identifier",
        ));
    }
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
    let Some((practitioner, name)) =
        authorize::professional_at(repo, &organization, identifier, now_us)
            .map_err(server_error)?
    else {
        return Err(OAuthError::new(
            "invalid_grant",
            "the directory lists no active professional with this national identifier at \
             this establishment (a PractitionerRole of its Organization)",
        ));
    };
    // A professional's access: user/ scopes only.
    let granted = registered_of_context(&client, form, ScopeContext::User);
    if granted.resources.is_empty() {
        return Err(OAuthError::new(
            "invalid_scope",
            "none of the requested scopes is registered for this establishment (user/ scopes \
             only)",
        ));
    }
    let subject = format!("Practitioner/{practitioner}");
    let grant = grants::record_grant(
        repo,
        &client.client_id,
        &subject,
        None,
        &granted.to_string(),
    )?;
    let about = grants::TokenAbout {
        client_role: Some(client.role.clone()),
        establishment: Some(organization),
        establishment_name: Some(client.name.clone()),
        name,
    };
    let (access_token, _) = grants::access_token(tokens, &grant, &granted.to_string(), about)?;
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": granted.to_string(),
        "fhirUser": subject,
    }))
}

/// The scopes asked for that the client registered, of one context (`system/` for a
/// backend service, `user/` for an establishment's professional) only.
fn registered_of_context(client: &ClientRow, form: &TokenForm, context: ScopeContext) -> Scopes {
    let registered = Scopes::parse(&client.scopes);
    let wanted = Scopes::parse(form.scope.as_deref().unwrap_or_default());
    let granted = registered.narrow(&wanted);
    let of_context: Vec<&str> = granted
        .granted
        .iter()
        .map(String::as_str)
        .filter(|g| {
            Scopes::parse(g)
                .resources
                .first()
                .is_some_and(|r| r.context == context)
        })
        .collect();
    Scopes::parse(&of_context.join(" "))
}

/// Authenticates the client of a code exchange, a refresh, a revocation or an
/// introspection: a confidential client by its `private_key_jwt` assertion, a public client
/// by its `client_id` alone (PKCE protects its codes, rotation its refresh tokens).
pub fn authenticate(
    repo: &Repository,
    endpoints: &Endpoints,
    form: &TokenForm,
) -> Result<ClientRow, OAuthError> {
    if let Some(assertion) = form.client_assertion.as_deref() {
        if form.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(OAuthError::new(
                "invalid_client",
                format!("client_assertion_type must be {ASSERTION_TYPE}"),
            ));
        }
        let client = authenticate_client(repo, endpoints, assertion)?;
        if form
            .client_id
            .as_deref()
            .is_some_and(|c| c != client.client_id)
        {
            return Err(OAuthError::new(
                "invalid_client",
                "client_id does not match the assertion",
            ));
        }
        return Ok(client);
    }
    let client_id = form
        .client_id
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_client", "client_id is missing"))?;
    let client = repo
        .client(client_id)
        .map_err(server_error)?
        .ok_or_else(|| OAuthError::new("invalid_client", "unknown client"))?;
    if client.suspended {
        return Err(OAuthError::new(
            "invalid_client",
            "this client is suspended",
        ));
    }
    if client.confidential {
        return Err(OAuthError::new(
            "invalid_client",
            "this client is confidential: authenticate with a private_key_jwt assertion",
        ));
    }
    Ok(client)
}

/// Checks a `private_key_jwt` assertion: a registered, active, confidential client; a key of
/// its JWKS; RS384 or ES384; iss = sub = client id; aud = the token endpoint; short-lived;
/// a `jti` never seen before.
fn authenticate_client(
    repo: &Repository,
    endpoints: &Endpoints,
    assertion: &str,
) -> Result<ClientRow, OAuthError> {
    let (client, claims) = verify_assertion(repo, endpoints, assertion)?;
    if claims.sub != claims.iss {
        return Err(OAuthError::new(
            "invalid_client",
            "the assertion's sub must be the client id",
        ));
    }
    Ok(client)
}

/// Checks an assertion signed by a registered client (a client assertion, or the JWT
/// bearer grant's): a registered, active, confidential client named by `iss`; a key of
/// its JWKS; RS384 or ES384; aud = the token endpoint; short-lived; a `jti` never seen
/// before. The caller checks `sub`.
fn verify_assertion(
    repo: &Repository,
    endpoints: &Endpoints,
    assertion: &str,
) -> Result<(ClientRow, AssertionClaims), OAuthError> {
    let bad = |why: &str| OAuthError::new("invalid_client", why.to_string());
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad("malformed assertion"))?;
    let alg = match header.alg {
        Algorithm::RS384 | Algorithm::ES384 => header.alg,
        _ => return Err(bad("assertions must be signed with RS384 or ES384")),
    };
    // The client is named by the (yet unverified) `iss`; nothing is trusted before the
    // signature verifies with that client's registered key.
    let payload = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| bad("malformed assertion"))?;
    let client_id = payload
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the assertion has no iss"))?;
    let client = repo
        .client(client_id)
        .map_err(server_error)?
        .ok_or_else(|| bad("unknown client"))?;
    if client.suspended {
        return Err(bad("this client is suspended"));
    }
    if !client.confidential || client.jwks.is_empty() {
        return Err(bad("this client has no registered key"));
    }
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&client.jwks).map_err(|_| bad("the client's JWKS is unusable"))?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| bad("no registered key matches the assertion's kid"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("the client's key is unusable"))?;
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.set_audience(&[&endpoints.token]);
    v.set_issuer(&[client_id]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 30;
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            bad(match e.kind() {
                ErrorKind::ExpiredSignature => "the assertion has expired",
                ErrorKind::InvalidAudience => "the assertion's aud must be the token endpoint",
                ErrorKind::InvalidSignature => "the assertion's signature does not verify",
                _ => "the assertion is not valid",
            })
        })?
        .claims;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if claims.exp > now + MAX_ASSERTION_SECONDS + 30 {
        return Err(bad("the assertion lives longer than five minutes"));
    }
    let jti = claims
        .jti
        .clone()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("the assertion has no jti"))?;
    let fresh = repo
        .use_assertion(&jti, client_id, (claims.exp + 30) * 1_000_000)
        .map_err(server_error)?;
    if !fresh {
        return Err(bad("this assertion was already used"));
    }
    Ok((client, claims))
}
