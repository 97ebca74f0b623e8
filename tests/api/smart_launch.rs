//! SMART App Launch (standalone) against the running server, with real upstream OpenID
//! Connect providers (`oidc-provider`, one standing in for FranceConnect, one for Pro Santé
//! Connect): an app registered through `carnet client add` is driven like a browser would
//! (authorize → upstream login → consent → code → token → FHIR read), then refreshes,
//! revokes, and every attack of the issue is tried and refused.

use crate::both_backends;
use crate::helpers::*;
use crate::oidc::Provider;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::process::Command;

const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
const IDNPS: &str = "urn:oid:1.2.250.1.71.4.2.1";
const APP: &str = "carnet-test-app";
const APP_REDIRECT: &str = "http://127.0.0.1:9/app/callback";
const APP_SCOPES: &str =
    "openid fhirUser launch/patient offline_access online_access patient/*.rs user/*.rs";

struct Env {
    app: TestApp,
    origin: String,
    alice: String,
    bob: String,
    house: String,
    _fc: Provider,
    _psc: Provider,
    _config: tempfile::NamedTempFile,
}

/// Carnet with two upstream providers, two patients and a professional on record, and a
/// public app registered.
async fn setup(backend: Backend) -> Env {
    // Bound now and handed to the server: the providers must know its port first.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}");
    let fc = Provider::start(
        "carnet",
        "fc-secret",
        &format!("{origin}/auth/callback/franceconnect"),
        json!({
            "alice": {"given_name": "Alice", "family_name": "Martin", "birthdate": "1980-01-02", "gender": "female", "ins": "280017512345678"},
            "stranger": {"given_name": "Inconnu", "family_name": "Personne", "ins": "199999999999999"},
        }),
        &[],
    );
    let psc = Provider::start(
        "carnet-pro",
        "psc-secret",
        &format!("{origin}/auth/callback/prosanteconnect"),
        json!({"house": {"given_name": "Grégoire", "family_name": "Maison", "SubjectNameID": "810001234567"},
               "regul": {"given_name": "Rémi", "family_name": "Centre15", "SubjectNameID": "810009999999",
                         "SubjectRole": ["SAMU-REGULATION"]}}),
        &["eidas1"],
    );
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        json!({"providers": [
            {"name": "franceconnect", "label": "FranceConnect", "kind": "patient",
             "issuer": fc.issuer, "client_id": "carnet", "client_secret": "fc-secret",
             "identifier": {"claim": "ins", "system": INS}},
            {"name": "prosanteconnect", "label": "Pro Santé Connect", "kind": "practitioner",
             "issuer": psc.issuer, "client_id": "carnet-pro", "client_secret": "psc-secret",
             "acr_values": ["eidas1"],
             "identifier": {"claim": "SubjectNameID", "system": IDNPS},
             "regulation": {"claim": "SubjectRole", "value": "SAMU-REGULATION"}},
        ]})
        .to_string(),
    )
    .unwrap();
    let path = config.path().to_path_buf();
    let app = spawn_on(backend, Some(listener), move |args| {
        args.identity_config = Some(path);
    })
    .await;
    let alice = app
        .create(&json!({"resourceType": "Patient", "identifier": [{"system": INS, "value": "280017512345678"}], "name": [{"family": "Martin", "given": ["Alice"]}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = app
        .create(&json!({"resourceType": "Patient", "identifier": [{"system": INS, "value": "180017512345678"}], "name": [{"family": "Durand"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let house = app
        .create(&json!({"resourceType": "Practitioner", "identifier": [{"system": IDNPS, "value": "810001234567"}], "name": [{"family": "Maison"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    carnet_client(
        &app,
        &[
            "add",
            "--client-id",
            APP,
            "--name",
            "Mon Suivi Santé",
            "--scope",
            APP_SCOPES,
            "--redirect-uri",
            APP_REDIRECT,
        ],
    );
    Env {
        app,
        origin,
        alice,
        bob,
        house,
        _fc: fc,
        _psc: psc,
        _config: config,
    }
}

/// A browser: cookies kept, redirects followed, except to the app's redirect URI (where
/// the app would take over).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().as_str().starts_with(APP_REDIRECT) || attempt.previous().len() > 20 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap()
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    Pkce {
        challenge: URL_SAFE_NO_PAD.encode(digest),
        verifier,
    }
}

fn form_action(html: &str) -> String {
    let re = regex::Regex::new(r#"<form[^>]*action="([^"]+)""#).unwrap();
    re.captures(html).expect("a form")[1].replace("&amp;", "&")
}

fn hidden(html: &str, name: &str) -> String {
    let re = regex::Regex::new(&format!(r#"name="{name}" value="([^"]*)""#)).unwrap();
    re.captures(html)
        .unwrap_or_else(|| panic!("no {name} in {html}"))[1]
        .to_string()
}

fn authorize_url(env: &Env, scope: &str, p: &Pkce, state: &str) -> String {
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", APP_REDIRECT),
        ("scope", scope),
        ("state", state),
        ("nonce", "n-0S6_WzA2Mj"),
        ("aud", env.app.base.as_str()),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    format!("{}/auth/authorize?{q}", env.origin)
}

/// Where a browser flow ended: a page (status, body) or the app's redirect URI.
enum Landing {
    Page(u16, String),
    App(url::Url),
}

async fn land(res: reqwest::Response) -> Landing {
    let status = res.status().as_u16();
    if status == 303 || status == 302 {
        let to = res.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with(APP_REDIRECT), "stopped at {to}");
        return Landing::App(url::Url::parse(&to).unwrap());
    }
    Landing::Page(status, res.text().await.unwrap())
}

/// The app sends the browser to `/auth/authorize`: where it lands.
async fn authorize(env: &Env, b: &reqwest::Client, scope: &str, p: &Pkce, state: &str) -> Landing {
    land(
        b.get(authorize_url(env, scope, p, state))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Drives the upstream pages (login as `login`, consent) until Carnet's own consent screen
/// or the app's redirect URI.
async fn through_upstream(b: &reqwest::Client, start: Landing, login: &str) -> Landing {
    let mut at = start;
    for _ in 0..6 {
        let Landing::Page(200, html) = &at else {
            return at;
        };
        let next = if html.contains(r#"name="prompt" value="login""#) {
            b.post(form_action(html)).form(&[
                ("prompt", "login"),
                ("login", login),
                ("password", "x"),
            ])
        } else if html.contains(r#"name="prompt" value="consent""#) {
            b.post(form_action(html)).form(&[("prompt", "consent")])
        } else if html.contains("Se connecter avec") {
            return at;
        } else {
            return at; // Carnet's consent screen, or an error page
        };
        at = land(next.send().await.unwrap()).await;
    }
    at
}

/// Approves (or refuses) on Carnet's consent screen.
async fn decide(b: &reqwest::Client, consent_html: &str, decision: &str) -> Landing {
    let res = b
        .post(form_action(consent_html))
        .form(&[
            ("csrf", hidden(consent_html, "csrf").as_str()),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    land(res).await
}

/// A whole patient launch: returns the code, the state and `iss` the app received.
async fn launch_as(
    env: &Env,
    b: &reqwest::Client,
    login: &str,
    scope: &str,
    p: &Pkce,
) -> (String, Value) {
    let start = authorize(env, b, scope, p, "st-1").await;
    let Landing::Page(200, consent) = through_upstream(b, start, login).await else {
        panic!("no consent screen")
    };
    assert!(
        consent.contains("Mon Suivi Santé"),
        "the consent screen names the app"
    );
    let Landing::App(url) = decide(b, &consent, "approve").await else {
        panic!("not back to the app")
    };
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    (q["code"].clone(), json!(q))
}

async fn token(env: &Env, form: &[(&str, &str)]) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/auth/token", env.origin))
        .form(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn exchange(env: &Env, code: &str, verifier: &str) -> (u16, Value) {
    token(
        env,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", verifier),
            ("client_id", APP),
        ],
    )
    .await
}

async fn refresh(env: &Env, refresh_token: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", APP),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    token(env, &form).await
}

/// What the introspection endpoint says of `token` to `client_id`.
async fn introspect(env: &Env, token: &str, client_id: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/auth/introspect", env.origin))
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The link of the choice page that logs in with `provider`.
fn provider_link(choice: &str, provider: &str) -> String {
    regex::Regex::new(&format!(r#"href="([^"]*/auth/login/{provider}[^"]*)""#))
        .unwrap()
        .captures(choice)
        .unwrap_or_else(|| panic!("no {provider} link in {choice}"))[1]
        .replace("&amp;", "&")
}

async fn get_status(env: &Env, token: &str, path: &str) -> u16 {
    client_with(token)
        .get(env.app.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn jwt_claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn a_patient_launches_an_app_end_to_end(backend: Backend) {
    let env = setup(backend).await;
    let base = env.app.base.clone();
    // Discovery tells the app where to go.
    let conf: Value = reqwest::get(format!("{base}/.well-known/smart-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        conf["authorization_endpoint"],
        json!(format!("{}/auth/authorize", env.origin))
    );
    assert_eq!(conf["code_challenge_methods_supported"], json!(["S256"]));
    let b = browser();
    let p = pkce();
    let scope = "openid fhirUser launch/patient offline_access patient/*.rs";
    // The patient provider is chosen for a patient launch; the upstream login, then Carnet's
    // consent screen, in words.
    let start = authorize(&env, &b, scope, &p, "st-1").await;
    let Landing::Page(200, consent) = through_upstream(&b, start, "alice").await else {
        panic!("no consent screen")
    };
    assert!(
        consent.contains("Consulter et rechercher toutes les données de votre dossier"),
        "{consent}"
    );
    assert!(consent.contains("Garder cet accès même quand vous"));
    let Landing::App(back) = decide(&b, &consent, "approve").await else {
        panic!()
    };
    let q: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], format!("{}/auth", env.origin));
    // Code → tokens, with the patient in context and an ID token naming the user.
    let (status, body) = exchange(&env, &q["code"], &p.verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], json!(env.alice));
    assert_eq!(body["scope"], json!(scope));
    let id_token = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(
        id_token["fhirUser"],
        json!(format!("{base}/Patient/{}", env.alice))
    );
    assert_eq!(id_token["aud"], json!(APP));
    assert_eq!(id_token["nonce"], json!("n-0S6_WzA2Mj"));
    assert_eq!(id_token["iss"], conf["issuer"]);
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh1 = body["refresh_token"].as_str().unwrap().to_string();
    // The FHIR read: own record yes, another patient's no (as if absent).
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        200
    );
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.bob)).await,
        404
    );
    // Introspection by the app.
    let intro: Value = introspect(&env, &access, APP).await;
    assert_eq!(intro["active"], json!(true));
    assert_eq!(intro["patient"], json!(env.alice));
    // Refresh rotation: the new refresh token works, the old one is spent.
    let (status, r2) = refresh(&env, &refresh1, None).await;
    assert_eq!(status, 200, "{r2}");
    let refresh2 = r2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh1);
    let access2 = r2["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get_status(&env, &access2, &format!("Patient/{}", env.alice)).await,
        200
    );
    // A narrower scope on refresh is fine; a wider one (escalation) is refused.
    let (status, r3) = refresh(&env, &refresh2, Some("patient/Patient.rs user/*.cruds")).await;
    assert_eq!(
        (status, r3["error"].as_str()),
        (400, Some("invalid_scope")),
        "{r3}"
    );
    let (status, r3) = refresh(&env, &refresh2, Some("patient/Patient.r")).await;
    assert_eq!(status, 200, "{r3}");
    assert_eq!(r3["scope"], json!("patient/Patient.r"));
    let narrow = r3["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get_status(&env, &narrow, "Immunization?_count=1").await,
        403
    );
    let refresh3 = r3["refresh_token"].as_str().unwrap().to_string();
    // Reuse of a spent refresh token (a stolen copy): refused, and the whole grant is
    // revoked — the legitimate holder's tokens stop too.
    let (status, reused) = refresh(&env, &refresh1, None).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        get_status(&env, &access2, &format!("Patient/{}", env.alice)).await,
        401
    );
    let (status, _) = refresh(&env, &refresh3, None).await;
    assert_eq!(status, 400, "the grant is revoked");
    // Revocation of a fresh launch's refresh token stops its access token at once.
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (_, body) = exchange(&env, &code, &p.verifier).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        200
    );
    let res = reqwest::Client::new()
        .post(format!("{}/auth/revoke", env.origin))
        .form(&[
            ("token", body["refresh_token"].as_str().unwrap()),
            ("client_id", APP),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        401
    );
    let intro: Value = introspect(&env, &access, APP).await;
    assert_eq!(intro, json!({"active": false}));
}

async fn a_professional_logs_in_with_the_second_provider(backend: Backend) {
    let env = setup(backend).await;
    let b = browser();
    let p = pkce();
    // No patient context asked: both providers are offered.
    let start = authorize(&env, &b, "openid fhirUser user/*.rs", &p, "pro").await;
    let Landing::Page(200, choice) = start else {
        panic!()
    };
    assert!(
        choice.contains("Se connecter avec FranceConnect")
            && choice.contains("Se connecter avec Pro Santé Connect")
    );
    let link = provider_link(&choice, "prosanteconnect");
    let start = land(b.get(link).send().await.unwrap()).await;
    let Landing::Page(200, consent) = through_upstream(&b, start, "house").await else {
        panic!()
    };
    assert!(
        consent.contains(&format!("Practitioner/{}", env.house)),
        "{consent}"
    );
    assert!(consent.contains("des dossiers auxquels vous avez accès"));
    let Landing::App(back) = decide(&b, &consent, "approve").await else {
        panic!()
    };
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    // The professional declares an emergency for Bob at the token endpoint (IHE IUA
    // purpose of use): without a written reason it is refused, and the code is not spent.
    let vaccination = env
        .app
        .create(&json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": "DTCaP"}, "patient": {"reference": format!("Patient/{}", env.bob)},
            "occurrenceDateTime": "2025-01-01"}))
        .await;
    let vaccination = format!("Immunization/{}", vaccination["id"].as_str().unwrap());
    let with_purpose = |extra: Vec<(&'static str, String)>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", APP_REDIRECT.to_string()),
            ("code_verifier", p.verifier.clone()),
            ("client_id", APP.to_string()),
        ];
        form.extend(extra);
        form
    };
    let form = with_purpose(vec![
        ("purpose_of_use", "BTG".into()),
        ("patient", env.bob.clone()),
    ]);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token(&env, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let form = with_purpose(vec![
        ("purpose_of_use", "BTG".into()),
        ("purpose_reason", "arrêt cardiaque".into()),
        ("patient", env.bob.clone()),
    ]);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token(&env, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], json!(env.bob));
    assert_eq!(body["purpose_of_use"], "BTG");
    // The emergency opens Bob's record (the professional holds no authorisation), and the
    // access is traced with its reason.
    let emergency = body["access_token"].as_str().unwrap();
    assert_eq!(get_status(&env, emergency, &vaccination).await, 200);
    let (_, trail) = env
        .app
        .get_json(&format!("AuditEvent?entity={vaccination}"))
        .await;
    let read = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|a| a["subtype"][0]["code"] == "read")
        .expect("the emergency read is traced");
    let purpose = &read["purposeOfEvent"][0];
    assert_eq!(purpose["coding"][0]["code"], "BTG", "{trail}");
    assert_eq!(purpose["text"], "arrêt cardiaque");
    assert!(
        body.get("refresh_token").is_none(),
        "no offline_access/online_access asked"
    );
    let id_token = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(
        id_token["fhirUser"],
        json!(format!("{}/Practitioner/{}", env.app.base, env.house))
    );
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(
        get_status(&env, access, &format!("Patient/{}", env.bob)).await,
        200
    );
    // The same professional refuses on the consent screen: the app is told access_denied.
    let b = browser();
    let p = pkce();
    let start = authorize(&env, &b, "openid user/*.rs", &p, "pro2").await;
    let Landing::Page(200, choice) = start else {
        panic!()
    };
    let link = provider_link(&choice, "prosanteconnect");
    let start = land(b.get(link).send().await.unwrap()).await;
    let Landing::Page(200, consent) = through_upstream(&b, start, "house").await else {
        panic!()
    };
    let Landing::App(back) = decide(&b, &consent, "deny").await else {
        panic!()
    };
    let q: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "pro2");
    assert!(!q.contains_key("code"));
}

async fn attacks_on_the_authorization_flow_are_refused(backend: Backend) {
    let env = setup(backend).await;
    let scope = "openid launch/patient patient/*.rs";
    // An unknown person (valid upstream login, no record in Carnet): 403, no record created.
    let b = browser();
    let p = pkce();
    let start = authorize(&env, &b, scope, &p, "s").await;
    let Landing::Page(403, page) = through_upstream(&b, start, "stranger").await else {
        panic!("no 403")
    };
    assert!(page.contains("Aucun dossier Carnet"), "{page}");
    let all: Value = env
        .app
        .client
        .get(env.app.url("Patient?_summary=count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["total"], json!(2), "no silent new record");
    // Redirect URI not registered: shown in the browser, never redirected there.
    let p = pkce();
    let evil = authorize_url(&env, scope, &p, "s")
        .replace("127.0.0.1%3A9%2Fapp%2Fcallback", "evil.example%2Fcb");
    let res = browser().get(evil).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // Unregistered app: 400 page, no redirect.
    let res = browser()
        .get(authorize_url(&env, scope, &p, "s").replace(APP, "not-registered"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // No PKCE: back to the app with invalid_request.
    let no_pkce = authorize_url(&env, scope, &p, "s").replace("&code_challenge_method=S256", "");
    let Landing::App(url) = land(browser().get(no_pkce).send().await.unwrap()).await else {
        panic!()
    };
    assert!(url.query().unwrap().contains("error=invalid_request"));
    // A code exchanged with the wrong PKCE verifier: refused, and the code is spent.
    let b = browser();
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (status, body) = exchange(&env, &code, &pkce().verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _) = exchange(&env, &code, &p.verifier).await;
    assert_eq!(status, 400, "a code survives no failed attempt");
    // A reused code: refused, and the tokens of the first exchange are revoked.
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (status, first) = exchange(&env, &code, &p.verifier).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(
        get_status(&env, access, &format!("Patient/{}", env.alice)).await,
        200
    );
    let (status, again) = exchange(&env, &code, &p.verifier).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        get_status(&env, access, &format!("Patient/{}", env.alice)).await,
        401
    );
    // Two exchanges of one code at the same moment: exactly one gets tokens, and as the code
    // was presented twice, what it got is revoked too.
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (one, two) = futures_util::join!(
        exchange(&env, &code, &p.verifier),
        exchange(&env, &code, &p.verifier)
    );
    let mut statuses = [one.0, two.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{one:?} {two:?}");
    let winner = if one.0 == 200 { &one.1 } else { &two.1 };
    let access = winner["access_token"].as_str().unwrap();
    assert_eq!(
        get_status(&env, access, &format!("Patient/{}", env.alice)).await,
        401
    );
    // Another redirect_uri at the exchange: refused.
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (status, _) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", &p.verifier),
            ("client_id", APP),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // Scopes beyond the registration are not granted (system/ never in this flow).
    let p = pkce();
    let (code, _) = launch_as(
        &env,
        &b,
        "alice",
        "openid launch/patient patient/*.rs patient/*.cruds system/*.cruds",
        &p,
    )
    .await;
    let (status, body) = exchange(&env, &code, &p.verifier).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["scope"],
        json!("openid launch/patient patient/*.rs"),
        "cruds and system/ were never registered"
    );
    // A suspended app: its tokens stop at once, it cannot start a new authorization.
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (_, body) = exchange(&env, &code, &p.verifier).await;
    let access = body["access_token"].as_str().unwrap();
    carnet_client(&env.app, &["suspend", APP]);
    assert_eq!(
        get_status(&env, access, &format!("Patient/{}", env.alice)).await,
        401
    );
    let res = browser()
        .get(authorize_url(&env, scope, &pkce(), "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A patient token never reaches another patient, even by search.
    carnet_client(&env.app, &["resume", APP]);
    assert_eq!(
        get_status(&env, access, &format!("Patient/{}", env.bob)).await,
        404
    );
    let found: Value = client_with(access)
        .get(env.app.url("Patient"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], json!(1));
}

/// What the browser binding, client binding and login-identifier rules stop.
async fn tokens_and_logins_stay_with_their_owner(backend: Backend) {
    let env = setup(backend).await;
    let scope = "openid launch/patient patient/*.rs";
    // Login CSRF / a stolen consent page: the decision posted from another browser (no
    // binding cookie) is refused, even with the right anti-forgery value.
    let b = browser();
    let p = pkce();
    let start = authorize(&env, &b, scope, &p, "s").await;
    let Landing::Page(200, consent) = through_upstream(&b, start, "alice").await else {
        panic!()
    };
    let res = browser()
        .post(form_action(&consent))
        .form(&[
            ("csrf", hidden(&consent, "csrf").as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // The right browser with a wrong anti-forgery value: refused too; then the real decision works.
    let res = b
        .post(form_action(&consent))
        .form(&[("csrf", "forged"), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let Landing::App(_) = decide(&b, &consent, "approve").await else {
        panic!()
    };
    // Another registered app can neither introspect nor revoke this app's tokens.
    carnet_client(
        &env.app,
        &[
            "add",
            "--client-id",
            "other-app",
            "--name",
            "Autre",
            "--scope",
            "patient/*.rs",
            "--redirect-uri",
            "http://127.0.0.1:9/other",
        ],
    );
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (_, body) = exchange(&env, &code, &p.verifier).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let intro: Value = introspect(&env, &access, "other-app").await;
    assert_eq!(intro, json!({"active": false}));
    let res = http
        .post(format!("{}/auth/revoke", env.origin))
        .form(&[("token", access.as_str()), ("client_id", "other-app")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "revocation answers alike");
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        200,
        "still valid"
    );
    // Revoking the access token itself (its own app) stops it.
    let res = http
        .post(format!("{}/auth/revoke", env.origin))
        .form(&[("token", access.as_str()), ("client_id", APP)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        401
    );
    // A confidential app must authenticate with its key: its client_id alone is refused.
    let key = ClientKey::new("conf-1");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    carnet_client(
        &env.app,
        &[
            "add",
            "--client-id",
            "conf-app",
            "--name",
            "Logiciel",
            "--scope",
            "openid launch/patient patient/*.rs",
            "--redirect-uri",
            APP_REDIRECT,
            "--jwks-file",
            jwks.to_str().unwrap(),
        ],
    );
    let (status, body) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", "whatever"),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", &p.verifier),
            ("client_id", "conf-app"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // ... and a code issued to one app is useless to another.
    let p = pkce();
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let assertion = key.assertion(
        "conf-app",
        &format!("{}/auth/token", env.origin),
        60,
        "conf-jti-1",
    );
    let (status, body) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", &p.verifier),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // Redirect URIs are checked at registration.
    let out = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args([
            "client",
            "add",
            "--client-id",
            "bad",
            "--name",
            "x",
            "--scope",
            "patient/*.rs",
            "--redirect-uri",
            "http://evil.example/cb",
            "--database-url",
        ])
        .arg(env.app.args.database_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The identifiers that link a login to a record cannot be rewritten by a professional
    // (or the patient): else anyone could make a record answer to their own login.
    let pro = client_with(&dev_token(
        &env.app.args.data_dir,
        &carnet::auth::DevSubject::Practitioner(env.house.clone()),
        None,
    ));
    // Dr House is Bob's médecin traitant (recorded by the registry): his record is open.
    let (_, mut bob) = env.app.get_json(&format!("Patient/{}", env.bob)).await;
    bob["generalPractitioner"] = json!([{"reference": format!("Practitioner/{}", env.house)}]);
    let res = env.app.put(&format!("Patient/{}", env.bob), &bob).await;
    assert_eq!(res.status(), 200);
    let mut bob: Value = pro
        .get(env.app.url(&format!("Patient/{}", env.bob)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bob["identifier"] = json!([{"system": INS, "value": "280017512345678"}]);
    let res = pro
        .put(env.app.url(&format!("Patient/{}", env.bob)))
        .header("Content-Type", "application/fhir+json")
        .body(bob.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let created = pro.post(env.app.url("Patient")).header("Content-Type", "application/fhir+json").body(json!({"resourceType": "Patient", "identifier": [{"system": INS, "value": "280017512345678"}]}).to_string()).send().await.unwrap();
    assert_eq!(created.status(), 403);
    // Other fields stay writable, and the login still finds the one right record.
    bob["identifier"] = json!([{"system": INS, "value": "180017512345678"}]);
    bob["gender"] = json!("male");
    let res = pro
        .put(env.app.url(&format!("Patient/{}", env.bob)))
        .header("Content-Type", "application/fhir+json")
        .body(bob.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let p = pkce();
    let (code, _) = launch_as(&env, &browser(), "alice", scope, &p).await;
    let (_, body) = exchange(&env, &code, &p.verifier).await;
    assert_eq!(body["patient"], json!(env.alice));
}

/// Linking a login to its record is an access of Carnet's own, decided and traced in the
/// patient's record: the patient sees when they logged in; their médecin traitant, who sees
/// every other trace of the record, does not (it would tell them when the patient logs in).
async fn a_login_is_traced_for_the_patient_alone(backend: Backend) {
    let env = setup(backend).await;
    let mut alice: Value = env.app.get_json(&format!("Patient/{}", env.alice)).await.1;
    alice["generalPractitioner"] = json!([{"reference": format!("Practitioner/{}", env.house)}]);
    let res = env.app.put(&format!("Patient/{}", env.alice), &alice).await;
    assert_eq!(res.status(), 200);
    let b = browser();
    let p = pkce();
    launch_as(
        &env,
        &b,
        "alice",
        "openid fhirUser launch/patient patient/*.rs",
        &p,
    )
    .await;
    let by_carnet = |bundle: &Value| -> usize {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["resource"]["agent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| {
                        a["who"]["identifier"]["system"] == "urn:carnet:client"
                            && a["who"]["identifier"]["value"] == "carnet"
                    })
            })
            .count()
    };
    let query = format!("AuditEvent?patient={}&_count=100", env.alice);
    let (status, all) = env.app.get_json(&query).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(by_carnet(&all), 1, "one trace of the login linking: {all}");
    let data = &env.app.args.data_dir;
    let holder = client_with(&dev_token(
        data,
        &carnet::auth::DevSubject::Patient(env.alice.clone()),
        None,
    ));
    let mine: Value = holder
        .get(format!("{}/{query}", env.app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_carnet(&mine), 1, "the patient sees it: {mine}");
    let mt = client_with(&dev_token(
        data,
        &carnet::auth::DevSubject::Practitioner(env.house.clone()),
        None,
    ));
    let res = mt
        .get(format!("{}/{query}", env.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let theirs: Value = res.json().await.unwrap();
    assert!(
        theirs["total"].as_i64().unwrap_or(0) > 0,
        "the médecin traitant sees the record's other traces: {theirs}"
    );
    assert_eq!(by_carnet(&theirs), 0, "but not the login's: {theirs}");
}

/// The patient lists the apps they connected (name, scopes, since when) through the
/// portal's endpoint, revokes one, and its tokens stop at once; a third-party app's own
/// token cannot list the others.
async fn the_patient_lists_and_revokes_connected_apps(backend: Backend) {
    let env = setup(backend).await;
    let b = browser();
    let p = pkce();
    let scope = "openid fhirUser launch/patient offline_access patient/*.rs";
    let (code, _) = launch_as(&env, &b, "alice", scope, &p).await;
    let (status, body) = exchange(&env, &code, &p.verifier).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh_token = body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        200
    );
    let apps_url = format!("{}/auth/apps", env.origin);
    // The app's own token: not the portal.
    let res = client_with(&access).get(&apps_url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    // The patient in Carnet's portal (a first-party token).
    let portal = client_with(&dev_token(
        &env.app.args.data_dir,
        &carnet::auth::DevSubject::Patient(env.alice.clone()),
        None,
    ));
    let res = portal.get(&apps_url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let listed: Value = res.json().await.unwrap();
    let apps = listed["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{listed}");
    assert_eq!(apps[0]["client_id"], APP);
    assert_eq!(apps[0]["name"], "Mon Suivi Santé");
    assert!(apps[0]["scope"].as_str().unwrap().contains("patient/*.rs"));
    assert!(apps[0]["connected_since"]
        .as_str()
        .unwrap()
        .starts_with("20"));
    // Another patient sees none of it.
    let bob = client_with(&dev_token(
        &env.app.args.data_dir,
        &carnet::auth::DevSubject::Patient(env.bob.clone()),
        None,
    ));
    let theirs: Value = bob
        .get(&apps_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["apps"], json!([]));
    let res = bob
        .delete(format!("{apps_url}/{APP}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        200
    );
    // Revoked: its access token stops at once, its refresh token is refused.
    let res = portal
        .delete(format!("{apps_url}/{APP}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(
        get_status(&env, &access, &format!("Patient/{}", env.alice)).await,
        401
    );
    let (status, _) = refresh(&env, &refresh_token, None).await;
    assert_eq!(status, 400);
    let listed: Value = portal
        .get(&apps_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["apps"], json!([]));
}

/// The SAMU regulating doctor's role comes from the professional's login (the provider's
/// configured claim): only such a login declares ETREAT, and it opens the record of the
/// patient named, unless the patient expressly objected.
async fn the_regulating_doctor_is_recognised_from_the_login(backend: Backend) {
    let env = setup(backend).await;
    env.app
        .create(&json!({"resourceType": "Practitioner", "identifier": [{"system": IDNPS, "value": "810009999999"}],
            "name": [{"family": "Centre15"}],
            "qualification": [{"code": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante", "code": "10"}]}}]}))
        .await;
    let vaccination = env
        .app
        .create(&json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": "DTCaP"}, "patient": {"reference": format!("Patient/{}", env.bob)},
            "occurrenceDateTime": "2025-01-01"}))
        .await;
    let vaccination = format!("Immunization/{}", vaccination["id"].as_str().unwrap());
    let login = |who: &'static str| {
        let env = &env;
        async move {
            let b = browser();
            let p = pkce();
            let start = authorize(env, &b, "openid user/*.rs", &p, "reg").await;
            let Landing::Page(200, choice) = start else {
                panic!()
            };
            let link = provider_link(&choice, "prosanteconnect");
            let start = land(b.get(link).send().await.unwrap()).await;
            let Landing::Page(200, consent) = through_upstream(&b, start, who).await else {
                panic!()
            };
            let Landing::App(back) = decide(&b, &consent, "approve").await else {
                panic!()
            };
            let code = back
                .query_pairs()
                .find(|(k, _)| k == "code")
                .unwrap()
                .1
                .to_string();
            (code, p.verifier)
        }
    };
    let etreat = |code: String, verifier: String| {
        let env = &env;
        async move {
            let form = [
                ("grant_type", "authorization_code".to_string()),
                ("code", code),
                ("redirect_uri", APP_REDIRECT.to_string()),
                ("code_verifier", verifier),
                ("client_id", APP.to_string()),
                ("purpose_of_use", "ETREAT".to_string()),
                ("patient", env.bob.clone()),
            ];
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(env, &form).await
        }
    };
    // Without the role: refused, and the code is not spent.
    let (code, verifier) = login("house").await;
    let (status, body) = etreat(code, verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // With it: the record opens, the access is traced as regulation.
    let (code, verifier) = login("regul").await;
    let (status, body) = etreat(code, verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purpose_of_use"], "ETREAT");
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(get_status(&env, &access, &vaccination).await, 200);
    let (_, trail) = env
        .app
        .get_json(&format!("AuditEvent?entity={vaccination}"))
        .await;
    assert!(
        trail["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| { e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT" }),
        "{trail}"
    );
}

both_backends!(
    a_login_is_traced_for_the_patient_alone,
    tokens_and_logins_stay_with_their_owner,
    a_patient_launches_an_app_end_to_end,
    a_professional_logs_in_with_the_second_provider,
    attacks_on_the_authorization_flow_are_refused,
    the_patient_lists_and_revokes_connected_apps,
    the_regulating_doctor_is_recognised_from_the_login,
);
