//! `Patient/{id}/$everything`: the patient's whole record for them, what the rules open
//! for anyone else, page by page.

use crate::both_backends;
use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every resource of the export (following the next links), as "Type/id".
async fn export(who: &As, patient: &str, query: &str) -> (u16, BTreeSet<String>, i64) {
    let (status, mut bundle) = who
        .get(&format!("Patient/{patient}/$everything{query}"))
        .await;
    if status != 200 {
        return (status, BTreeSet::new(), -1);
    }
    let total = bundle["total"].as_i64().unwrap_or(-1);
    let mut seen = BTreeSet::new();
    loop {
        for e in bundle["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            let key = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            assert!(seen.insert(key.clone()), "{key} twice");
        }
        let next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        let Some(next) = next else { break };
        let res = who.client.get(&next).send().await.unwrap();
        assert_eq!(res.status(), 200);
        bundle = res.json().await.unwrap();
    }
    (status, seen, total)
}

async fn everything_is_the_record_as_each_may_see_it(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let consent_id = w.rule(authorise(&dr)).await;
    let open = w.document(&w.mt, CONSULTATION, &[]).await;
    let masked = w.document(&w.mt, CONSULTATION, &["MASQUE_PS"]).await;
    let hidden = w
        .document(&w.mt, CONSULTATION, &["INVISIBLE_PATIENT"])
        .await;
    let (status, vaccination) = w
        .system()
        .post(
            "Immunization",
            &json!({"resourceType": "Immunization", "status": "completed",
                "vaccineCode": {"text": "DTCaP"}, "patient": {"reference": format!("Patient/{}", w.patient)},
                "occurrenceDateTime": "2025-01-01"}),
        )
        .await;
    assert_eq!(status, 201);
    let vaccination = format!("Immunization/{}", vaccination["id"].as_str().unwrap());
    // Someone else's record stays out.
    let (_, other) = w
        .system()
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Autre"}]}),
        )
        .await;
    let other_doc = json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{}", other["id"].as_str().unwrap())},
        "content": [{"attachment": {"contentType": "application/pdf"}}]});
    assert_eq!(
        w.system().post("DocumentReference", &other_doc).await.0,
        201
    );

    let patient = format!("Patient/{}", w.patient);
    let doc = |id: &str| format!("DocumentReference/{id}");
    // The patient: everything but what is hidden from them until the announcement.
    let (status, mine, total) = export(&w.holder(), &w.patient, "?_count=2").await;
    assert_eq!(status, 200);
    assert_eq!(total as usize, mine.len());
    for want in [
        &patient,
        &doc(&open),
        &doc(&masked),
        &vaccination,
        &format!("Consent/{consent_id}"),
    ] {
        assert!(mine.contains(want.as_str()), "{want} missing from {mine:?}");
    }
    assert!(!mine.contains(&doc(&hidden)), "{mine:?}");
    assert!(
        mine.iter().any(|r| r.starts_with("Communication/")),
        "the notices: {mine:?}"
    );
    assert!(!mine.iter().any(|r| r.starts_with("AuditEvent/")));
    assert!(mine
        .iter()
        .all(|r| !r.contains(other["id"].as_str().unwrap())));
    // An authorised professional: not the masked document, nor the patient's rules' hidden parts.
    let (status, seen, _) = export(&w.pro(&dr), &w.patient, "").await;
    assert_eq!(status, 200);
    assert!(seen.contains(&doc(&open)) && seen.contains(&vaccination) && seen.contains(&patient));
    assert!(!seen.contains(&doc(&masked)), "{seen:?}");
    // The notices to the patient tell of other professionals: not theirs to read.
    assert!(
        !seen.iter().any(|r| r.starts_with("Communication/")),
        "{seen:?}"
    );
    // The médecin traitant sees the masked document too.
    let (_, mt_sees, _) = export(&w.pro(&w.mt), &w.patient, "").await;
    assert!(mt_sees.contains(&doc(&masked)));
    // Blocked: nothing at all, not even a count.
    w.rule(block(&dr)).await;
    let (status, seen, total) = export(&w.pro(&dr), &w.patient, "").await;
    assert_eq!((status, seen.len(), total), (200, 0, 0), "{seen:?}");
    // Narrowed by type; an unknown parameter is refused.
    let (_, vaccines, _) = export(&w.holder(), &w.patient, "?_type=Immunization").await;
    assert_eq!(vaccines, BTreeSet::from([vaccination.clone()]));
    let (status, body) = w
        .holder()
        .get(&format!("Patient/{}/$everything?start=2020", w.patient))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(outcome_text(&body).contains("start"));
    let _: Value = body;
}

both_backends!(everything_is_the_record_as_each_may_see_it);
