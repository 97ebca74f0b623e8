//! The patient's rules, in the seeds' words, through the real server: block a professional,
//! mask a document, emergency access allowed then objected to, a child's record seen by
//! the parent, a document hidden from the patient until a month has passed, the access
//! history, and who may write the rules, delete a document or rewrite a trace.

use crate::both_backends;
use crate::helpers::*;
use carnet::auth::{DevOptions, DevSubject};
use serde_json::{json, Value};

/// "The patient can block or unblock a specific professional. A blocked professional
/// cannot access the record even if the patient has authorised them."
async fn a_blocked_professional_gets_nothing_until_unblocked(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let as_dr = w.pro(&dr);
    // Not authorised yet: the record stays closed, the patient can still be found.
    assert_eq!(as_dr.get(&format!("DocumentReference/{doc}")).await.0, 403);
    assert_eq!(as_dr.get(&format!("Patient/{}", w.patient)).await.0, 200);
    w.rule(authorise(&dr)).await;
    assert_eq!(as_dr.get(&format!("DocumentReference/{doc}")).await.0, 200);
    let q = format!("DocumentReference?patient={}", w.patient);
    assert_eq!(as_dr.search(&q).await, (vec![doc.clone()], 1));
    let block_id = w.rule(block(&dr)).await;
    // Blocked: every path.
    let (status, body) = as_dr.get(&format!("DocumentReference/{doc}")).await;
    assert_eq!(status, 403);
    assert!(outcome_text(&body).contains("blocked"), "{body}");
    assert_eq!(as_dr.get(&format!("Patient/{}", w.patient)).await.0, 403);
    assert_eq!(as_dr.search(&q).await, (vec![], 0));
    let (_, count) = as_dr.get(&format!("{q}&_summary=count")).await;
    assert_eq!(count["total"], 0);
    let (ids, total) = as_dr
        .search(&format!(
            "Patient?_id={}&_revinclude=DocumentReference:subject",
            w.patient
        ))
        .await;
    assert_eq!((ids.len(), total), (0, 0));
    assert_eq!(
        as_dr
            .get(&format!("DocumentReference/{doc}/_history"))
            .await
            .0,
        403
    );
    assert_eq!(
        as_dr
            .get(&format!("DocumentReference/{doc}/_history/1"))
            .await
            .0,
        403
    );
    let (_, everything) = as_dr
        .get(&format!("Patient/{}/DocumentReference", w.patient))
        .await;
    assert_eq!(everything["total"], 0);
    // Through an app with narrower scopes, the same.
    let app_token = dev_token(
        &w.app.args.data_dir,
        &DevSubject::Practitioner(dr.clone()),
        Some("user/DocumentReference.rs"),
    );
    let via_app = As {
        client: client_with(&app_token),
        base: w.app.base.clone(),
    };
    assert_eq!(
        via_app.get(&format!("DocumentReference/{doc}")).await.0,
        403
    );
    // A batch GET is refused too.
    let (_, batch) = as_dr
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": format!("DocumentReference/{doc}")}}]}),
        )
        .await;
    assert!(
        batch["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403"),
        "{batch}"
    );
    // No app can lift a block: a third-party app acting for the patient may add rules and
    // mask, never the reverse (only the patient, in Carnet itself).
    let app = w.token(
        DevSubject::Patient(w.patient.clone()),
        DevOptions {
            third_party_app: true,
            ..Default::default()
        },
    );
    let (status, body) = app.delete(&format!("Consent/{block_id}")).await;
    assert_eq!(status, 403, "{body}");
    assert!(outcome_text(&body).contains("not through an app"), "{body}");
    let masked = w.document(&w.mt, CONSULTATION, &["MASQUE_PS"]).await;
    let unmask = json!([{"op": "remove", "path": "/securityLabel"}]);
    let (status, body) = app
        .patch(&format!("DocumentReference/{masked}"), &unmask)
        .await;
    assert_eq!(status, 403, "{body}");
    let extra = app
        .post("Consent", &consent(&w.patient, object(&["BTG"])))
        .await;
    assert_eq!(extra.0, 201, "an app may add a rule: {}", extra.1);
    assert_eq!(as_dr.get(&format!("DocumentReference/{doc}")).await.0, 403);
    // Unblocking (the patient withdraws the rule) restores the authorisation.
    let (status, _) = w.holder().delete(&format!("Consent/{block_id}")).await;
    assert_eq!(status, 204);
    assert_eq!(as_dr.get(&format!("DocumentReference/{doc}")).await.0, 200);
}

/// "Masked data stays visible to its author and to the médecin traitant"; no other
/// professional learns it exists, by any path.
async fn a_masked_document_is_seen_only_by_the_patient_its_author_and_the_medecin_traitant(
    backend: Backend,
) {
    let w = World::new(backend).await;
    let author = practitioner(&w.app, "10").await;
    let dr = practitioner(&w.app, "10").await;
    let equivalent = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    w.rule(
        json!({"type": "permit", "actor": actor("PRCP", &format!("Practitioner/{equivalent}")),
        "securityLabel": [{"system": TRE_A07, "code": "MASQUE_PS"}]}),
    )
    .await;
    let open = w.document(&author, CONSULTATION, &[]).await;
    let masked = w.document(&author, CONSULTATION, &[]).await;
    // The patient masks it with a JSON Patch on securityLabel (PDSm).
    let mask = json!([{"op": "add", "path": "/securityLabel",
        "value": [{"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]}]}]);
    let (status, body) = w
        .holder()
        .patch(&format!("DocumentReference/{masked}"), &mask)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["securityLabel"][0]["coding"][0]["code"], "MASQUE_PS");
    // PATCH may change nothing else, and only documents.
    let (status, body) = w
        .holder()
        .patch(
            &format!("DocumentReference/{masked}"),
            &json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/x"}]),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = w
        .holder()
        .patch(
            &format!("Patient/{}", w.patient),
            &json!([{"op": "replace", "path": "/active", "value": false}]),
        )
        .await;
    assert_eq!(status, 405);
    // Nor may a patient rewrite a professional's document by PUT.
    let (_, mut rewritten) = w.holder().get(&format!("DocumentReference/{open}")).await;
    rewritten["description"] = json!("réécrit");
    let (status, _) = w
        .holder()
        .put(&format!("DocumentReference/{open}"), &rewritten)
        .await;
    assert_eq!(status, 403);
    let binary = w
        .app
        .create(
            &json!({"resourceType": "Binary", "contentType": "text/plain", "data": "c2VjcmV0",
            "securityContext": {"reference": format!("DocumentReference/{masked}")}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let as_dr = w.pro(&dr);
    let q = format!("DocumentReference?patient={}", w.patient);
    assert_eq!(as_dr.search(&q).await, (vec![open.clone()], 1));
    assert_eq!(
        as_dr.get(&format!("DocumentReference/{masked}")).await.0,
        404
    );
    assert_eq!(
        as_dr
            .get(&format!("DocumentReference/{masked}/_history/1"))
            .await
            .0,
        404,
        "the version written before the mask is masked too"
    );
    assert_eq!(
        as_dr
            .get(&format!("DocumentReference/{masked}/_history"))
            .await
            .0,
        404
    );
    assert_eq!(as_dr.get(&format!("Binary/{binary}")).await.0, 404);
    let (ids, _) = as_dr
        .search(&format!(
            "Patient?_id={}&_revinclude=DocumentReference:subject",
            w.patient
        ))
        .await;
    assert_eq!(ids.len(), 1);
    let (_, bundle) = as_dr
        .get(&format!(
            "Patient?_id={}&_revinclude=DocumentReference:subject",
            w.patient
        ))
        .await;
    let included: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(included, vec![open.as_str()]);
    let (_, compartment) = as_dr
        .get(&format!("Patient/{}/DocumentReference", w.patient))
        .await;
    assert_eq!(compartment["total"], 1);
    // The author (never authorised), the médecin traitant, equivalent rights, the patient.
    for who in [&author, &w.mt, &equivalent] {
        assert_eq!(
            w.pro(who)
                .get(&format!("DocumentReference/{masked}"))
                .await
                .0,
            200
        );
        assert_eq!(w.pro(who).get(&format!("Binary/{binary}")).await.0, 200);
    }
    assert_eq!(w.pro(&author).search(&q).await.1, 2);
    assert_eq!(
        w.pro(&author)
            .get(&format!("DocumentReference/{open}"))
            .await
            .0,
        200,
        "an author also sees the documents they filed"
    );
    assert_eq!(w.holder().search(&q).await.1, 2);
    // A professional cannot unmask, not even the author or the médecin traitant.
    let unmask = json!([{"op": "remove", "path": "/securityLabel"}]);
    for who in [&author, &w.mt] {
        let (status, _) = w
            .pro(who)
            .patch(&format!("DocumentReference/{masked}"), &unmask)
            .await;
        assert_eq!(status, 403);
    }
    // The patient unmasks: seen again.
    let (status, _) = w
        .holder()
        .patch(&format!("DocumentReference/{masked}"), &unmask)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        as_dr.get(&format!("DocumentReference/{masked}")).await.0,
        200
    );
}

/// "Professionals may access the record ... unless that person objected beforehand"; the
/// SAMU regulating doctor "unless the person expressly objected". Masked stays masked.
async fn emergency_access_is_allowed_traced_and_ends_with_an_objection(backend: Backend) {
    let w = World::new(backend).await;
    let er = practitioner(&w.app, "10").await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let masked = w.document(&w.mt, CONSULTATION, &["MASQUE_PS"]).await;
    let btg = |reason: Option<&str>| {
        w.token(
            DevSubject::Practitioner(er.clone()),
            DevOptions {
                purpose: Some("BTG".into()),
                reason: reason.map(str::to_string),
                acting_for: Some(w.patient.clone()),
                ..Default::default()
            },
        )
    };
    let samu = w.token(
        DevSubject::Practitioner(er.clone()),
        DevOptions {
            purpose: Some("ETREAT".into()),
            regulation: true,
            acting_for: Some(w.patient.clone()),
            ..Default::default()
        },
    );
    // An emergency opens the record it was declared for, no other.
    let elsewhere = w
        .app
        .create(&json!({"resourceType": "Patient",
            "identifier": [{"system": INS, "value": "180017512345699"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_glass = w.token(
        DevSubject::Practitioner(er.clone()),
        DevOptions {
            purpose: Some("BTG".into()),
            reason: Some("urgence".into()),
            acting_for: Some(elsewhere),
            ..Default::default()
        },
    );
    assert_eq!(
        other_glass.get(&format!("DocumentReference/{doc}")).await.0,
        403
    );
    assert_eq!(
        w.pro(&er).get(&format!("DocumentReference/{doc}")).await.0,
        403
    );
    let glass = btg(Some("patient inconscient aux urgences"));
    assert_eq!(glass.get(&format!("DocumentReference/{doc}")).await.0, 200);
    assert_eq!(
        glass.get(&format!("DocumentReference/{masked}")).await.0,
        404
    );
    assert_eq!(
        btg(None).get(&format!("DocumentReference/{doc}")).await.0,
        403,
        "an emergency needs a written reason"
    );
    // Traced with the reason, seen by the patient.
    let (ids, _) = w
        .holder()
        .search(&format!("AuditEvent?patient={}&_count=100", w.patient))
        .await;
    assert!(!ids.is_empty());
    let (_, bundle) = w
        .holder()
        .get(&format!("AuditEvent?patient={}&_count=100", w.patient))
        .await;
    let emergency = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|a| a["purposeOfEvent"][0]["coding"][0]["code"] == "BTG" && a["outcome"] == "0")
        .expect("an AuditEvent of the emergency access");
    assert_eq!(
        emergency["purposeOfEvent"][0]["text"],
        "patient inconscient aux urgences"
    );
    assert_eq!(
        emergency["agent"][0]["who"]["reference"],
        format!("Practitioner/{er}")
    );
    // The patient objects to emergency access: refused from the next request on.
    w.rule(object(&["BTG"])).await;
    assert_eq!(glass.get(&format!("DocumentReference/{doc}")).await.0, 403);
    // SAMU regulation is a separate objection.
    assert_eq!(samu.get(&format!("DocumentReference/{doc}")).await.0, 200);
    w.rule(object(&["ETREAT"])).await;
    assert_eq!(samu.get(&format!("DocumentReference/{doc}")).await.0, 403);
}

/// "The parent or legal representative exercises the minor's rights", except on data the
/// minor asked to hide from them (INVISIBLE_REPRESENTANTS_LEGAUX).
async fn a_parent_sees_the_childs_record_minus_what_is_hidden_from_representatives(
    backend: Backend,
) {
    let w = World::new(backend).await; // the patient here is the child
    let parent = w
        .app
        .create(&json!({"resourceType": "Patient",
            "identifier": [{"system": INS, "value": "280017512345602"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stranger = w
        .app
        .create(&json!({"resourceType": "Patient",
            "identifier": [{"system": INS, "value": "280017512345603"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = w.document(&w.mt, VACCINATION, &[]).await;
    let hidden = w
        .document(&w.mt, CONSULTATION, &["INVISIBLE_REPRESENTANTS_LEGAUX"])
        .await;
    // The registry records the guardianship: a RelatedPerson and a Consent.
    let rp = w
        .app
        .create(&json!({"resourceType": "RelatedPerson",
            "patient": {"reference": format!("Patient/{}", w.patient)},
            "identifier": [{"system": INS, "value": "280017512345602"}],
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
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
    let for_child = |who: &str| {
        w.token(
            DevSubject::Patient(who.into()),
            DevOptions {
                acting_for: Some(w.patient.clone()),
                ..Default::default()
            },
        )
    };
    let q = format!("DocumentReference?patient={}", w.patient);
    assert_eq!(for_child(&parent).search(&q).await, (vec![seen.clone()], 1));
    assert_eq!(
        for_child(&parent)
            .get(&format!("DocumentReference/{hidden}"))
            .await
            .0,
        404
    );
    assert_eq!(
        for_child(&parent)
            .get(&format!("DocumentReference/{seen}"))
            .await
            .0,
        200
    );
    // Someone else claiming to act for the child gets nothing.
    assert_eq!(for_child(&stranger).search(&q).await.1, 0);
    assert_eq!(
        for_child(&stranger)
            .get(&format!("DocumentReference/{seen}"))
            .await
            .0,
        404
    );
    let (status, _) = for_child(&stranger)
        .post("Consent", &consent(&w.patient, block(&w.mt)))
        .await;
    assert_eq!(status, 403);
    // The child sees both.
    assert_eq!(w.holder().search(&q).await.1, 2);
}

/// "The data becomes visible automatically 1 month after it was filed."
async fn a_document_hidden_from_the_patient_appears_after_a_month(backend: Backend) {
    let w = World::new(backend).await;
    let doc = w.document(&w.mt, IMAGING, &["INVISIBLE_PATIENT"]).await;
    let holder = w.holder();
    let q = format!("DocumentReference?patient={}", w.patient);
    assert_eq!(holder.get(&format!("DocumentReference/{doc}")).await.0, 404);
    assert_eq!(holder.search(&q).await.1, 0);
    let in_days = |days: i64| {
        let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let at = |days: i64| {
        holder
            .client
            .get(holder.url(&format!("DocumentReference/{doc}")))
            .header("X-Carnet-Now", in_days(days))
    };
    assert_eq!(at(20).send().await.unwrap().status(), 404);
    assert_eq!(at(32).send().await.unwrap().status(), 200);
    // The médecin traitant, author, saw it all along.
    assert_eq!(
        w.pro(&w.mt)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        200
    );
    // Nor do the traces tell the patient: a trace is as hidden as what it lists.
    let (_, traces) = holder
        .get(&format!("AuditEvent?patient={}&_count=200", w.patient))
        .await;
    assert!(traces["total"].as_i64().unwrap() > 0, "{traces}");
    assert!(
        !traces.to_string().contains(&doc),
        "a trace names the hidden document"
    );
}

/// "The holder can consult the traces"; a professional sees only their own; traces cannot
/// be rewritten; a refused request is traced too.
async fn the_patient_sees_who_accessed_and_traces_are_append_only(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let other = practitioner(&w.app, "10").await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    w.rule(authorise(&dr)).await;
    w.rule(authorise(&other)).await;
    assert_eq!(
        w.pro(&dr).get(&format!("DocumentReference/{doc}")).await.0,
        200
    );
    assert_eq!(
        w.pro(&other)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        200
    );
    w.rule(block(&other)).await;
    assert_eq!(
        w.pro(&other)
            .get(&format!("DocumentReference/{doc}"))
            .await
            .0,
        403
    );
    let q = format!("AuditEvent?patient={}&_count=200", w.patient);
    let (_, bundle) = w.holder().get(&q).await;
    let events: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let by = |pro: &str, outcome: &str| {
        events
            .iter()
            .filter(|a| {
                a["agent"][0]["who"]["reference"] == format!("Practitioner/{pro}")
                    && a["outcome"] == outcome
                    && a["entity"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["what"]["reference"] == format!("DocumentReference/{doc}"))
            })
            .count()
    };
    assert_eq!(by(&dr, "0"), 1, "Dr's read is traced once");
    assert_eq!(by(&other, "0"), 1);
    assert_eq!(by(&other, "4"), 1, "the refused read is traced");
    // A professional sees only their own traces.
    let (_, mine) = w.pro(&dr).get(&q).await;
    let agents: Vec<&Value> = mine["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"]["agent"][0]["who"]["reference"])
        .collect();
    assert!(!agents.is_empty());
    assert!(agents
        .iter()
        .all(|a| **a == json!(format!("Practitioner/{dr}"))));
    // Append-only, for everyone.
    let trace = events[0];
    let id = trace["id"].as_str().unwrap();
    let (status, _) = w.system().put(&format!("AuditEvent/{id}"), trace).await;
    assert_eq!(status, 405);
    let (status, _) = w.system().delete(&format!("AuditEvent/{id}")).await;
    assert_eq!(status, 405);
    let (status, _) = w.holder().delete(&format!("AuditEvent/{id}")).await;
    assert_eq!(status, 405);
    let mut forged = trace.clone();
    forged.as_object_mut().unwrap().remove("id");
    let (status, _) = w.holder().post("AuditEvent", &forged).await;
    assert_eq!(status, 403);
    let (status, _) = w.pro(&dr).post("AuditEvent", &forged).await;
    assert_eq!(status, 403);
    let (status, still) = w.system().get(&format!("AuditEvent/{id}")).await;
    assert_eq!((status, &still["meta"]["versionId"]), (200, &json!("1")));
}

/// Rules are the patient's: professionals and apps cannot write them, malformed ones are
/// refused; only the author deletes a document, logically; the matrix bounds professions.
async fn who_may_write_rules_delete_documents_and_read_which_types(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let nurse = practitioner(&w.app, "60").await;
    w.rule(authorise(&dr)).await;
    w.rule(authorise(&nurse)).await;
    let (status, _) = w
        .pro(&dr)
        .post("Consent", &consent(&w.patient, authorise(&nurse)))
        .await;
    assert_eq!(status, 403, "a professional cannot authorise another one");
    let (status, _) = w
        .pro(&dr)
        .post("Consent", &consent(&w.patient, block(&nurse)))
        .await;
    assert_eq!(status, 403, "nor block one");
    let (status, _) = w
        .system()
        .post("Consent", &consent(&w.patient, block(&dr)))
        .await;
    assert_eq!(
        status, 403,
        "nor can a backend service write the patient's rules"
    );
    let (status, body) = w
        .holder()
        .post(
            "Consent",
            &consent(
                &w.patient,
                json!({"type": "deny", "provision": [{"type": "permit"}]}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = w
        .holder()
        .post("Consent", &consent("someone-else", block(&dr)))
        .await;
    assert_eq!(
        status, 403,
        "a patient writes rules for their own record only"
    );
    // The médecin traitant is the patient's to declare, not a professional's.
    let (_, mut p) = w.pro(&dr).get(&format!("Patient/{}", w.patient)).await;
    p["generalPractitioner"] = json!([{"reference": format!("Practitioner/{dr}")}]);
    let (status, _) = w.pro(&dr).put(&format!("Patient/{}", w.patient), &p).await;
    assert_eq!(status, 403);
    // Deletion: the author only, logically.
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    assert_eq!(
        w.pro(&dr)
            .delete(&format!("DocumentReference/{doc}"))
            .await
            .0,
        403
    );
    assert_eq!(
        w.holder()
            .delete(&format!("DocumentReference/{doc}"))
            .await
            .0,
        403
    );
    let (status, _) = w
        .pro(&w.mt)
        .delete(&format!("DocumentReference/{doc}"))
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, gone) = w.pro(&dr).get(&format!("DocumentReference/{doc}")).await;
    assert_eq!((status, &gone["status"]), (200, &json!("entered-in-error")));
    let (_, history) = w
        .pro(&w.mt)
        .get(&format!("DocumentReference/{doc}/_history"))
        .await;
    assert_eq!(
        history["entry"].as_array().unwrap().len(),
        2,
        "history kept"
    );
    // What the rules cannot place is closed; chains and _has cannot look behind them.
    let loose = w
        .app
        .create(&json!({"resourceType": "Binary", "contentType": "text/plain", "data": "eA=="}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.pro(&dr).get(&format!("Binary/{loose}")).await.0, 404);
    let (status, _) = w
        .pro(&dr)
        .get("Patient?_has:DocumentReference:subject:security-label=MASQUE_PS")
        .await;
    assert_eq!(status, 403);
    let (status, _) = w
        .pro(&dr)
        .get("DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.8|180017512345601")
        .await;
    assert_eq!(
        status, 200,
        "PDSm's TD3.1a chain to Patient stays available"
    );
    // The directory and the médecin traitant are not professionals' to write.
    let (_, mut me) = w.pro(&dr).get(&format!("Practitioner/{nurse}")).await;
    me["name"] = json!([{"family": "Autre"}]);
    assert_eq!(
        w.pro(&nurse)
            .put(&format!("Practitioner/{nurse}"), &me)
            .await
            .0,
        403,
        "a professional cannot change their own profession or name"
    );
    let (status, _) = w
        .pro(&dr)
        .post(
            "Patient",
            &json!({"resourceType": "Patient",
                "generalPractitioner": [{"reference": format!("Practitioner/{dr}")}]}),
        )
        .await;
    assert_eq!(status, 403);
    // The matrice d'habilitation: a nurse reads a vaccination note, not an imaging report.
    let vaccination = w.document(&w.mt, VACCINATION, &[]).await;
    let imaging = w.document(&w.mt, IMAGING, &[]).await;
    assert_eq!(
        w.pro(&nurse)
            .get(&format!("DocumentReference/{vaccination}"))
            .await
            .0,
        200
    );
    assert_eq!(
        w.pro(&nurse)
            .get(&format!("DocumentReference/{imaging}"))
            .await
            .0,
        403
    );
    assert_eq!(
        w.pro(&dr)
            .get(&format!("DocumentReference/{imaging}"))
            .await
            .0,
        200
    );
}

/// The matrice d'habilitation reads the professional's professions on every decision:
/// a Practitioner whose qualification changes is judged by the new one from the next
/// request on (the professions are cached, never past a write of the Practitioner).
async fn a_change_of_profession_applies_to_the_next_read(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let path = format!("DocumentReference/{doc}");
    assert_eq!(w.pro(&dr).get(&path).await.0, 200);
    let as_profession = |code: &str| {
        json!({"resourceType": "Practitioner", "id": dr, "name": [{"family": "Dr"}],
            "qualification": [{"code": {"coding": [{"system": TRE_G15, "code": code}]}}]})
    };
    let requalify = |code: &'static str| {
        let (w, dr, body) = (&w, &dr, as_profession(code));
        async move {
            let res = w.app.put(&format!("Practitioner/{dr}"), &body).await;
            assert_eq!(res.status(), 200);
        }
    };
    // Now a profession (93) the matrice does not let read consultation reports.
    requalify("93").await;
    assert_eq!(w.pro(&dr).get(&path).await.0, 403);
    let q = format!("DocumentReference?patient={}", w.patient);
    assert_eq!(w.pro(&dr).search(&q).await, (vec![], 0));
    // And back.
    requalify("10").await;
    assert_eq!(w.pro(&dr).get(&path).await.0, 200);
    assert_eq!(w.pro(&dr).search(&q).await, (vec![doc.clone()], 1));
    // Through a transaction Bundle, then a deletion: the same.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": as_profession("93"),
        "request": {"method": "PUT", "url": format!("Practitioner/{dr}")}}]});
    assert_eq!(w.app.post("", &bundle).await.status(), 200);
    assert_eq!(w.pro(&dr).get(&path).await.0, 403);
    requalify("10").await;
    assert_eq!(w.pro(&dr).get(&path).await.0, 200);
    assert_eq!(
        w.app.delete(&format!("Practitioner/{dr}")).await.status(),
        204
    );
    assert_eq!(w.pro(&dr).get(&path).await.0, 403);
}

both_backends!(
    a_blocked_professional_gets_nothing_until_unblocked,
    a_masked_document_is_seen_only_by_the_patient_its_author_and_the_medecin_traitant,
    emergency_access_is_allowed_traced_and_ends_with_an_objection,
    a_parent_sees_the_childs_record_minus_what_is_hidden_from_representatives,
    a_document_hidden_from_the_patient_appears_after_a_month,
    the_patient_sees_who_accessed_and_traces_are_append_only,
    who_may_write_rules_delete_documents_and_read_which_types,
    a_change_of_profession_applies_to_the_next_read,
);
