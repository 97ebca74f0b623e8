//! endpoints: where the authorization server's endpoints are, and the discovery documents
//! that say so (SMART configuration, OpenID configuration).

use serde_json::{json, Value};

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
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
            super::protocol::JWT_BEARER],
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
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
            super::protocol::JWT_BEARER],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "fhirUser"],
    })
}
