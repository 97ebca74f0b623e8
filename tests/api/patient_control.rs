//! Patient control, second round (issue 16): hospitals acting for a named professional
//! (JWT bearer grant), backend services and the registry reaching only their part, the care
//! team, emergency access as the deployment and the patient say, mask everything, a notice
//! per access session, and the doors found open at 7da3c9b.

use crate::both_backends;
use crate::helpers::*;
use carnet::auth::{DevOptions, DevSubject};
use serde_json::{json, Value};

const IDNPS: &str = "urn:oid:1.2.250.1.71.4.2.1";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Registers a confidential client with `extra` flags; returns its key.
fn register(app: &TestApp, id: &str, name: &str, scope: &str, extra: &[&str]) -> ClientKey {
    let key = ClientKey::new(&format!("{id}-key"));
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    let mut args = vec![
        "add",
        "--client-id",
        id,
        "--name",
        name,
        "--scope",
        scope,
        "--jwks-file",
        jwks.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    carnet_client(app, &args);
    key
}

async fn token_endpoint(app: &TestApp) -> String {
    let conf: Value = reqwest::get(app.url(".well-known/smart-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(conf["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(JWT_BEARER)));
    conf["token_endpoint"].as_str().unwrap().to_string()
}

async fn post_token(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .form(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn as_token(app: &TestApp, token: &str) -> As {
    As {
        client: client_with(token),
        base: app.base.clone(),
    }
}

async fn id_of(app: &TestApp, resource: Value) -> String {
    app.create(&resource).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A professional of the directory with their national identifier.
async fn listed_professional(app: &TestApp, idnps: &str, family: &str) -> String {
    id_of(
        app,
        json!({"resourceType": "Practitioner",
            "identifier": [{"system": IDNPS, "value": idnps}],
            "name": [{"family": family, "given": ["Claire"]}],
            "qualification": [{"code": {"coding": [{"system": TRE_G15, "code": "10"}]}}]}),
    )
    .await
}

/// The AuditEvents of the patient's record the patient sees.
async fn history_of(w: &World) -> Vec<Value> {
    let (status, bundle) = w
        .holder()
        .get(&format!("AuditEvent?patient={}&_count=200", w.patient))
        .await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// A hospital system end to end: registered as an establishment, it obtains a token for
/// one of its professionals with a signed assertion, reads what the patient allows, is
/// refused once the patient blocks that professional, and the patient's access history
/// names both the professional and the establishment.
async fn a_hospital_system_acts_for_its_professional(backend: Backend) {
    let w = World::new(backend).await;
    let app = &w.app;
    let org = id_of(
        app,
        json!({"resourceType": "Organization", "name": "CH de Test"}),
    )
    .await;
    let other_org = id_of(
        app,
        json!({"resourceType": "Organization", "name": "Clinique Ailleurs"}),
    )
    .await;
    let dr = listed_professional(app, "810000000001", "Durand").await;
    let elsewhere = listed_professional(app, "810000000002", "Petit").await;
    let role = |pro: &str, org: &str| {
        json!({"resourceType": "PractitionerRole", "active": true,
            "practitioner": {"reference": format!("Practitioner/{pro}")},
            "organization": {"reference": format!("Organization/{org}")}})
    };
    app.create(&role(&dr, &org)).await;
    app.create(&role(&elsewhere, &other_org)).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    w.rule(authorise(&dr)).await;
    let key = register(
        app,
        "ch-test",
        "CH de Test",
        "user/*.rs",
        &["--establishment", &format!("Organization/{org}")],
    );
    assert!(carnet_client(app, &["list"]).contains(&format!("establishment Organization/{org}")));
    let url = token_endpoint(app).await;
    let grant = |sub: &str, jti: &str| {
        let assertion = key.assertion_for("ch-test", sub, &url, 120, jti);
        let url = url.clone();
        async move {
            post_token(
                &url,
                &[
                    ("grant_type", JWT_BEARER),
                    ("assertion", &assertion),
                    ("scope", "user/*.rs"),
                ],
            )
            .await
        }
    };
    // A professional the directory lists elsewhere, or not at all: no token.
    let (status, body) = grant("810000000002", "j-1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = grant("899999999999", "j-2").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The listed professional, by value or system|value.
    let (status, body) = grant(&format!("{IDNPS}|810000000001"), "j-3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fhirUser"], format!("Practitioner/{dr}"));
    assert_eq!(body["scope"], "user/*.rs");
    let access = body["access_token"].as_str().unwrap().to_string();
    // The same assertion twice is a replay.
    let (status, body) = grant("810000000001", "j-3").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let his = as_token(app, &access);
    let (status, read) = his.get(&format!("DocumentReference/{doc}")).await;
    assert_eq!(status, 200, "{read}");
    // Not authorised for another patient's record.
    let other = id_of(
        app,
        json!({"resourceType": "Patient", "name": [{"family": "Autre"}]}),
    )
    .await;
    let other_doc = id_of(
        app,
        json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": LOINC, "code": CONSULTATION}]},
            "subject": {"reference": format!("Patient/{other}")},
            "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/y"}}]}),
    )
    .await;
    assert_eq!(
        his.get(&format!("DocumentReference/{other_doc}")).await.0,
        403
    );
    // The patient blocks the professional: refused at once, through the hospital too.
    w.rule(block(&dr)).await;
    assert_eq!(his.get(&format!("DocumentReference/{doc}")).await.0, 403);
    let (ids, total) = his
        .search(&format!("DocumentReference?patient={}", w.patient))
        .await;
    assert_eq!((ids.len(), total), (0, 0));
    // The patient's access history names both, with their names.
    let events = history_of(&w).await;
    let by_hospital: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["agent"].as_array().unwrap().iter().any(|a| {
                a["who"]["reference"] == format!("Organization/{org}")
                    && a["who"]["display"] == "CH de Test"
            })
        })
        .collect();
    assert!(!by_hospital.is_empty(), "{events:#?}");
    let requestor = by_hospital[0]["agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["requestor"] == true)
        .unwrap();
    assert_eq!(requestor["who"]["reference"], format!("Practitioner/{dr}"));
    assert_eq!(requestor["who"]["display"], "Claire Durand");
    // A client not registered as an establishment gets no professional's token.
    let plain = register(app, "his-plain", "SIH", "user/*.rs system/*.rs", &[]);
    let assertion = plain.assertion_for("his-plain", "810000000001", &url, 120, "j-9");
    let (status, body) = post_token(
        &url,
        &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

/// A backend service files data, finds the Patient by INS and reads it, and reads back only
/// what it filed; the registry reads and writes identities, not clinical data.
async fn backend_services_reach_only_their_part(backend: Backend) {
    let w = World::new(backend).await;
    let app = &w.app;
    let url = token_endpoint(app).await;
    let key = register(app, "lab", "Laboratoire", "system/*.cruds", &[]);
    let lab = as_token(
        app,
        &service_token(&url, &key, "lab", "system/*.cruds").await,
    );
    let theirs = w.document(&w.mt, CONSULTATION, &[]).await;
    // It finds the patient it files for by INS, and reads that Patient.
    let (ids, _) = lab
        .search(&format!("Patient?identifier={INS}|180017512345601"))
        .await;
    assert_eq!(ids, vec![w.patient.clone()]);
    assert_eq!(lab.get(&format!("Patient/{}", w.patient)).await.0, 200);
    // No listing of patients by anything else.
    for listing in [
        "Patient?name=Martin",
        "Patient?identifier:missing=false",
        "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|",
        "Patient/_history",
        "_history",
    ] {
        assert_eq!(lab.get(listing).await.0, 403, "{listing}");
    }
    let (status, _) = lab
        .post(
            "Subscription",
            &json!({"resourceType": "Subscription", "status": "requested", "reason": "x",
                "criteria": "Patient", "channel": {"type": "rest-hook",
                "endpoint": "http://127.0.0.1:9/hook", "payload": "application/fhir+json"}}),
        )
        .await;
    assert_eq!(status, 403);
    // Nor a voice of Carnet's: no trace, no notice in its name.
    let (status, _) = lab
        .post(
            "AuditEvent",
            &json!({"resourceType": "AuditEvent", "type": {"code": "rest"},
                "recorded": "2026-12-01T10:00:00Z",
                "agent": [{"requestor": true, "who": {"reference": format!("Practitioner/{}", w.mt)}}],
                "source": {"observer": {"display": "x"}},
                "entity": [{"what": {"reference": format!("Patient/{}", w.patient)}}]}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = lab
        .post(
            "Communication",
            &json!({"resourceType": "Communication", "status": "completed",
                "category": [{"coding": [{"system": "urn:carnet:notice", "code": "professional-access"}]}],
                "subject": {"reference": format!("Patient/{}", w.patient)},
                "recipient": [{"reference": format!("Patient/{}", w.patient)}]}),
        )
        .await;
    assert_eq!(status, 403);
    // No id of its choosing (one another service could later use).
    let (status, _) = lab
        .put(
            "Immunization/chosen-id",
            &json!({"resourceType": "Immunization", "id": "chosen-id", "status": "completed",
                "vaccineCode": {"text": "DTP"}, "occurrenceDateTime": "2026-01-01",
                "patient": {"reference": format!("Patient/{}", w.patient)}}),
        )
        .await;
    assert_eq!(status, 404);
    // It files a result and reads it back.
    let (status, mine) = lab
        .post(
            "DocumentReference",
            &json!({"resourceType": "DocumentReference", "status": "current",
                "type": {"coding": [{"system": LOINC, "code": "11502-2"}]},
                "subject": {"reference": format!("Patient/{}", w.patient)},
                "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/z"}}]}),
        )
        .await;
    assert_eq!(status, 201, "{mine}");
    let mine = mine["id"].as_str().unwrap().to_string();
    assert_eq!(lab.get(&format!("DocumentReference/{mine}")).await.0, 200);
    // Nothing else of the record: not read, not searched, not counted, not changed.
    assert_eq!(lab.get(&format!("DocumentReference/{theirs}")).await.0, 404);
    assert_eq!(
        lab.get(&format!("DocumentReference/{theirs}/_history/1"))
            .await
            .0,
        404
    );
    let (ids, total) = lab
        .search(&format!("DocumentReference?patient={}", w.patient))
        .await;
    assert_eq!((ids, total), (vec![mine.clone()], 1));
    let (status, _) = lab.delete(&format!("DocumentReference/{theirs}")).await;
    assert_eq!(status, 404);
    // Nor the patient's rules, nor identities.
    let (status, _) = lab
        .post("Consent", &consent(&w.patient, block(&w.mt)))
        .await;
    assert_eq!(status, 403);
    let (status, _) = lab
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "X"}]}),
        )
        .await;
    assert_eq!(status, 403);
    // Its own traces only.
    let (status, bundle) = lab.get("AuditEvent?_count=200").await;
    assert_eq!(status, 200);
    for e in bundle["entry"].as_array().into_iter().flatten() {
        let text = e["resource"]["agent"].to_string();
        assert!(text.contains("\"lab\""), "another's trace: {text}");
    }
    // The registry: identities and representatives, no clinical data.
    let key = register(app, "cnam", "Registre", "system/*.cruds", &["--registry"]);
    let registry = as_token(
        app,
        &service_token(&url, &key, "cnam", "system/*.cruds").await,
    );
    assert_eq!(registry.get(&format!("Patient/{}", w.patient)).await.0, 200);
    // Of the patient's rules, not a block.
    let blocked = w.rule(block(&w.mt)).await;
    assert_eq!(registry.get(&format!("Consent/{blocked}")).await.0, 404);
    assert_eq!(
        registry.get(&format!("DocumentReference/{mine}")).await.0,
        404
    );
    let (ids, total) = registry
        .search(&format!("DocumentReference?patient={}", w.patient))
        .await;
    assert_eq!((ids.len(), total), (0, 0));
    let (status, body) = registry
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "identifier": [{"system": INS, "value": "290017512345699"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = registry
        .post(
            "Immunization",
            &json!({"resourceType": "Immunization", "status": "completed",
                "vaccineCode": {"text": "DTP"}, "occurrenceDateTime": "2026-01-01",
                "patient": {"reference": format!("Patient/{}", w.patient)}}),
        )
        .await;
    assert_eq!(status, 403);
}

/// Open door: a resource masked and then deleted was judged by its older, unmasked
/// versions (vread and type history).
async fn a_masked_then_deleted_resource_stays_masked_in_its_history(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let imm = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"text": "Hépatite B"}, "occurrenceDateTime": "2026-03-01",
        "patient": {"reference": format!("Patient/{}", w.patient)}});
    let (status, created) = w.holder().post("Immunization", &imm).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let pro = w.pro(&dr);
    assert_eq!(
        pro.get(&format!("Immunization/{id}/_history/1")).await.0,
        200
    );
    let mut masked = created.clone();
    masked["meta"] = json!({"security": [{"system": TRE_A07, "code": "MASQUE_PS"}]});
    let (status, body) = w.holder().put(&format!("Immunization/{id}"), &masked).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        pro.get(&format!("Immunization/{id}/_history/1")).await.0,
        404
    );
    let (status, _) = w.holder().delete(&format!("Immunization/{id}")).await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(
        pro.get(&format!("Immunization/{id}/_history/1")).await.0,
        404
    );
    let (status, history) = pro.get("Immunization/_history").await;
    assert_eq!(status, 200);
    assert!(
        !history.to_string().contains(&id),
        "a masked, deleted immunization in type history: {history}"
    );
    // The médecin traitant still sees it (masks do not apply to them).
    assert_eq!(
        w.pro(&w.mt)
            .get(&format!("Immunization/{id}/_history/1"))
            .await
            .0,
        200
    );
}

/// Open door: a Binary filed under the Patient was judged without the labels of the
/// document whose content it is; and a patient could not read the Binary of their own
/// visible document when its securityContext is the DocumentReference.
async fn a_binary_is_judged_with_its_document(backend: Backend) {
    let w = World::new(backend).await;
    let binary = |context: String| {
        json!({"resourceType": "Binary", "contentType": "text/plain", "data": "Y29tcHRlLXJlbmR1",
            "securityContext": {"reference": context}})
    };
    let pro = w.pro(&w.mt);
    let file = |b: String, labels: &[&str]| {
        let labels: Vec<Value> = labels
            .iter()
            .map(|c| json!({"coding": [{"system": TRE_A07, "code": c}]}))
            .collect();
        let mut doc = json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": LOINC, "code": CONSULTATION}]},
            "subject": {"reference": format!("Patient/{}", w.patient)},
            "author": [{"reference": format!("Practitioner/{}", w.mt)}],
            "content": [{"attachment": {"contentType": "text/plain", "url": format!("Binary/{b}")}}]});
        if !labels.is_empty() {
            doc["securityLabel"] = json!(labels);
        }
        doc
    };
    // Under the Patient, content of an INVISIBLE_PATIENT document.
    let (status, b) = pro
        .post("Binary", &binary(format!("Patient/{}", w.patient)))
        .await;
    assert_eq!(status, 201, "{b}");
    let hidden_bin = b["id"].as_str().unwrap().to_string();
    assert_eq!(w.holder().get(&format!("Binary/{hidden_bin}")).await.0, 200);
    let (status, _) = pro
        .post(
            "DocumentReference",
            &file(hidden_bin.clone(), &["INVISIBLE_PATIENT"]),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(w.holder().get(&format!("Binary/{hidden_bin}")).await.0, 404);
    assert_eq!(pro.get(&format!("Binary/{hidden_bin}")).await.0, 200);
    // Under the document: the patient reads the content of their visible document.
    let (status, doc) = pro
        .post("DocumentReference", &file("pending".into(), &[]))
        .await;
    assert_eq!(status, 201);
    let doc = doc["id"].as_str().unwrap().to_string();
    let (status, b) = pro
        .post("Binary", &binary(format!("DocumentReference/{doc}")))
        .await;
    assert_eq!(status, 201, "{b}");
    let visible_bin = b["id"].as_str().unwrap().to_string();
    let (status, body) = w.holder().get(&format!("Binary/{visible_bin}")).await;
    assert_eq!(status, 200, "{body}");
    // A professional cannot borrow authorship by filing a document pointing to it.
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let (status, b) = pro
        .post("Binary", &binary(format!("Patient/{}", w.patient)))
        .await;
    assert_eq!(status, 201);
    let masked_bin = b["id"].as_str().unwrap().to_string();
    let (status, _) = pro
        .post(
            "DocumentReference",
            &file(masked_bin.clone(), &["MASQUE_PS"]),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(w.pro(&dr).get(&format!("Binary/{masked_bin}")).await.0, 404);
    let mut borrowed = file(masked_bin.clone(), &[]);
    borrowed["author"] = json!([{"reference": format!("Practitioner/{dr}")}]);
    let (status, _) = w.pro(&dr).post("DocumentReference", &borrowed).await;
    assert_eq!(status, 201);
    assert_eq!(w.pro(&dr).get(&format!("Binary/{masked_bin}")).await.0, 404);
    // Another patient does not.
    let other = id_of(
        &w.app,
        json!({"resourceType": "Patient", "identifier": [{"system": INS, "value": "280017512345677"}]}),
    )
    .await;
    let stranger = w.token(DevSubject::Patient(other), DevOptions::default());
    assert_eq!(stranger.get(&format!("Binary/{visible_bin}")).await.0, 404);
}

/// Open door: a label under TRE_A07's OID was stored and hid nothing.
async fn tre_a07_under_its_oid_hides_as_under_its_url(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let (status, doc) = w
        .pro(&w.mt)
        .post(
            "DocumentReference",
            &json!({"resourceType": "DocumentReference", "status": "current",
                "type": {"coding": [{"system": LOINC, "code": CONSULTATION}]},
                "subject": {"reference": format!("Patient/{}", w.patient)},
                "author": [{"reference": format!("Practitioner/{}", w.mt)}],
                "securityLabel": [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.13", "code": "MASQUE_PS"}]}],
                "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/q"}}]}),
        )
        .await;
    assert_eq!(status, 201, "{doc}");
    let id = doc["id"].as_str().unwrap();
    assert_eq!(
        w.pro(&dr).get(&format!("DocumentReference/{id}")).await.0,
        404
    );
    assert_eq!(
        w.pro(&w.mt).get(&format!("DocumentReference/{id}")).await.0,
        200
    );
}

/// The child's record with a parent as legal representative: (the World's patient is the
/// child) the parent's own Patient id.
async fn with_parent(w: &World) -> String {
    let parent = id_of(
        &w.app,
        json!({"resourceType": "Patient", "identifier": [{"system": INS, "value": "280017512345602"}]}),
    )
    .await;
    let rp = id_of(
        &w.app,
        json!({"resourceType": "RelatedPerson",
            "patient": {"reference": format!("Patient/{}", w.patient)},
            "identifier": [{"system": INS, "value": "280017512345602"}]}),
    )
    .await;
    let (status, body) = w
        .system()
        .post(
            "Consent",
            &consent(
                &w.patient,
                json!({"type": "permit", "actor": actor("GUARD", &format!("RelatedPerson/{rp}"))}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    parent
}

/// Open door: a parent authorised a professional, who then read the child's
/// INVISIBLE_REPRESENTANTS_LEGAUX documents.
async fn a_parent_opens_to_a_professional_only_what_the_parent_sees(backend: Backend) {
    let w = World::new(backend).await;
    let parent = with_parent(&w).await;
    let hidden = w
        .document(&w.mt, CONSULTATION, &["INVISIBLE_REPRESENTANTS_LEGAUX"])
        .await;
    let seen = w.document(&w.mt, VACCINATION, &[]).await;
    let dr = practitioner(&w.app, "10").await;
    let as_parent = w.token(
        DevSubject::Patient(parent),
        DevOptions {
            acting_for: Some(w.patient.clone()),
            ..Default::default()
        },
    );
    let (status, rule) = as_parent
        .post("Consent", &consent(&w.patient, authorise(&dr)))
        .await;
    assert_eq!(status, 201, "{rule}");
    // Carnet records who wrote the rule.
    assert!(rule["performer"][0]["reference"]
        .as_str()
        .unwrap()
        .starts_with("Patient/"));
    let pro = w.pro(&dr);
    assert_eq!(pro.get(&format!("DocumentReference/{seen}")).await.0, 200);
    assert_eq!(pro.get(&format!("DocumentReference/{hidden}")).await.0, 404);
    let (ids, total) = pro
        .search(&format!("DocumentReference?patient={}", w.patient))
        .await;
    assert_eq!((ids, total), (vec![seen.clone()], 1));
    // Authorised by the holder too: then the professional sees it.
    w.rule(authorise(&dr)).await;
    assert_eq!(pro.get(&format!("DocumentReference/{hidden}")).await.0, 200);
}

/// Open door: type history paged over hidden versions served an empty page with a `next`
/// link. Every page holds visible entries, and the pages hold all of them.
async fn history_pages_hold_only_what_is_visible(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let other = id_of(
        &w.app,
        json!({"resourceType": "Patient", "name": [{"family": "Z"}]}),
    )
    .await;
    let obs = |patient: &str, n: i32| {
        json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": format!("v{n}")}, "occurrenceDateTime": "2026-01-01",
            "patient": {"reference": format!("Patient/{patient}")}})
    };
    let mut mine = Vec::new();
    for n in 0..2 {
        mine.push(id_of(&w.app, obs(&w.patient, n)).await);
    }
    for n in 0..7 {
        w.app.create(&obs(&other, n)).await;
    }
    mine.push(id_of(&w.app, obs(&w.patient, 9)).await);
    let pro = w.pro(&dr);
    let mut seen = Vec::new();
    let mut next = Some("Immunization/_history?_count=2".to_string());
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages < 10, "too many pages");
        let res = pro.client.get(if url.starts_with("http") {
            url.clone()
        } else {
            pro.url(&url)
        });
        let (status, page) = pro.send(res).await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        assert!(
            !entries.is_empty() || next.is_none(),
            "an empty page with a next link: {page}"
        );
        seen.extend(
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
        );
    }
    seen.sort();
    mine.sort();
    assert_eq!(seen, mine);
    assert_eq!(pages, 2);
}

/// Emergency access: by default only if the patient allowed it (the seed); with
/// `--emergency-access opt-out`, unless the patient objected (L1111-17).
async fn emergency_access_follows_the_setting_and_the_patient(backend: Backend) {
    let btg = |w: &World, pro: &str| {
        w.token(
            DevSubject::Practitioner(pro.into()),
            DevOptions {
                acting_for: Some(w.patient.clone()),
                purpose: Some("BTG".into()),
                reason: Some("patient inconscient aux urgences".into()),
                ..Default::default()
            },
        )
    };
    let app = spawn_with(backend.clone(), |a| a.emergency_access = "opt-in".into()).await;
    let w = World::on(app).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let urgentist = practitioner(&w.app, "10").await;
    assert_eq!(
        btg(&w, &urgentist)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        403,
        "opt-in: the patient did not allow emergency access"
    );
    let allow = json!({"type": "permit", "purpose": [{"system":
        "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG"}]});
    let allowed = w.rule(allow).await;
    assert_eq!(
        btg(&w, &urgentist)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        200
    );
    // Withdrawn: closed again.
    assert_eq!(
        w.holder().delete(&format!("Consent/{allowed}")).await.0 / 100,
        2
    );
    assert_eq!(
        btg(&w, &urgentist)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        403
    );
    // opt-out: open unless the patient objected.
    let app = spawn_with(backend, |a| a.emergency_access = "opt-out".into()).await;
    let w = World::on(app).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let urgentist = practitioner(&w.app, "10").await;
    assert_eq!(
        btg(&w, &urgentist)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        200
    );
    w.rule(object(&["BTG"])).await;
    assert_eq!(
        btg(&w, &urgentist)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        403
    );
}

/// Mask everything (AC4): the record visible to the patient and their representative only,
/// emergencies, the médecin traitant and authors included; undone by the patient.
async fn mask_everything_closes_the_record_until_undone(backend: Backend) {
    let w = World::new(backend).await;
    let parent = with_parent(&w).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let mask = w.rule(json!({"type": "deny"})).await;
    for pro in [&w.mt, &dr] {
        assert_eq!(
            w.pro(pro).get(&format!("DocumentReference/{doc}")).await.0,
            403
        );
        let (ids, total) = w
            .pro(pro)
            .search(&format!("DocumentReference?patient={}", w.patient))
            .await;
        assert_eq!((ids.len(), total), (0, 0));
    }
    let btg = w.token(
        DevSubject::Practitioner(dr.clone()),
        DevOptions {
            acting_for: Some(w.patient.clone()),
            purpose: Some("BTG".into()),
            reason: Some("urgence vitale".into()),
            ..Default::default()
        },
    );
    let (status, refused) = btg.get(&format!("DocumentReference/{doc}")).await;
    assert_eq!(status, 403);
    // Told as a refused emergency, not as a mask.
    assert!(
        refused.to_string().contains("emergency access"),
        "{refused}"
    );
    assert_eq!(
        w.holder().get(&format!("DocumentReference/{doc}")).await.0,
        200
    );
    let as_parent = w.token(
        DevSubject::Patient(parent),
        DevOptions {
            acting_for: Some(w.patient.clone()),
            ..Default::default()
        },
    );
    assert_eq!(
        as_parent.get(&format!("DocumentReference/{doc}")).await.0,
        200
    );
    // Undone: open again as before.
    assert_eq!(
        w.holder().delete(&format!("Consent/{mask}")).await.0 / 100,
        2
    );
    assert_eq!(
        w.pro(&dr).get(&format!("DocumentReference/{doc}")).await.0,
        200
    );
    assert_eq!(
        w.pro(&w.mt)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        200
    );
}

/// The care team (AC1): a professional records that the patient was informed and did not
/// object, is then authorised; the patient is told, sees it in their rules and withdraws
/// it; a blocked professional cannot record it.
async fn the_care_team_declares_itself_and_the_patient_keeps_control(backend: Backend) {
    let w = World::new(backend).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let nurse = practitioner(&w.app, "60").await;
    let dr = practitioner(&w.app, "10").await;
    let pro = w.pro(&dr);
    assert_eq!(pro.get(&format!("DocumentReference/{doc}")).await.0, 403);
    let (status, declared) = pro
        .post("Consent", &consent(&w.patient, authorise(&dr)))
        .await;
    assert_eq!(status, 201, "{declared}");
    assert_eq!(
        declared["performer"][0]["reference"],
        format!("Practitioner/{dr}")
    );
    let declared = declared["id"].as_str().unwrap().to_string();
    assert_eq!(pro.get(&format!("DocumentReference/{doc}")).await.0, 200);
    // Only themselves.
    let (status, _) = pro
        .post("Consent", &consent(&w.patient, authorise(&nurse)))
        .await;
    assert_eq!(status, 403);
    // The patient is told, and sees the rule among theirs.
    let (status, notices) = w
        .holder()
        .get(&format!("Communication?recipient=Patient/{}", w.patient))
        .await;
    assert_eq!(status, 200);
    assert!(notices.to_string().contains("care-team"), "{notices}");
    let (rules, _) = w
        .holder()
        .search(&format!("Consent?patient={}", w.patient))
        .await;
    assert!(rules.contains(&declared));
    // The patient withdraws it: closed again.
    assert_eq!(
        w.holder().delete(&format!("Consent/{declared}")).await.0 / 100,
        2
    );
    assert_eq!(pro.get(&format!("DocumentReference/{doc}")).await.0, 403);
    // Blocked: cannot declare.
    w.rule(block(&dr)).await;
    let (status, _) = pro
        .post("Consent", &consent(&w.patient, authorise(&dr)))
        .await;
    assert_eq!(status, 403);
}

/// A notice for each access session of a professional (four hours), not only the first.
async fn a_notice_for_each_access_session(backend: Backend) {
    let w = World::new(backend).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let read_at = |t: String| {
        let pro = w.pro(&dr);
        let url = pro.url(&format!("DocumentReference/{doc}"));
        async move {
            let res = pro
                .client
                .get(url)
                .header("X-Carnet-Now", t)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 200);
        }
    };
    read_at("2026-12-02T08:10:00Z".into()).await;
    read_at("2026-12-02T09:00:00Z".into()).await;
    read_at("2026-12-02T14:00:00Z".into()).await;
    let (status, notices) = w
        .holder()
        .get(&format!(
            "Communication?recipient=Patient/{}&_count=100",
            w.patient
        ))
        .await;
    assert_eq!(status, 200);
    let sessions = notices["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"].to_string().contains("professional-access"))
        .filter(|e| e["resource"]["about"][0]["reference"] == format!("Practitioner/{dr}"))
        .count();
    assert_eq!(sessions, 2, "{notices}");
}

both_backends!(
    a_hospital_system_acts_for_its_professional,
    backend_services_reach_only_their_part,
    a_masked_then_deleted_resource_stays_masked_in_its_history,
    a_binary_is_judged_with_its_document,
    tre_a07_under_its_oid_hides_as_under_its_url,
    a_parent_opens_to_a_professional_only_what_the_parent_sees,
    history_pages_hold_only_what_is_visible,
    emergency_access_follows_the_setting_and_the_patient,
    mask_everything_closes_the_record_until_undone,
    the_care_team_declares_itself_and_the_patient_keeps_control,
    a_notice_for_each_access_session,
);
