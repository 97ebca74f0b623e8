//! protocol: the OAuth 2.0 vocabulary every endpoint shares: the token form, the error
//! response, the lifetime of access tokens.

use serde::Deserialize;
use serde_json::{json, Value};

/// Lifetime of the access tokens issued here.
pub const ACCESS_TOKEN_SECONDS: i64 = 300;
/// The JWT bearer authorization grant (RFC 7523 §2.1).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
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
    /// The JWT bearer grant (RFC 7523): the signed assertion naming the professional.
    pub assertion: Option<String>,
    /// Revocation and introspection: the token in question.
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    /// A professional declaring an emergency (IHE IUA style): `BTG`, with the written
    /// reason and the patient whose record it opens (if the grant names none).
    pub purpose_of_use: Option<String>,
    pub purpose_reason: Option<String>,
    pub patient: Option<String>,
}

/// An internal failure: logged, and told to the client in general terms only.
pub fn server_error(e: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %e, "authorization server failure");
    OAuthError::new(
        "server_error",
        "the authorization server could not answer; try again",
    )
}
