//! Client keys for the authorization server's tests: a registered client's P-384 key pair
//! and the signed assertions it sends (`private_key_jwt`, ES384).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

/// A client's P-384 key pair: PKCS#8 for signing, and its public JWK.
pub(crate) struct ClientKey {
    pkcs8: Vec<u8>,
    kid: String,
}

impl ClientKey {
    pub(crate) fn new(kid: &str) -> ClientKey {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .unwrap()
                .as_ref()
                .to_vec();
        ClientKey {
            pkcs8,
            kid: kid.into(),
        }
    }

    pub(crate) fn jwk(&self) -> Value {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &self.pkcs8,
            &SystemRandom::new(),
        )
        .unwrap();
        let point = pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-384", "kid": self.kid, "alg": "ES384", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..49]), "y": URL_SAFE_NO_PAD.encode(&point[49..])})
    }

    pub(crate) fn assertion(&self, client_id: &str, aud: &str, exp_in: i64, jti: &str) -> String {
        self.assertion_for(client_id, client_id, aud, exp_in, jti)
    }

    /// An assertion whose `sub` is not the client (the JWT bearer grant's: a professional).
    pub(crate) fn assertion_for(
        &self,
        client_id: &str,
        sub: &str,
        aud: &str,
        exp_in: i64,
        jti: &str,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": client_id, "sub": sub, "aud": aud, "exp": now + exp_in, "jti": jti}),
            &EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}
