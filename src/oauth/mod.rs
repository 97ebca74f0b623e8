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
pub mod grants;
pub mod pages;

use crate::auth::scopes::{ScopeContext, Scopes};
use crate::auth::token::TokenService;
use crate::repository::{ClientRow, Repository};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

/// Lifetime of the access tokens issued here.
pub const ACCESS_TOKEN_SECONDS: i64 = 300;
/// Longest lifetime accepted for a client assertion (SMART: no more than five minutes).
const MAX_ASSERTION_SECONDS: i64 = 300;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error response (RFC 6749 §5.2): `error` and a description that never
/// repeats what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
        }
    }

    /// 401 for a client that could not be authenticated, 400 otherwise, 500 for ours.
    pub fn status(&self) -> u16 {
        match self.code {
            "invalid_client" => 401,
            "server_error" => 500,
            _ => 400,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": self.code, "error_description": self.description})
    }
}

/// The form posted to the token, revocation and introspection endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    /// Revocation and introspection: the token in question.
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    /// A professional declaring an emergency (IHE IUA style): `BTG`, with the written
    /// reason and the patient whose record it opens (if the grant names none).
    pub purpose_of_use: Option<String>,
    pub purpose_reason: Option<String>,
    pub patient: Option<String>,
}

/// The claims a client assertion must carry.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: Option<String>,
}

/// Where the endpoints live, from the FHIR base URL (`https://host/fhir`).
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `https://host`
    pub origin: String,
    /// The FHIR base URL (the `aud` apps must ask for, and the base of `fhirUser`).
    pub fhir_base: String,
    /// The authorization server's issuer (`{origin}/auth`): the `iss` of its ID tokens.
    pub issuer: String,
    pub authorize: String,
    pub token: String,
    pub revoke: String,
    pub introspect: String,
    pub jwks: String,
}

impl Endpoints {
    pub fn new(base_url: &str, fhir_path: &str) -> Endpoints {
        let origin = base_url
            .strip_suffix(fhir_path.trim_end_matches('/'))
            .unwrap_or(base_url)
            .trim_end_matches('/')
            .to_string();
        Endpoints {
            fhir_base: base_url.trim_end_matches('/').to_string(),
            issuer: format!("{origin}/auth"),
            authorize: format!("{origin}/auth/authorize"),
            token: format!("{origin}/auth/token"),
            revoke: format!("{origin}/auth/revoke"),
            introspect: format!("{origin}/auth/introspect"),
            jwks: format!("{origin}/auth/jwks"),
            origin,
        }
    }
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
            "grant_type must be authorization_code, refresh_token or client_credentials",
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
    let registered = Scopes::parse(&client.scopes);
    let wanted = Scopes::parse(form.scope.as_deref().unwrap_or_default());
    // Backend services get system/ scopes only, and at most what was registered.
    let granted = registered.narrow(&wanted);
    let system_only: Vec<&str> = granted
        .granted
        .iter()
        .map(String::as_str)
        .filter(|g| {
            Scopes::parse(g)
                .resources
                .first()
                .is_some_and(|r| r.context == ScopeContext::System)
        })
        .collect();
    let granted = Scopes::parse(&system_only.join(" "));
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
    let (access_token, _) = grants::access_token(tokens, &grant, &granted.to_string())?;
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": granted.to_string(),
    }))
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

/// An internal failure: logged, and told to the client in general terms only.
pub fn server_error(e: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %e, "authorization server failure");
    OAuthError::new(
        "server_error",
        "the authorization server could not answer; try again",
    )
}

/// Checks a `private_key_jwt` assertion: a registered, active, confidential client; a key of
/// its JWKS; RS384 or ES384; iss = sub = client id; aud = the token endpoint; short-lived;
/// a `jti` never seen before.
fn authenticate_client(
    repo: &Repository,
    endpoints: &Endpoints,
    assertion: &str,
) -> Result<ClientRow, OAuthError> {
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
    if claims.sub != claims.iss {
        return Err(bad("the assertion's sub must be the client id"));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if claims.exp > now + MAX_ASSERTION_SECONDS + 30 {
        return Err(bad("the assertion lives longer than five minutes"));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("the assertion has no jti"))?;
    let fresh = repo
        .use_assertion(&jti, client_id, (claims.exp + 30) * 1_000_000)
        .map_err(server_error)?;
    if !fresh {
        return Err(bad("this assertion was already used"));
    }
    Ok(client)
}

/// The scopes this server grants (what `scopes_supported` lists).
const SCOPES_SUPPORTED: &[&str] = &[
    "openid",
    "fhirUser",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "user/*.cruds",
    "user/*.rs",
    "system/*.cruds",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
];

/// `GET [base]/.well-known/smart-configuration`: what the authorization server supports,
/// and nothing more.
pub fn smart_configuration(endpoints: &Endpoints) -> Value {
    json!({
        "issuer": endpoints.issuer,
        "jwks_uri": endpoints.jwks,
        "authorization_endpoint": endpoints.authorize,
        "token_endpoint": endpoints.token,
        "revocation_endpoint": endpoints.revoke,
        "introspection_endpoint": endpoints.introspect,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "capabilities": [
            "launch-standalone", "context-standalone-patient",
            "client-public", "client-confidential-asymmetric",
            "sso-openid-connect", "permission-offline", "permission-online",
            "permission-patient", "permission-user", "permission-v1", "permission-v2",
        ],
    })
}

/// `GET /auth/.well-known/openid-configuration`: for apps verifying the ID tokens issued here.
pub fn openid_configuration(endpoints: &Endpoints) -> Value {
    json!({
        "issuer": endpoints.issuer,
        "authorization_endpoint": endpoints.authorize,
        "token_endpoint": endpoints.token,
        "revocation_endpoint": endpoints.revoke,
        "introspection_endpoint": endpoints.introspect,
        "jwks_uri": endpoints.jwks,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "fhirUser"],
    })
}
