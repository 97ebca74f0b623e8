//! The access trail tells nobody what they were refused (issue 15): a refused request leaves
//! its requester a trace of what they asked, never of what matched, what was withheld or
//! whose record it is; a trace is as hidden as what it concerns; no chain through the trail
//! tests a field of a Patient; and a read's trace survives a crash (SIGKILL).

use crate::both_backends;
use crate::helpers::*;
use serde_json::{json, Value};

/// Every reference a Bundle of AuditEvents names (agents aside).
fn entity_refs(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| {
            e["resource"]["entity"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|en| en["what"]["reference"].as_str().map(str::to_string))
        .collect()
}

fn traces(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

/// What a trace says, without what differs between any two (ids, times, request ids).
fn gist(trace: &Value) -> Value {
    json!({"subtype": trace["subtype"], "outcome": trace["outcome"],
        "entities": trace["entity"].as_array().map(|a| a.len()),
        "refs": entity_refs(&json!({"entry": [{"resource": trace}]}))})
}

/// "Seuls les professionnels autorisés par l'assuré peuvent accéder aux documents": a
/// blocked professional's searches answer nothing, and their own traces must not answer
/// either — a search that matches two documents and one that matches none leave the same
/// trace (what they asked, answered), naming no document and no patient. The patient sees
/// the refusal in full.
async fn a_refusal_leaves_its_requester_no_inventory_of_the_record(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let a = w.document(&w.mt, CONSULTATION, &[]).await;
    let b = w.document(&w.mt, CONSULTATION, &[]).await;
    w.rule(block(&dr)).await;
    let pro = w.pro(&dr);
    let matching = format!(
        "DocumentReference?patient={}&type={LOINC}|{CONSULTATION}",
        w.patient
    );
    let (ids, total) = pro.search(&matching).await;
    assert_eq!(
        (ids.len(), total),
        (0, 0),
        "a blocked professional finds nothing"
    );
    let (_, mine) = pro
        .get(&format!("AuditEvent?agent=Practitioner/{dr}&_count=100"))
        .await;
    let before = traces(&mine);
    let refs = entity_refs(&mine);
    for hidden in [
        format!("DocumentReference/{a}"),
        format!("DocumentReference/{b}"),
        format!("Patient/{}", w.patient),
    ] {
        assert!(
            !refs.contains(&hidden),
            "their trail names {hidden}: {mine}"
        );
    }
    let asked: Vec<&Value> = before
        .iter()
        .filter(|t| {
            t["entity"][0]["name"]
                .as_str()
                .is_some_and(|n| n.contains("DocumentReference?"))
        })
        .collect();
    assert_eq!(
        asked.len(),
        1,
        "their refused search is traced, as asked: {mine}"
    );
    // The same search matching nothing leaves a trace saying the same.
    let nothing = format!(
        "DocumentReference?patient={}&type={LOINC}|0000-0",
        w.patient
    );
    pro.search(&nothing).await;
    let (_, mine) = pro
        .get(&format!("AuditEvent?agent=Practitioner/{dr}&_count=100"))
        .await;
    let asked_again: Vec<Value> = traces(&mine)
        .into_iter()
        .filter(|t| {
            t["entity"][0]["name"]
                .as_str()
                .is_some_and(|n| n.contains("0000"))
        })
        .collect();
    assert_eq!(asked_again.len(), 1, "{mine}");
    assert_eq!(
        gist(&asked_again[0]),
        gist(asked[0]),
        "no yes/no oracle in the trail"
    );
    // The patient's history shows the refusal, documents included.
    let (_, history) = w
        .holder()
        .get(&format!("AuditEvent?patient={}&_count=200", w.patient))
        .await;
    let refused_by_dr: Vec<Value> = traces(&history)
        .into_iter()
        .filter(|t| t["outcome"] != "0")
        .filter(|t| t["agent"][0]["who"]["reference"] == json!(format!("Practitioner/{dr}")))
        .collect();
    assert!(!refused_by_dr.is_empty(), "{history}");
    assert!(entity_refs(
        &json!({"entry": refused_by_dr.iter().map(|t| json!({"resource": t})).collect::<Vec<_>>()})
    )
    .contains(&format!("DocumentReference/{a}")));
}

/// A blocked professional cannot test the patient's birth date, or their médecin traitant,
/// through the traces they may see.
async fn no_chain_through_the_trail_tests_a_patient_field(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(block(&dr)).await;
    let pro = w.pro(&dr);
    let (status, _) = pro.get(&format!("Patient/{}", w.patient)).await;
    assert_eq!(status, 403);
    for query in [
        "AuditEvent?patient.birthdate=1980-05-17&_summary=count".to_string(),
        format!(
            "AuditEvent?patient.general-practitioner=Practitioner/{}",
            w.mt
        ),
        format!("AuditEvent?_has:Consent:patient:actor=Practitioner/{dr}"),
    ] {
        let (status, body) = pro.get(&query).await;
        assert!(status == 403 || status == 400, "{query}: {status} {body}");
        assert!(body["total"].is_null(), "{query} answers no count: {body}");
    }
}

/// A refused change of a masked document tells its requester nothing of whose it is: the
/// trace of a refused PUT on a masked document names no patient, exactly like a PUT on an
/// id that never existed.
async fn a_refused_update_names_no_patient(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let masked = w.document(&w.mt, CONSULTATION, &["MASQUE_PS"]).await;
    let pro = w.pro(&dr);
    let doc = json!({"resourceType": "DocumentReference", "id": masked, "status": "current",
        "subject": {"reference": format!("Patient/{}", w.patient)},
        "content": [{"attachment": {"contentType": "application/pdf"}}]});
    let (status, _) = pro.put(&format!("DocumentReference/{masked}"), &doc).await;
    assert_eq!(status, 404, "a masked document looks absent");
    let (_, mine) = pro
        .get(&format!("AuditEvent?agent=Practitioner/{dr}&_count=100"))
        .await;
    let refused: Vec<Value> = traces(&mine)
        .into_iter()
        .filter(|t| t["outcome"] != "0")
        .collect();
    assert!(
        !refused.is_empty(),
        "the refusal is traced for its requester: {mine}"
    );
    for t in &refused {
        let refs = entity_refs(&json!({"entry": [{"resource": t}]}));
        assert!(refs.is_empty(), "a refusal's trace names {refs:?}: {t}");
    }
    assert!(
        refused
            .iter()
            .any(|t| t["entity"][0]["name"] == json!(format!("DocumentReference/{masked}"))),
        "it says what was asked: {mine}"
    );
}

/// The content of a document hidden from the patient until the announcement consultation
/// is as hidden in the patient's access history as the document itself.
async fn a_hidden_documents_binary_is_hidden_in_the_patients_history(backend: Backend) {
    let w = World::new(backend).await;
    let doc = w
        .document(&w.mt, CONSULTATION, &["INVISIBLE_PATIENT"])
        .await;
    let (status, binary) = w
        .pro(&w.mt)
        .post(
            "Binary",
            &json!({"resourceType": "Binary", "contentType": "application/pdf",
                "securityContext": {"reference": format!("DocumentReference/{doc}")},
                "data": "JVBERi0xLjQK"}),
        )
        .await;
    assert_eq!(status, 201, "{binary}");
    let binary = binary["id"].as_str().unwrap().to_string();
    let (_, history) = w
        .holder()
        .get(&format!("AuditEvent?patient={}&_count=200", w.patient))
        .await;
    let refs = entity_refs(&history);
    assert!(!refs.contains(&format!("Binary/{binary}")), "{history}");
    assert!(
        !refs.contains(&format!("DocumentReference/{doc}")),
        "{history}"
    );
    // The médecin traitant's view of the record has both.
    let (_, theirs) = w
        .pro(&w.mt)
        .get(&format!("AuditEvent?patient={}&_count=200", w.patient))
        .await;
    assert!(
        entity_refs(&theirs).contains(&format!("Binary/{binary}")),
        "{theirs}"
    );
}

/// Filing needs no authorisation, but filing a Binary for a document one may not see must
/// not tell whose record that document is in.
async fn filing_a_binary_for_a_hidden_document_tells_nothing(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    w.rule(block(&dr)).await;
    let pro = w.pro(&dr);
    let (status, body) = pro
        .post(
            "Binary",
            &json!({"resourceType": "Binary", "contentType": "application/pdf",
                "securityContext": {"reference": format!("DocumentReference/{doc}")},
                "data": "JVBERi0xLjQK"}),
        )
        .await;
    assert!(
        status == 201 || status == 404 || status == 403,
        "{status} {body}"
    );
    let (_, mine) = pro
        .get(&format!("AuditEvent?agent=Practitioner/{dr}&_count=100"))
        .await;
    let refs = entity_refs(&mine);
    assert!(
        !refs.contains(&format!("Patient/{}", w.patient)),
        "their trail names the document's patient: {mine}"
    );
}

/// The `carnet` binary serving `database_url` (with `--dev`, its files in `data_dir`); its
/// address.
fn start_carnet(data_dir: &std::path::Path, database_url: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--database-url", database_url])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("CARNET_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if line.contains("carnet starting") {
            let v: Value = serde_json::from_str(&line).unwrap();
            break v["listen"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}/fhir"))
}

/// "Every access to patient data leaves an AuditEvent": a read answered 200 has its trace
/// on disk before the answer leaves — the process killed (SIGKILL) right after, the trace
/// is there when the server comes back.
async fn a_reads_trace_survives_a_crash(backend: Backend) {
    let db = Database::new(&backend);
    let dir = tempfile::tempdir().unwrap();
    let token = dev_token(dir.path(), &carnet::auth::DevSubject::System, None);
    let client = client_with(&token);
    let (mut child, base) = start_carnet(dir.path(), &db.url);
    let created: Value = client
        .post(format!("{base}/Patient"))
        .header("Content-Type", FHIR_JSON)
        .body(json!({"resourceType": "Patient", "name": [{"family": "Durable"}]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let res = client
        .get(format!("{base}/Patient/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();
    let (mut child, base) = start_carnet(dir.path(), &db.url);
    let bundle: Value = client
        .get(format!("{base}/AuditEvent?patient={id}&_count=50"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let reads = traces(&bundle)
        .into_iter()
        .filter(|t| t["subtype"][0]["code"] == "read")
        .count();
    assert_eq!(reads, 1, "the read's trace survived: {bundle}");
}

/// The patient's access history is the log, searched like any FHIR resource: by outcome,
/// interaction, entity and date, newest first unless sorted, paged with links and a total
/// that counts what the viewer sees.
async fn the_access_history_is_searched_by_its_fields(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    let other = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    let allowed = w.pro(&dr);
    for _ in 0..3 {
        let (status, _) = allowed.get(&format!("DocumentReference/{doc}")).await;
        assert_eq!(status, 200);
    }
    let (status, _) = w.pro(&other).get(&format!("DocumentReference/{doc}")).await;
    assert!(status == 403 || status == 404, "never authorised: {status}");
    let holder = w.holder();
    let p = &w.patient;
    let ids = |b: &Value| -> Vec<String> {
        traces(b)
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, reads) = holder
        .get(&format!(
            "AuditEvent?patient={p}&entity=DocumentReference/{doc}&subtype=read&outcome=0"
        ))
        .await;
    assert_eq!(status, 200, "{reads}");
    let reads_of_dr = traces(&reads)
        .iter()
        .filter(|t| t["agent"][0]["who"]["reference"] == json!(format!("Practitioner/{dr}")))
        .count();
    assert_eq!(reads_of_dr, 3, "three reads answered: {reads}");
    assert!(traces(&reads).iter().all(|t| t["outcome"] == "0"));
    let (_, refused) = holder
        .get(&format!("AuditEvent?patient={p}&outcome=4"))
        .await;
    assert!(
        traces(&refused)
            .iter()
            .any(
                |t| t["agent"][0]["who"]["reference"] == json!(format!("Practitioner/{other}"))
                    && entity_refs(&json!({"entry": [{"resource": t}]}))
                        .contains(&format!("DocumentReference/{doc}"))
            ),
        "the refusal is in the patient's history: {refused}"
    );
    assert!(traces(&refused).iter().all(|t| t["outcome"] == "4"));
    let (_, by_agent) = holder
        .get(&format!(
            "AuditEvent?patient={p}&agent=Practitioner/{other}"
        ))
        .await;
    assert!(!traces(&by_agent).is_empty());
    assert!(traces(&by_agent)
        .iter()
        .all(|t| t["agent"][0]["who"]["reference"] == json!(format!("Practitioner/{other}"))));
    // Newest first by default, oldest first when asked.
    let (_, newest) = holder
        .get(&format!("AuditEvent?patient={p}&_count=100"))
        .await;
    let (_, oldest) = holder
        .get(&format!("AuditEvent?patient={p}&_count=100&_sort=date"))
        .await;
    let recorded = |b: &Value| -> Vec<String> {
        traces(b)
            .iter()
            .map(|t| t["recorded"].as_str().unwrap().to_string())
            .collect()
    };
    let mut sorted = recorded(&newest);
    sorted.sort();
    sorted.reverse();
    assert_eq!(recorded(&newest), sorted, "newest first");
    // (Each search of the history is itself an access to the record: later ones find the
    // traces of earlier ones.)
    let mut asc = ids(&newest);
    asc.reverse();
    assert_eq!(
        ids(&oldest)[..asc.len()],
        asc[..],
        "_sort=date: oldest first"
    );
    // Dates.
    let (_, none) = holder
        .get(&format!("AuditEvent?patient={p}&date=lt2000-01-01"))
        .await;
    assert_eq!(none["total"], 0);
    let (_, all) = holder
        .get(&format!(
            "AuditEvent?patient={p}&date=ge2000-01-01&_count=100"
        ))
        .await;
    assert!(all["total"].as_i64() > newest["total"].as_i64(), "{all}");
    // Paging: every trace once, the total the same on every page.
    assert!(newest["total"].as_i64().unwrap() >= 5, "{newest}");
    let mut seen = Vec::new();
    let (_, mut page) = holder
        .get(&format!("AuditEvent?patient={p}&_count=2"))
        .await;
    let total = page["total"].as_i64().unwrap();
    loop {
        assert_eq!(page["total"].as_i64(), Some(total), "{page}");
        seen.extend(ids(&page));
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        match next {
            Some(url) => {
                let (status, body) = holder.send(holder.client.get(&url)).await;
                assert_eq!(status, 200);
                page = body;
            }
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no trace twice: {seen:?}");
    assert_eq!(
        seen.len() as i64,
        total,
        "the pages together are the search"
    );
    assert!(
        ids(&newest).iter().all(|id| seen.contains(id)),
        "every earlier trace is on a page"
    );
    // The log answers what it keeps, and says what it does not.
    let (status, body) = holder
        .send(
            holder
                .client
                .get(holder.url(&format!("AuditEvent?patient={p}&entity-name=x")))
                .header("Prefer", "handling=strict"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

/// A backend service's AuditEvent joins the log as posted: read back the same, found by
/// what it names, and never changed or deleted afterwards.
async fn a_posted_audit_event_is_kept_as_posted(backend: Backend) {
    let w = World::new(backend).await;
    let system = w.system();
    let event = json!({"resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "action": "R", "recorded": "2026-11-30T10:00:00Z", "outcome": "0",
        "agent": [{"requestor": true, "who": {"display": "Système du CH"}}],
        "source": {"observer": {"display": "CH de Test"}},
        "entity": [{"what": {"reference": format!("Patient/{}", w.patient)}}]});
    let (status, created) = system.post("AuditEvent", &event).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, read) = system.get(&format!("AuditEvent/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read["source"]["observer"]["display"], "CH de Test");
    assert_eq!(read["type"]["code"], "110110");
    assert_eq!(read["meta"]["versionId"], "1");
    let (_, v1) = system.get(&format!("AuditEvent/{id}/_history/1")).await;
    assert_eq!(v1["id"], json!(id));
    let (status, _) = system.get(&format!("AuditEvent/{id}/_history/2")).await;
    assert_eq!(status, 404);
    let (_, found) = system
        .get(&format!(
            "AuditEvent?entity=Patient/{}&type=110110",
            w.patient
        ))
        .await;
    assert_eq!(
        traces(&found)
            .iter()
            .map(|t| t["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!(id)],
        "{found}"
    );
    let (_, in_history) = w
        .holder()
        .get(&format!("AuditEvent?patient={}&date=2026-11-30", w.patient))
        .await;
    assert!(
        traces(&in_history).iter().any(|t| t["id"] == json!(id)),
        "{in_history}"
    );
    let mut changed = read.clone();
    changed["outcome"] = json!("4");
    let (status, _) = system.put(&format!("AuditEvent/{id}"), &changed).await;
    assert_eq!(status, 405);
    let (status, _) = system.delete(&format!("AuditEvent/{id}")).await;
    assert_eq!(status, 405);
    let (_, after) = system.get(&format!("AuditEvent/{id}")).await;
    assert_eq!(after["outcome"], "0", "unchanged");
    // A professional may not write the trail.
    let dr = practitioner(&w.app, "10").await;
    let (status, _) = w.pro(&dr).post("AuditEvent", &event).await;
    assert_eq!(status, 403);
}

both_backends!(
    the_access_history_is_searched_by_its_fields,
    a_posted_audit_event_is_kept_as_posted,
    a_refusal_leaves_its_requester_no_inventory_of_the_record,
    no_chain_through_the_trail_tests_a_patient_field,
    a_refused_update_names_no_patient,
    a_hidden_documents_binary_is_hidden_in_the_patients_history,
    a_reads_trace_survives_a_crash,
    filing_a_binary_for_a_hidden_document_tells_nothing,
);
