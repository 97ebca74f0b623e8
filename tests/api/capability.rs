//! The CapabilityStatement tells the truth: every interaction it lists works.

use crate::both_backends;
use crate::helpers::*;
use serde_json::json;

async fn capability_statement_lists_what_works(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, cs) = app.get_json("metadata").await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 13);
    assert!(!types.contains(&"Observation"));
    // Exercise every advertised type-level interaction on every advertised type.
    for r in resources {
        let t = r["type"].as_str().unwrap();
        let codes: Vec<&str> = r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        let minimal = minimal_resource(t);
        let created = app.create(&minimal).await;
        let id = created["id"].as_str().unwrap();
        for code in codes {
            let status = match code {
                "read" => app.get(&format!("{t}/{id}")).await.status(),
                "vread" => app.get(&format!("{t}/{id}/_history/1")).await.status(),
                "update" => {
                    let mut u = created.clone();
                    u["meta"] = json!({});
                    app.put(&format!("{t}/{id}"), &u).await.status()
                }
                "history-instance" => app.get(&format!("{t}/{id}/_history")).await.status(),
                "history-type" => app.get(&format!("{t}/_history")).await.status(),
                "create" => app.post(t, &minimal).await.status(),
                "search-type" => app.get(&format!("{t}?_id={id}")).await.status(),
                "delete" => continue,
                "patch" => app
                    .client
                    .patch(app.url(&format!("{t}/{id}")))
                    .header("Content-Type", "application/json-patch+json")
                    .body(
                        json!([{"op": "add", "path": "/securityLabel", "value": [{"coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                             "code": "N"}]}]}])
                        .to_string(),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status(),
                other => panic!("{t}: untested interaction {other}"),
            };
            assert!(status.is_success(), "{t} {code}: {status}");
        }
        // What is advertised works; what is not is refused.
        let deletable = r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["code"] == "delete");
        assert_eq!(
            app.delete(&format!("{t}/{id}")).await.status(),
            if deletable { 204 } else { 405 },
            "{t} delete"
        );
    }
    let system: Vec<&str> = cs["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(system, vec!["transaction", "batch", "history-system"]);
    assert_eq!(app.get("_history").await.status(), 200);
    // Every advertised search parameter is accepted in strict mode (an unknown one is not).
    for r in resources {
        let t = r["type"].as_str().unwrap();
        for p in r["searchParam"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let value = match p["type"].as_str().unwrap() {
                "date" => "ge2000-01-01",
                "reference" => "Patient/x",
                _ => "x",
            };
            let res = app
                .client
                .get(app.url(&format!("{t}?{name}={value}")))
                .header("Prefer", "handling=strict")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{t}?{name}");
        }
    }
    let res = app
        .client
        .get(app.url("Patient?colour=blue"))
        .header("Prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let xml = app
        .client
        .get(app.url("metadata"))
        .header("Accept", FHIR_XML)
        .send()
        .await
        .unwrap();
    assert!(xml
        .text()
        .await
        .unwrap()
        .contains("<CapabilityStatement xmlns=\"http://hl7.org/fhir\">"));
}

/// The smallest valid instance of each type.
fn minimal_resource(t: &str) -> serde_json::Value {
    match t {
        "Binary" => json!({"resourceType": t, "contentType": "text/plain", "data": "Qm9uam91cg=="}),
        "DocumentReference" => {
            json!({"resourceType": t, "status": "current", "content": [{"attachment": {"contentType": "application/pdf"}}]})
        }
        "Immunization" => {
            json!({"resourceType": t, "status": "completed", "vaccineCode": {"text": "DTCaP"}, "patient": {"reference": "Patient/1"}, "occurrenceDateTime": "2025-01-01"})
        }
        "Appointment" => {
            json!({"resourceType": t, "status": "booked", "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}]})
        }
        "Consent" => {
            json!({"resourceType": t, "status": "active", "scope": {"text": "privacy"}, "category": [{"text": "x"}]})
        }
        "AuditEvent" => {
            json!({"resourceType": t, "type": {"code": "rest"}, "recorded": "2025-01-01T00:00:00Z",
            "agent": [{"requestor": true, "who": {"display": "x"}}], "source": {"observer": {"display": "carnet"}}})
        }
        "Communication" => json!({"resourceType": t, "status": "completed"}),
        "RelatedPerson" => json!({"resourceType": t, "patient": {"reference": "Patient/1"}}),
        "Subscription" => json!({"resourceType": t, "status": "requested", "reason": "x",
            "criteria": "Communication?status=completed",
            "channel": {"type": "rest-hook", "endpoint": "https://subscriber.example/hook"}}),
        _ => json!({"resourceType": t}),
    }
}

both_backends!(capability_statement_lists_what_works);
