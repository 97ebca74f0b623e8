//! Identity on the FHIR API: every request but `metadata` needs a valid bearer token; the
//! token's scopes bound the types and interactions; a patient-bound token sees only its
//! patient's record, and another patient's data looks like data that does not exist.

use crate::both_backends;
use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use carnet::auth::token::{Claims, TokenService, AUDIENCE, ISSUER};
use carnet::auth::DevSubject;
use serde_json::{json, Value};

fn claims(sub: &str, scope: &str, exp_in: i64) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: sub.into(),
        client_id: "test-app".into(),
        scope: scope.into(),
        patient: None,
        iat: now,
        exp: now + exp_in,
        jti: uuid::Uuid::new_v4().to_string(),
        grant: None,
        dev: true,
        purpose_of_use: None,
        purpose_reason: None,
        regulation: false,
        first_party: false,
        ..Default::default()
    }
}

fn server_tokens(app: &TestApp) -> TokenService {
    let key = carnet::auth::keys::SigningKey::load_or_create(&app.args.data_dir).unwrap();
    let dev = carnet::auth::keys::SigningKey::load_or_create_dev(&app.args.data_dir).unwrap();
    TokenService::new(key, Some(dev))
}

/// 401 with a Bearer challenge and an OperationOutcome, nothing else.
async fn assert_unauthorized(res: reqwest::Response, why: &str) {
    assert_eq!(res.status(), 401, "{why}");
    let challenge = res
        .headers()
        .get("WWW-Authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{why}: {challenge}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{why}");
    assert!(body.get("entry").is_none() && body.get("name").is_none());
}

async fn bad_tokens_are_refused_and_metadata_is_open(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Secret"}]}))
        .await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    let anonymous = reqwest::Client::new();
    assert_unauthorized(
        anonymous.get(app.url(&path)).send().await.unwrap(),
        "no token",
    )
    .await;
    assert_unauthorized(
        anonymous
            .get(app.url("Patient?family=secret"))
            .send()
            .await
            .unwrap(),
        "no token, search",
    )
    .await;
    let res = anonymous.get(app.url("metadata")).send().await.unwrap();
    assert_eq!(res.status(), 200, "metadata needs no token");
    let tokens = server_tokens(&app);
    let expired = tokens
        .issue(&claims("client/x", "system/*.cruds", -3600))
        .unwrap();
    let mut wrong_aud = claims("client/x", "system/*.cruds", 600);
    wrong_aud.aud = "https://other-server.example/fhir".into();
    let wrong_aud = tokens.issue(&wrong_aud).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let foreign = dev_token(other_dir.path(), &DevSubject::System, None);
    let good = tokens
        .issue(&claims("client/x", "system/*.cruds", 600))
        .unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap()
    );
    for (token, why) in [
        (expired, "expired"),
        (wrong_aud, "wrong audience"),
        (foreign, "signed by another key"),
        (unsigned, "alg none"),
        ("not-a-jwt".to_string(), "garbage"),
    ] {
        let res = client_with(&token)
            .get(app.url(&path))
            .send()
            .await
            .unwrap();
        assert_unauthorized(res, why).await;
    }
    let res = client_with(&good).get(app.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "the same claims, properly signed");
}

async fn scopes_bound_types_and_interactions(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Portée"}]}))
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let doc = app.create(&document(&pid)).await;
    let narrow = client_with(&dev_token(
        &app.args.data_dir,
        &DevSubject::System,
        Some("system/Patient.rs"),
    ));
    let res = narrow
        .get(app.url(&format!("Patient/{pid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = narrow
        .get(app.url("Patient?family=portee"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let forbidden = [
        narrow
            .get(app.url(&format!(
                "DocumentReference/{}",
                doc["id"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap(),
        narrow
            .get(app.url("DocumentReference?subject=Patient/x"))
            .send()
            .await
            .unwrap(),
        narrow
            .post(app.url("Patient"))
            .header("Content-Type", FHIR_JSON)
            .body(json!({"resourceType": "Patient"}).to_string())
            .send()
            .await
            .unwrap(),
        narrow
            .delete(app.url(&format!("Patient/{pid}")))
            .send()
            .await
            .unwrap(),
    ];
    for res in forbidden {
        assert_eq!(res.status(), 403);
        let challenge = res.headers()["WWW-Authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.contains("insufficient_scope"), "{challenge}");
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["issue"][0]["code"], "forbidden", "{b}");
    }
    // Nothing was written or deleted.
    assert_eq!(app.get_json(&format!("Patient/{pid}")).await.0, 200);
    // Includes of a type the token may not read are left out.
    let (_, b) = app.get_json("Patient?family=portee").await;
    assert_eq!(b["total"], 1);
    let res = narrow
        .get(app.url(&format!(
            "Patient?_id={pid}&_revinclude=DocumentReference:subject"
        )))
        .send()
        .await
        .unwrap();
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["entry"].as_array().unwrap().len(), 1, "{b}");
}

fn document(patient: &str) -> Value {
    json!({"resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "content": [{"attachment": {"contentType": "text/plain", "url": "http://example.org/d"}}]})
}

async fn a_patient_token_sees_only_its_patient(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut pids = Vec::new();
    let mut docs = Vec::new();
    for family in ["Alice", "Bruno"] {
        let p = app
            .create(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
            .await;
        let pid = p["id"].as_str().unwrap().to_string();
        for _ in 0..3 {
            let d = app.create(&document(&pid)).await;
            docs.push((pid.clone(), d["id"].as_str().unwrap().to_string()));
        }
        pids.push(pid);
    }
    let gp = app
        .create(&json!({"resourceType": "Practitioner", "name": [{"family": "Généraliste"}]}))
        .await;
    let (alice, bruno) = (&pids[0], &pids[1]);
    let as_alice = client_with(&dev_token(
        &app.args.data_dir,
        &DevSubject::Patient(alice.clone()),
        None,
    ));
    let get = |path: String| {
        let c = as_alice.clone();
        let url = app.url(&path);
        async move {
            let res = c.get(url).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(get(format!("Patient/{alice}")).await.0, 200);
    assert_eq!(
        get(format!("Practitioner/{}", gp["id"].as_str().unwrap()))
            .await
            .0,
        200,
        "the directory is readable"
    );
    // Another patient, and their documents, do not exist for Alice.
    let (status, body) = get(format!("Patient/{bruno}")).await;
    assert_eq!(status, 404, "{body}");
    let (_, not_found) = get("Patient/does-not-exist".into()).await;
    assert_eq!(
        body["issue"][0]["code"], not_found["issue"][0]["code"],
        "hidden looks like absent"
    );
    for (owner, doc) in &docs {
        let (status, _) = get(format!("DocumentReference/{doc}")).await;
        assert_eq!(status, if owner == alice { 200 } else { 404 });
        let (status, _) = get(format!("DocumentReference/{doc}/_history/1")).await;
        assert_eq!(status, if owner == alice { 200 } else { 404 });
    }
    // Searches count only Alice's data, whatever the query says.
    let (_, b) = get("DocumentReference".into()).await;
    assert_eq!(b["total"], 3, "{b}");
    let (_, b) = get(format!("DocumentReference?subject=Patient/{bruno}")).await;
    assert_eq!(b["total"], 0, "{b}");
    let (_, b) = get("Patient".into()).await;
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["id"], alice.as_str());
    let (_, b) = get(format!("Patient/{bruno}/DocumentReference")).await;
    assert_eq!(b["total"], 0, "{b}");
    let (_, b) = get("DocumentReference?_include=DocumentReference:subject".into()).await;
    let included: Vec<&Value> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["resource"]["id"], alice.as_str());
    // Writing into another record is refused; into one's own, allowed.
    let res = as_alice
        .post(app.url("DocumentReference"))
        .header("Content-Type", FHIR_JSON)
        .body(document(bruno).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = as_alice
        .post(app.url("DocumentReference"))
        .header("Content-Type", FHIR_JSON)
        .body(document(alice).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (_, b) = app
        .get_json(&format!("DocumentReference?subject=Patient/{bruno}"))
        .await;
    assert_eq!(b["total"], 3, "Bruno's record unchanged");
    // Chains and _has must not look into other records: who wrote Bruno's documents, or
    // whether a patient named Bruno exists, stays unknown to Alice.
    for q in [
        format!("Practitioner?_has:DocumentReference:author:subject=Patient/{bruno}"),
        "DocumentReference?subject:Patient.name=bruno".to_string(),
    ] {
        assert_eq!(get(q.clone()).await.0, 403, "{q}");
    }
    assert_eq!(
        get("DocumentReference?author:Practitioner.name=generaliste".into())
            .await
            .0,
        200,
        "a chain to the directory is fine"
    );
    // A conditional create cannot match (nor count) another patient's document.
    let bruno_doc = &docs.iter().find(|(o, _)| o == bruno).unwrap().1;
    let res = as_alice
        .post(app.url("DocumentReference"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", format!("_id={bruno_doc}"))
        .body(document(alice).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "no match in Alice's record: created");
    let created: Value = res.json().await.unwrap();
    assert_ne!(created["id"], bruno_doc.as_str());
}

/// Development tokens are refused by a server that was not started with `--dev`.
async fn dev_tokens_need_dev_mode(backend: Backend) {
    let app = spawn_with(backend, |a| a.dev = false).await;
    let res = app.client.get(app.url("Patient")).send().await.unwrap();
    assert_unauthorized(res, "dev token, no --dev").await;
}

#[test]
fn dev_mode_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(
        &format!("sqlite://{}", dir.path().join("c.sqlite3").display()),
        dir.path().to_path_buf(),
    );
    args.listen = "0.0.0.0:0".into();
    let err = carnet::app::Application::build(&args)
        .err()
        .expect("refused");
    assert!(err.contains("--dev"), "{err}");
}

/// What the security review of the first identity commit found, each as a test: mixed
/// scopes keep the patient bound, writes and vreads answer alike for hidden and absent
/// resources, a patient files and edits only their own record, scope checks come before
/// lookups, and a create-only token can create.
async fn hidden_looks_absent_on_every_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut pids = Vec::new();
    for family in ["Alice", "Bruno"] {
        let p = app
            .create(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
            .await;
        pids.push(p["id"].as_str().unwrap().to_string());
    }
    let (alice, bruno) = (pids[0].clone(), pids[1].clone());
    let alice_doc = app.create(&document(&alice)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bruno_doc = app.create(&document(&bruno)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = server_tokens(&app);
    // A practitioner app launched for Alice with patient/ scopes plus a user/ scope on the
    // directory: the patient/ grant stays bounded to Alice.
    let mut mixed = claims(
        "Practitioner/dr1",
        "launch/patient patient/*.rs user/Practitioner.rs",
        600,
    );
    mixed.patient = Some(alice.clone());
    let mixed = client_with(&tokens.issue(&mixed).unwrap());
    let status = |res: reqwest::Response| res.status().as_u16();
    assert_eq!(
        status(
            mixed
                .get(app.url(&format!("Patient/{bruno}")))
                .send()
                .await
                .unwrap()
        ),
        404
    );
    assert_eq!(
        status(
            mixed
                .get(app.url(&format!("Patient/{alice}")))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let b: Value = mixed
        .get(app.url(&format!("DocumentReference?subject=Patient/{bruno}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["total"], 0, "{b}");
    // patient/ scopes without a launch patient are refused outright.
    let no_launch = tokens
        .issue(&claims("Practitioner/dr1", "patient/*.rs", 600))
        .unwrap();
    assert_eq!(
        status(
            client_with(&no_launch)
                .get(app.url(&format!("Patient/{alice}")))
                .send()
                .await
                .unwrap()
        ),
        403
    );

    let as_alice = client_with(&dev_token(
        &app.args.data_dir,
        &DevSubject::Patient(alice.clone()),
        None,
    ));
    let diag = |b: &Value, id: &str| {
        b["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .replace(id, "ID")
    };
    // PUT, PUT with If-Match, DELETE and vread: Bruno's document answers exactly like an
    // id that does not exist.
    let absent = "no-such-document";
    let mut answers = Vec::new();
    for id in [bruno_doc.as_str(), absent] {
        let mut body = document(&alice);
        body["id"] = json!(id);
        let put = as_alice
            .put(app.url(&format!("DocumentReference/{id}")))
            .header("Content-Type", FHIR_JSON)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let put = (put.status().as_u16(), put.json::<Value>().await.unwrap());
        let mut body = document(&alice);
        body["id"] = json!(id);
        let put_if = as_alice
            .put(app.url(&format!("DocumentReference/{id}")))
            .header("Content-Type", FHIR_JSON)
            .header("If-Match", "W/\"7\"")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let put_if = (
            put_if.status().as_u16(),
            put_if.json::<Value>().await.unwrap(),
        );
        let del = as_alice
            .delete(app.url(&format!("DocumentReference/{id}")))
            .send()
            .await
            .unwrap();
        let del = (del.status().as_u16(), del.json::<Value>().await.unwrap());
        let vread = as_alice
            .get(app.url(&format!("DocumentReference/{id}/_history/1")))
            .send()
            .await
            .unwrap();
        let vread = (
            vread.status().as_u16(),
            vread.json::<Value>().await.unwrap(),
        );
        answers.push(
            [put, put_if, del, vread]
                .iter()
                .map(|(st, b)| (*st, diag(b, id)))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(answers[0], answers[1], "hidden vs absent");
    assert!(
        answers[0].iter().all(|(st, _)| *st == 404),
        "{:?}",
        answers[0]
    );
    // Bruno's document is untouched.
    let (_, d) = app
        .get_json(&format!("DocumentReference/{bruno_doc}"))
        .await;
    assert_eq!(d["meta"]["versionId"], "1");
    // A document about Bruno "authored" by Alice is not Alice's to file.
    let mut sneaky = document(&bruno);
    sneaky["author"] = json!([{"reference": format!("Patient/{alice}")}]);
    let res = as_alice
        .post(app.url("DocumentReference"))
        .header("Content-Type", FHIR_JSON)
        .body(sneaky.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Alice updates and deletes her own document.
    let mut mine = document(&alice);
    mine["id"] = json!(alice_doc);
    mine["status"] = json!("superseded");
    let res = as_alice
        .put(app.url(&format!("DocumentReference/{alice_doc}")))
        .header("Content-Type", FHIR_JSON)
        .header("If-Match", "W/\"1\"")
        .body(mine.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = as_alice
        .delete(app.url(&format!("DocumentReference/{alice_doc}")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // Documents are deleted logically (entered-in-error), their history kept.
    let (status, deleted) = app
        .get_json(&format!("DocumentReference/{alice_doc}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["status"], "entered-in-error");
    assert_eq!(deleted["meta"]["versionId"], "3");
    // Type and system history would page over other patients' versions: refused.
    for path in ["DocumentReference/_history", "_history"] {
        let res = as_alice.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
    // Scopes are checked before any lookup: an existing and an absent Patient answer alike.
    let docs_only = client_with(&dev_token(
        &app.args.data_dir,
        &DevSubject::Patient(alice.clone()),
        Some("patient/DocumentReference.rs"),
    ));
    for id in [bruno.as_str(), "nobody"] {
        let res = docs_only
            .get(app.url(&format!("Patient/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{id}");
    }
    // A create-only backend token creates (it does not need to read what it wrote).
    let create_only = client_with(&dev_token(
        &app.args.data_dir,
        &DevSubject::System,
        Some("system/Patient.c"),
    ));
    let res = create_only
        .post(app.url("Patient"))
        .header("Content-Type", FHIR_JSON)
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

both_backends!(
    hidden_looks_absent_on_every_path,
    bad_tokens_are_refused_and_metadata_is_open,
    scopes_bound_types_and_interactions,
    a_patient_token_sees_only_its_patient,
    dev_tokens_need_dev_mode
);
