//! Bad input: each answered with a 4xx OperationOutcome that says what is wrong, and the
//! stored data is left exactly as it was.

use crate::both_backends;
use crate::helpers::*;
use serde_json::json;

/// (what, Content-Type, body, expected status, what the outcome must say)
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = app.client.request(method, app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn bad_bodies_are_refused_with_an_outcome_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let original = app
        .create(&json!({"resourceType": "Patient", "id": "x", "name": [{"family": "Intact"}]}))
        .await;
    let id = original["id"].as_str().unwrap().to_string();
    let path = format!("Patient/{id}");
    let put = reqwest::Method::PUT;
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Some(FHIR_JSON),
            b"{\"resourceType\": \"Patient\", ".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "malformed XML",
            Some(FHIR_XML),
            b"<Patient xmlns=\"http://hl7.org/fhir\"><name>".to_vec(),
            400,
            "XML",
        ),
        (
            "unknown element",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": id, "colour": "blue"})
                .to_string()
                .into_bytes(),
            400,
            "Patient.colour",
        ),
        (
            "wrong JSON type",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": id, "active": "yes"})
                .to_string()
                .into_bytes(),
            400,
            "Patient.active",
        ),
        (
            "bad code",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": id, "gender": "robot"})
                .to_string()
                .into_bytes(),
            400,
            "Patient.gender",
        ),
        (
            "bad date",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": id, "birthDate": "31/12/1990"})
                .to_string()
                .into_bytes(),
            400,
            "Patient.birthDate",
        ),
        (
            "nested unknown element",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": id, "contact": [{"nom": "x"}]})
                .to_string()
                .into_bytes(),
            400,
            "Patient.contact[0].nom",
        ),
        (
            "wrong resourceType for the URL",
            Some(FHIR_JSON),
            json!({"resourceType": "Practitioner", "id": id})
                .to_string()
                .into_bytes(),
            400,
            "Practitioner was sent to the Patient endpoint",
        ),
        (
            "id mismatch",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": "other"})
                .to_string()
                .into_bytes(),
            400,
            "does not match",
        ),
        (
            "missing id",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient"}).to_string().into_bytes(),
            400,
            "must carry the resource id",
        ),
        (
            "control character",
            Some(FHIR_JSON),
            json!({"resourceType": "Patient", "id": id, "name": [{"family": "a\u{0000}b"}]})
                .to_string()
                .into_bytes(),
            400,
            "Patient.name[0].family",
        ),
        (
            "not an object",
            Some(FHIR_JSON),
            b"[1,2,3]".to_vec(),
            400,
            "resourceType",
        ),
        ("empty body", Some(FHIR_JSON), Vec::new(), 400, "empty"),
        (
            "wrong content type",
            Some("text/plain"),
            json!({"resourceType": "Patient", "id": id})
                .to_string()
                .into_bytes(),
            415,
            "text/plain",
        ),
        (
            "no content type",
            None,
            json!({"resourceType": "Patient", "id": id})
                .to_string()
                .into_bytes(),
            415,
            "Content-Type",
        ),
        (
            "huge body",
            Some(FHIR_JSON),
            vec![b' '; 2 * 1024 * 1024],
            413,
            "exceeds the limit",
        ),
    ];
    for (what, ct, body, status, says) in cases {
        let (got, oo) = raw(&app, put.clone(), &path, ct, body).await;
        assert_eq!(got, status, "{what}: {oo}");
        let text = outcome_text(&oo);
        assert!(
            text.contains(says),
            "{what}: the outcome should mention {says:?}: {text}"
        );
        let (_, now) = app.get_json(&path).await;
        assert_eq!(now, original, "{what}: stored data changed");
    }
    let (_, history) = app.get_json(&format!("{path}/_history")).await;
    assert_eq!(
        history["entry"].as_array().unwrap().len(),
        1,
        "no version was added by bad input"
    );
    // Ids and criteria that could never be stored are answered without touching the database.
    for bad in [
        "Patient/a%00b",
        "Patient/a%00b/_history",
        "Patient/a%00b/_history/1",
        "Patient/with%20space",
    ] {
        let (status, oo) = app.get_json(bad).await;
        assert_eq!(status, 404, "{bad}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    let res = app
        .client
        .post(app.url("Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", "identifier=a%00b")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

async fn unknown_types_and_routes_answer_404_outcomes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, oo) = app.get_json("Observation/1").await;
    assert_eq!(status, 404);
    assert!(outcome_text(&oo).contains("'Observation' is not supported"));
    let (status, oo) = raw(
        &app,
        reqwest::Method::POST,
        "Observation",
        Some(FHIR_JSON),
        json!({"resourceType": "Observation"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(outcome_text(&oo).contains("not supported"));
    let (status, oo) = app.get_json("Patient/unknown-id").await;
    assert_eq!(status, 404);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let res = app
        .client
        .get(format!(
            "{}/nothing-here",
            app.base.trim_end_matches("/fhir")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (status, oo) = raw(
        &app,
        reqwest::Method::PATCH,
        "Patient/1",
        Some(FHIR_JSON),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(oo["resourceType"], "OperationOutcome");
}

both_backends!(
    bad_bodies_are_refused_with_an_outcome_and_change_nothing,
    unknown_types_and_routes_answer_404_outcomes
);
