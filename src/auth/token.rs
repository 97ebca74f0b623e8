//! token: Carnet's access tokens. Signed JWTs (ES256, [`super::keys`]), short-lived, bound
//! to a client, a subject (patient, practitioner or the client itself), scopes and, for a
//! patient-context launch, the patient.

use super::keys::SigningKey;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

/// Who issues Carnet's tokens, and for whom they are meant (checked on every request).
pub const ISSUER: &str = "urn:carnet:authorization-server";
pub const AUDIENCE: &str = "urn:carnet:fhir";

/// The claims of an access token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// `Patient/ID`, `Practitioner/ID`, or `client/ID` for a backend service.
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    /// The patient in context (`launch/patient`), an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The grant the token was issued under (checked on every request: revoking the grant
    /// or suspending its client stops the token). None only for development tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Made by `carnet dev-token`: accepted only by `carnet serve --dev`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
    /// Purpose of use (IHE IUA style): `BTG` (break the glass) or `ETREAT` (SAMU regulation)
    /// open a record in an emergency; absent means treatment under the patient's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// The written reason of an emergency access (traced, told to the patient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_reason: Option<String>,
    /// The professional acts as the SAMU regulating doctor (centre 15).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub regulation: bool,
    /// Issued to Carnet's own patient portal (or a development token): only such a token
    /// lifts a block or unmasks a document.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_party: bool,
    /// The registered role of the client (`registry`, `establishment`; absent: an app or
    /// a backend service filing data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_role: Option<String>,
    /// A professional's token obtained by an establishment (JWT bearer grant): the
    /// establishment's Organization id, and its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub establishment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub establishment_name: Option<String>,
    /// The subject's name for people (what an access history shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Why a token was refused (told to the client in `WWW-Authenticate`; never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid: {0}")]
    Invalid(String),
    #[error("development tokens are accepted only by `carnet serve --dev`")]
    DevRefused,
}

/// Issues and verifies tokens with the server's key.
pub struct TokenService {
    key: SigningKey,
    /// Retired keys (`carnet keys rotate`): they verify what they signed, sign nothing.
    retired: Vec<SigningKey>,
    /// The development key, with `--dev` only: development tokens verify with it and
    /// nothing else, and nothing else verifies with it.
    dev_key: Option<SigningKey>,
    /// Tokens already verified, by SHA-256 of their text. An ES256 verification costs more
    /// than the rest of a read by id, and a token is presented on every request of its few
    /// minutes. Only successes are kept, expiry is checked again on every use, and the map
    /// is bounded (emptied when full).
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

/// Most verified tokens remembered at once.
const VERIFIED_CAPACITY: usize = 10_000;
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY: u64 = 30;

impl TokenService {
    pub fn new(key: SigningKey, dev_key: Option<SigningKey>) -> TokenService {
        TokenService {
            key,
            retired: Vec::new(),
            dev_key,
            verified: Default::default(),
        }
    }

    /// Also verifies tokens signed with these retired keys.
    pub fn with_retired(mut self, retired: Vec<SigningKey>) -> TokenService {
        self.retired = retired;
        self
    }

    /// The JWKS: the signing key and the retired keys still in use (not the dev key).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = std::iter::once(&self.key)
            .chain(&self.retired)
            .map(|k| &k.jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs `claims` (ES256, with the key id in the header): a development token with the
    /// development key, any other with the server's.
    pub fn issue(&self, claims: &Claims) -> Result<String, String> {
        let key = if claims.dev {
            self.dev_key
                .as_ref()
                .ok_or("no development key: development tokens need --dev")?
        } else {
            &self.key
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| e.to_string())
    }

    /// Signs any claims with the server's key (ID tokens).
    pub fn sign_value(&self, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key.encoding).map_err(|e| e.to_string())
    }

    /// Checks signature (ES256 with this server's key, nothing else: `alg: none` and
    /// HMAC-with-the-public-key tricks fail here), issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(claims) = cache.get(&digest) {
                if claims.exp + LEEWAY as i64 >= now {
                    return Ok(claims.clone());
                }
                cache.remove(&digest);
                return Err(TokenError::Expired);
            }
        }
        let claims = self.verify_signed(token)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CAPACITY {
            cache.clear();
        }
        cache.insert(digest, claims.clone());
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.algorithms = vec![Algorithm::ES256];
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY;
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("malformed token".into()))?
            .kid;
        let dev = self
            .dev_key
            .as_ref()
            .filter(|d| kid.as_deref() == Some(&d.kid));
        let key = dev.unwrap_or_else(|| {
            std::iter::once(&self.key)
                .chain(&self.retired)
                .find(|k| kid.as_deref() == Some(&k.kid))
                .unwrap_or(&self.key)
        });
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                // Say why when it is a development token on a server without --dev.
                ErrorKind::InvalidSignature if self.dev_key.is_none() && claims_dev(token) => {
                    TokenError::DevRefused
                }
                ErrorKind::InvalidSignature => {
                    TokenError::Invalid("signature does not verify".into())
                }
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience".into()),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer".into()),
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("algorithm not accepted".into()),
                _ => TokenError::Invalid("malformed token".into()),
            }
        })?;
        if data.claims.dev != dev.is_some() {
            return Err(TokenError::Invalid(
                "the token's kind does not match its key".into(),
            ));
        }
        Ok(data.claims)
    }
}

/// Whether the (unverified) payload of `token` says `dev: true`: only to word a refusal.
fn claims_dev(token: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["dev"] == serde_json::Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_signed_before_a_rotation_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let before = TokenService::new(SigningKey::load_or_create(dir.path()).unwrap(), None);
        let old_token = before.issue(&claims(300)).unwrap();
        crate::auth::keys::rotate(dir.path()).unwrap();
        let after = TokenService::new(SigningKey::load_or_create(dir.path()).unwrap(), None)
            .with_retired(crate::auth::keys::load_retired(dir.path()).unwrap());
        assert_eq!(after.verify(&old_token).unwrap().sub, "Patient/p1");
        let new_token = after.issue(&claims(300)).unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&new_token).unwrap().kid,
            jsonwebtoken::decode_header(&old_token).unwrap().kid
        );
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2);
        // Without the retired key, the old token is refused.
        let forgetful = TokenService::new(SigningKey::load_or_create(dir.path()).unwrap(), None);
        assert!(forgetful.verify(&old_token).is_err());
    }
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn claims(exp_in: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "Patient/p1".into(),
            client_id: "app".into(),
            scope: "patient/*.rs".into(),
            patient: Some("p1".into()),
            iat: now,
            exp: now + exp_in,
            jti: "j".into(),
            grant: Some("g".into()),
            dev: false,
            purpose_of_use: None,
            purpose_reason: None,
            regulation: false,
            first_party: false,
            ..Default::default()
        }
    }

    fn service(accept_dev: bool) -> (tempfile::TempDir, TokenService) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let dev = accept_dev.then(|| SigningKey::load_or_create_dev(dir.path()).unwrap());
        (dir, TokenService::new(key, dev))
    }

    #[test]
    fn a_token_round_trips_and_forgeries_fail() {
        let (_d, tokens) = service(false);
        let t = tokens.issue(&claims(300)).unwrap();
        assert_eq!(tokens.verify(&t).unwrap(), claims(300));
        assert_eq!(tokens.verify(&t).unwrap(), claims(300), "from the cache");
        // A token verified while valid is refused once it has expired, cache or not.
        let short = tokens.issue(&claims(-29)).unwrap();
        assert!(tokens.verify(&short).is_ok(), "within the leeway");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(tokens.verify(&short), Err(TokenError::Expired));
        // Expired (beyond the leeway).
        let old = tokens.issue(&claims(-120)).unwrap();
        assert_eq!(tokens.verify(&old), Err(TokenError::Expired));
        // Another server's key.
        let (_d2, other) = service(false);
        assert!(matches!(
            tokens.verify(&other.issue(&claims(300)).unwrap()),
            Err(TokenError::Invalid(_))
        ));
        // alg none: the same claims, unsigned.
        let body = t.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(matches!(tokens.verify(&none), Err(TokenError::Invalid(_))));
        // Wrong audience.
        let mut c = claims(300);
        c.aud = "https://elsewhere.example".into();
        assert!(matches!(
            tokens.verify(&tokens.issue(&c).unwrap()),
            Err(TokenError::Invalid(_))
        ));
        // A development token on a server without --dev (same data directory).
        let mut c = claims(300);
        c.dev = true;
        assert!(
            tokens.issue(&c).is_err(),
            "no development key without --dev"
        );
        let (dir, _) = (_d, ());
        let with_dev = TokenService::new(
            SigningKey::load_or_create(dir.path()).unwrap(),
            Some(SigningKey::load_or_create_dev(dir.path()).unwrap()),
        );
        let dev_token = with_dev.issue(&c).unwrap();
        assert_eq!(with_dev.verify(&dev_token).unwrap(), c);
        assert_eq!(tokens.verify(&dev_token), Err(TokenError::DevRefused));
        // The server's key never vouches for a development token, nor the reverse.
        let forged = {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(with_dev.key().kid.clone());
            jsonwebtoken::encode(&header, &c, &with_dev.key().encoding).unwrap()
        };
        assert!(matches!(
            with_dev.verify(&forged),
            Err(TokenError::Invalid(_))
        ));
    }
}
