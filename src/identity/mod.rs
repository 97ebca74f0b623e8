//! identity: Carnet as the relying party of the upstream OpenID Connect providers that
//! stand in for FranceConnect (patients) and Pro Santé Connect (health professionals).
//!
//! The providers are configured in a JSON file (`carnet serve --identity-config FILE`),
//! never in code: issuer, client id and secret, scopes, `acr_values`, and which claim links a
//! person to their record (the INS for a patient, the national professional id for a
//! practitioner). A login is the authorization code flow with PKCE (S256), `state` and
//! `nonce`; the ID token's signature, issuer, audience, expiry, nonce and (when configured)
//! `acr` are checked by the `openidconnect` crate. Linking the verified person to a Patient
//! or Practitioner is the authorization server's job (`crate::oauth`): an unknown person is
//! refused, never created.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationContextClass, AuthenticationFlow, AuthorizationCode, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Whose login a provider is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonKind {
    /// A patient (FranceConnect): linked to a Patient.
    Patient,
    /// A health professional (Pro Santé Connect): linked to a Practitioner.
    Practitioner,
}

impl PersonKind {
    pub fn resource_type(self) -> &'static str {
        match self {
            PersonKind::Patient => "Patient",
            PersonKind::Practitioner => "Practitioner",
        }
    }
}

/// Which claim of the ID token names the person, and in which identifier system their
/// record carries that value.
#[derive(Debug, Clone, Deserialize)]
pub struct IdentifierMapping {
    pub claim: String,
    pub system: String,
}

/// One upstream provider, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Short name, in URLs (`/auth/login/NAME`, `/auth/callback/NAME`).
    pub name: String,
    /// What the login page shows (e.g. "FranceConnect").
    pub label: String,
    pub kind: PersonKind,
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or the name of the environment variable holding it (preferred:
    /// the configuration file then holds no secret).
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Asked for with `acr_values`, and the ID token's `acr` must be one of them.
    #[serde(default)]
    pub acr_values: Vec<String>,
    pub identifier: IdentifierMapping,
    /// For professionals: the claim (a string, or a list of strings) that, holding `value`,
    /// makes the person the SAMU regulating doctor (centre 15), who may then declare
    /// `purpose_of_use=ETREAT` (e.g. `{"claim": "SubjectRole", "value": "…"}`).
    #[serde(default)]
    pub regulation: Option<ClaimValue>,
}

/// A claim holding a value (in a string claim, or among a list's strings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimValue {
    pub claim: String,
    pub value: String,
}

impl ClaimValue {
    fn held_by(&self, claims: &Map<String, Value>) -> bool {
        match claims.get(&self.claim) {
            Some(Value::String(s)) => *s == self.value,
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(&self.value)),
            _ => false,
        }
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

/// The identity configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub providers: Vec<ProviderConfig>,
}

impl IdentityConfig {
    /// Reads and checks the file (names, URLs, secrets present); says what is wrong.
    pub fn load(path: &Path) -> Result<IdentityConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: IdentityConfig =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut names = std::collections::HashSet::new();
        for p in &mut config.providers {
            let ok_name = !p.name.is_empty()
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok_name || !names.insert(p.name.clone()) {
                return Err(format!(
                    "{}: provider names must be unique, lowercase letters, digits and '-' ({:?})",
                    path.display(),
                    p.name
                ));
            }
            let issuer = url::Url::parse(&p.issuer)
                .map_err(|e| format!("provider {}: issuer: {e}", p.name))?;
            let loopback = matches!(issuer.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
                return Err(format!(
                    "provider {}: the issuer must be an https URL (http only on a loopback address)",
                    p.name
                ));
            }
            if let Some(var) = &p.client_secret_env {
                let secret = std::env::var(var).map_err(|_| {
                    format!("provider {}: environment variable {var} is not set", p.name)
                })?;
                p.client_secret = Some(secret);
            }
            if p.client_secret.as_deref().is_none_or(str::is_empty) {
                return Err(format!("provider {}: no client secret", p.name));
            }
            if !p.scopes.iter().any(|s| s == "openid") {
                p.scopes.insert(0, "openid".into());
            }
        }
        Ok(config)
    }
}

/// Claims beyond the standard ones (the identifier claim, professional claims…).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub other: Map<String, Value>,
}
impl AdditionalClaims for ExtraClaims {}

type OidcTokenResponse = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    OidcTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a login failed. Shown to the user in general terms; details go to the log at debug.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("unknown identity provider")]
    UnknownProvider,
    #[error("the identity provider cannot be reached or answered badly")]
    Unavailable(String),
    #[error("the identity provider's answer could not be verified")]
    Invalid(String),
}

/// A person as the provider vouched for them.
#[derive(Debug, Clone)]
pub struct VerifiedPerson {
    pub kind: PersonKind,
    pub issuer: String,
    pub subject: String,
    /// The value of the configured identifier claim, if the token carried it.
    pub identifier: Option<String>,
    pub identifier_system: String,
    /// The provider vouches that the person is the SAMU regulating doctor (its configured
    /// `regulation` claim).
    pub regulation: bool,
}

/// What a login needs to remember until the provider sends the person back.
#[derive(Debug, Clone)]
pub struct LoginStart {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

struct Upstream {
    config: ProviderConfig,
    /// Discovery document and keys, fetched on first use and again after an hour (or after a
    /// verification failure, in case the provider rotated its keys).
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

/// The configured providers and one HTTP client (redirects off) for all of them.
pub struct Identity {
    providers: Vec<Upstream>,
    http: openidconnect::reqwest::Client,
    /// `https://host` (callbacks are `{origin}/auth/callback/NAME`).
    origin: String,
}

const METADATA_TTL: Duration = Duration::from_secs(3600);

impl Identity {
    pub fn new(config: IdentityConfig, origin: &str) -> Result<Identity, String> {
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Identity {
            providers: config
                .providers
                .into_iter()
                .map(|config| Upstream {
                    config,
                    metadata: tokio::sync::Mutex::new(None),
                })
                .collect(),
            http,
            origin: origin.trim_end_matches('/').to_string(),
        })
    }

    pub fn providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.iter().map(|u| &u.config)
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers().find(|p| p.name == name)
    }

    fn upstream(&self, name: &str) -> Result<&Upstream, IdentityError> {
        self.providers
            .iter()
            .find(|u| u.config.name == name)
            .ok_or(IdentityError::UnknownProvider)
    }

    pub fn callback_url(&self, name: &str) -> String {
        format!("{}/auth/callback/{name}", self.origin)
    }

    async fn client(&self, up: &Upstream, fresh: bool) -> Result<OidcClient, IdentityError> {
        let mut cached = up.metadata.lock().await;
        let stale = cached
            .as_ref()
            .is_none_or(|(_, at)| fresh || at.elapsed() > METADATA_TTL);
        if stale {
            let issuer = IssuerUrl::new(up.config.issuer.clone())
                .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
            let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
                .await
                .map_err(|e| IdentityError::Unavailable(format!("discovery: {e}")))?;
            *cached = Some((metadata, Instant::now()));
        }
        let metadata = cached.as_ref().map(|(m, _)| m.clone()).expect("just set");
        let redirect = RedirectUrl::new(self.callback_url(&up.config.name))
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
        Ok(OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(up.config.client_id.clone()),
            up.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send the browser to log in with provider `name`, and what to remember.
    pub async fn begin(&self, name: &str) -> Result<LoginStart, IdentityError> {
        let up = self.upstream(name)?;
        let client = self.client(up, false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in up.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(s.clone()));
        }
        for acr in &up.config.acr_values {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(LoginStart {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the provider's code and verifies the ID token (signature, issuer, audience,
    /// expiry, nonce, `acr` when configured).
    pub async fn finish(
        &self,
        name: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedPerson, IdentityError> {
        let up = self.upstream(name)?;
        let client = self.client(up, false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| IdentityError::Unavailable(format!("token exchange: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| IdentityError::Invalid("no ID token in the answer".into()))?;
        let nonce = Nonce::new(nonce.to_string());
        let first = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .cloned()
            .map_err(|e| e.to_string());
        let claims = match first {
            Ok(c) => c,
            Err(first) => {
                // The provider may have rotated its keys: fetch them again, once.
                let fresh = self.client(up, true).await?;
                let verifier = fresh.id_token_verifier();
                let again = id_token.claims(&verifier, &nonce).cloned();
                again.map_err(|_| IdentityError::Invalid(format!("ID token: {first}")))?
            }
        };
        if !up.config.acr_values.is_empty() {
            let acr = claims.auth_context_ref().map(|a| a.as_str().to_string());
            if !acr.is_some_and(|a| up.config.acr_values.contains(&a)) {
                return Err(IdentityError::Invalid(
                    "the ID token's acr is not one that was asked for".into(),
                ));
            }
        }
        let mapping = &up.config.identifier;
        let pick = |claims: &Map<String, Value>| {
            claims.get(&mapping.claim).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let mut identifier = if mapping.claim == "sub" {
            Some(claims.subject().as_str().to_string())
        } else {
            pick(&claims.additional_claims().other)
        };
        let regulation_rule = up
            .config
            .regulation
            .as_ref()
            .filter(|_| up.config.kind == PersonKind::Practitioner);
        let mut regulation =
            regulation_rule.is_some_and(|r| r.held_by(&claims.additional_claims().other));
        // Providers such as FranceConnect and Pro Santé Connect give identity claims at the
        // userinfo endpoint (JSON or a signed JWT), not in the ID token: ask there, for the
        // subject the ID token named.
        if identifier.is_none() || (regulation_rule.is_some() && !regulation) {
            if let Ok(request) = client.user_info(
                response.access_token().clone(),
                Some(claims.subject().clone()),
            ) {
                let info: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> = request
                    .request_async(&self.http)
                    .await
                    .map_err(|e| IdentityError::Invalid(format!("userinfo: {e}")))?;
                if identifier.is_none() {
                    identifier = pick(&info.additional_claims().other);
                }
                regulation = regulation
                    || regulation_rule.is_some_and(|r| r.held_by(&info.additional_claims().other));
            }
        }
        Ok(VerifiedPerson {
            kind: up.config.kind,
            issuer: up.config.issuer.clone(),
            subject: claims.subject().as_str().to_string(),
            identifier: identifier.filter(|v| !v.trim().is_empty()),
            identifier_system: mapping.system.clone(),
            regulation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: serde_json::Value) -> Result<IdentityConfig, String> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), json.to_string()).unwrap();
        IdentityConfig::load(f.path())
    }

    fn provider(extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({"name": "fc", "label": "FranceConnect", "kind": "patient",
            "issuer": "https://fc.example", "client_id": "carnet",
            "identifier": {"claim": "ins", "system": "urn:oid:1.2.250.1.213.1.4.8"}});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        serde_json::json!({ "providers": [p] })
    }

    #[test]
    fn the_configuration_is_checked_and_secrets_come_from_the_environment() {
        // The secret from an environment variable (PATH is always set).
        let c = load(provider(
            serde_json::json!({"client_secret_env": "PATH", "scopes": ["profile"]}),
        ))
        .unwrap();
        assert_eq!(c.providers[0].client_secret, std::env::var("PATH").ok());
        assert_eq!(
            c.providers[0].scopes,
            vec!["openid", "profile"],
            "openid is always asked"
        );
        let e = load(provider(
            serde_json::json!({"client_secret_env": "CARNET_SURELY_UNSET_VARIABLE"}),
        ))
        .unwrap_err();
        assert!(e.contains("CARNET_SURELY_UNSET_VARIABLE is not set"), "{e}");
        assert!(load(provider(serde_json::json!({})))
            .unwrap_err()
            .contains("no client secret"));
        let e = load(provider(
            serde_json::json!({"client_secret": "s", "name": "Bad Name"}),
        ))
        .unwrap_err();
        assert!(e.contains("provider names"), "{e}");
        let e = load(provider(
            serde_json::json!({"client_secret": "s", "kind": "robot"}),
        ))
        .unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let e = load(provider(
            serde_json::json!({"client_secret": "s", "secret": "typo"}),
        ))
        .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
