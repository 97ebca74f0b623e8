//! SMART Backend Services: a hospital system registered with `carnet client add` (its JWKS)
//! obtains a token with a signed assertion (`client_credentials`, `private_key_jwt`,
//! ES384), reads with its `system/` scopes, and every attack on the exchange is refused.

use crate::both_backends;
use crate::helpers::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

async fn request_token(
    app: &TestApp,
    token_url: &str,
    assertion: &str,
    scope: &str,
) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let _ = app;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn a_backend_client_reads_with_system_scopes(backend: Backend) {
    let app = spawn_app(backend).await;
    let patient = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Hôpital"}]}))
        .await;
    let pid = patient["id"].as_str().unwrap().to_string();
    // Discovery says where the token endpoint is, and what it accepts.
    let conf: Value = reqwest::get(app.url(".well-known/smart-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_url = conf["token_endpoint"].as_str().unwrap().to_string();
    assert!(conf["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("client_credentials")));
    assert!(conf["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES384")));
    // The CapabilityStatement points at the same token endpoint.
    let meta: Value = reqwest::get(app.url("metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uris = &meta["rest"][0]["security"]["extension"][0]["extension"];
    let token_uri = uris
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "token")
        .unwrap();
    assert_eq!(token_uri["valueUri"], token_url.as_str());
    // Registration through the admin command.
    let key = ClientKey::new("his-key-1");
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    carnet_client(
        &app,
        &[
            "add",
            "--client-id",
            "his",
            "--name",
            "Hospital information system",
            "--scope",
            "system/Patient.rs system/DocumentReference.rs",
            "--jwks-file",
            jwks_path.to_str().unwrap(),
        ],
    );
    assert!(carnet_client(&app, &["list"]).contains("his\tactive\tconfidential"));
    // Token: the registered scopes only (Immunization was asked for, not registered).
    let assertion = key.assertion("his", &token_url, 120, "jti-1");
    let (status, body) = request_token(
        &app,
        &token_url,
        &assertion,
        "system/Patient.rs system/Immunization.rs",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token_type"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("bearer"));
    assert_eq!(body["scope"], "system/Patient.rs");
    assert!(body["expires_in"].as_i64().unwrap() <= 300);
    let access = body["access_token"].as_str().unwrap().to_string();
    // The token is signed with the key published at the JWKS endpoint.
    let kid = jsonwebtoken::decode_header(&access).unwrap().kid.unwrap();
    let jwks: Value = reqwest::get(conf["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    let his = client_with(&access);
    let res = his
        .get(app.url(&format!("Patient/{pid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = his.get(app.url("Immunization")).send().await.unwrap();
    assert_eq!(res.status(), 403, "not granted");
    // Attacks on the exchange: each is refused as invalid_client, and gets no token.
    let other_key = ClientKey::new("his-key-1");
    let cases = [
        (assertion.clone(), "replayed assertion"),
        (key.assertion("his", "https://elsewhere.example/token", 120, "jti-2"), "wrong audience"),
        (other_key.assertion("his", &token_url, 120, "jti-3"), "signed by another key"),
        (key.assertion("nobody", &token_url, 120, "jti-4"), "unknown client"),
        (key.assertion("his", &token_url, 3600, "jti-5"), "lives an hour"),
        (key.assertion("his", &token_url, -600, "jti-6"), "expired"),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &json!({"iss": "his", "sub": "his", "aud": token_url, "exp": 4_000_000_000i64, "jti": "jti-7"}),
                &EncodingKey::from_secret(b"guess"),
            )
            .unwrap(),
            "HS256",
        ),
    ];
    for (bad, why) in cases {
        let (status, body) = request_token(&app, &token_url, &bad, "system/Patient.rs").await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"], "invalid_client", "{why}");
        assert!(body.get("access_token").is_none());
    }
    // Another grant type is not offered.
    let res = reqwest::Client::new()
        .post(&token_url)
        .form(&[("grant_type", "password"), ("username", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["error"], "unsupported_grant_type");
    // Suspension stops the token already issued at once, and no new one is given.
    carnet_client(&app, &["suspend", "his"]);
    let res = his
        .get(app.url(&format!("Patient/{pid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (status, _) = request_token(
        &app,
        &token_url,
        &key.assertion("his", &token_url, 120, "jti-8"),
        "system/Patient.rs",
    )
    .await;
    assert_eq!(status, 401);
    carnet_client(&app, &["resume", "his"]);
    let res = his
        .get(app.url(&format!("Patient/{pid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "resumed");
}

both_backends!(a_backend_client_reads_with_system_scopes);
