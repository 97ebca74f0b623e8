//! Hostile input (issue 13): each defect found by the independent run against 7da3c9b is a
//! case here. After each, the server still answers and the stored data is unchanged.

use crate::both_backends;
use crate::helpers::*;
use serde_json::{json, Value};

/// A sentinel resource and what it must still read as.
struct Sentinel {
    path: String,
    body: Value,
}

async fn sentinel(app: &TestApp) -> Sentinel {
    let p = app
        .create(
            &json!({"resourceType": "Patient", "name": [{"family": "Intacte"}],
            "birthDate": "1980-05-17"}),
        )
        .await;
    Sentinel {
        path: format!("Patient/{}", p["id"].as_str().unwrap()),
        body: p,
    }
}

/// The server answers, and the sentinel is exactly as it was (same version, same content).
async fn still_intact(app: &TestApp, s: &Sentinel, after: &str) {
    let (status, _) = app.get_json("metadata").await;
    assert_eq!(status, 200, "the server answers after {after}");
    let (status, now) = app.get_json(&s.path).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(now, s.body, "the stored data is unchanged after {after}");
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut req = app.client.request(method, app.url(path)).body(body);
    for (k, v) in headers {
        req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        ct,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Request headers as (name, raw bytes).
type Headers<'a> = Vec<(&'a str, &'a [u8])>;

fn nested_xml(levels: usize, element: &str) -> Vec<u8> {
    let open = if element == "extension" {
        "<extension url=\"http://x/e\">".to_string()
    } else {
        format!("<{element}>")
    };
    format!(
        "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
        open.repeat(levels),
        format!("</{element}>").repeat(levels)
    )
    .into_bytes()
}

/// A Patient whose extensions nest so that the resource has `levels` levels.
fn nested_json(levels: usize) -> Value {
    let mut inner = json!({"url": "http://x/leaf", "valueString": "feuille"});
    for i in 2..levels {
        inner = json!({"url": format!("http://x/e{i}"), "extension": [inner]});
    }
    json!({"resourceType": "Patient", "name": [{"family": "Profonde"}], "extension": [inner]})
}

fn assert_limit(status: u16, oo: &Value, limit: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome", "{what}");
    let text = outcome_text(oo);
    assert!(
        text.contains(limit),
        "{what}: the outcome names {limit}: {text}"
    );
}

async fn patients_total(app: &TestApp) -> i64 {
    let (_, b) = app.get_json("Patient?_summary=count").await;
    b["total"].as_i64().unwrap()
}

async fn nested_xml_is_refused_before_parsing_and_the_server_lives(backend: Backend) {
    let app = spawn_with(backend, |a| a.max_body_bytes = 16 * 1024 * 1024).await;
    let s = sentinel(&app).await;
    let before = patients_total(&app).await;
    // Any token holder, even with a read-only scope, could send these.
    for (levels, element) in [
        (1000, "extension"),
        (3000, "a"),
        (100, "extension"),
        (50_000, "a"),
    ] {
        let (status, _, oo) = send(
            &app,
            reqwest::Method::POST,
            "Patient",
            &[("Content-Type", FHIR_XML.as_bytes())],
            nested_xml(levels, element),
        )
        .await;
        assert_limit(
            status,
            &oo,
            "max-depth",
            &format!("{levels} nested <{element}>"),
        );
        still_intact(&app, &s, &format!("{levels} nested <{element}>")).await;
    }
    // The same as JSON, deeper than the JSON reader itself accepts.
    let deep = carnet_fuzz::deep_json(100_000);
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_JSON.as_bytes())],
        deep,
    )
    .await;
    assert_limit(status, &oo, "max-depth", "100,000 nested JSON levels");
    assert_eq!(patients_total(&app).await, before, "nothing was stored");
    still_intact(&app, &s, "deep JSON").await;
}

async fn a_resource_at_the_depth_limit_reads_back_on_every_path(backend: Backend) {
    let app = spawn_app(backend).await;
    // 32 levels: accepted; 33: refused, nothing stored.
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_JSON.as_bytes())],
        nested_json(33).to_string().into_bytes(),
    )
    .await;
    assert_limit(status, &oo, "max-depth", "33 levels");
    let created = app.create(&nested_json(32)).await;
    let id = created["id"].as_str().unwrap().to_string();
    for path in [
        format!("Patient/{id}"),
        format!("Patient/{id}/_history/1"),
        format!("Patient/{id}/_history"),
        "Patient/_history".to_string(),
        "_history".to_string(),
        "Patient".to_string(),
        format!("Patient?_id={id}"),
        format!("Patient/{id}/$everything"),
        format!("?_type=Patient&_id={id}"),
    ] {
        for suffix in ["", "_format=xml", "_pretty=true"] {
            let sep = if path.contains('?') { "&" } else { "?" };
            let url = if suffix.is_empty() {
                path.clone()
            } else {
                format!("{path}{sep}{suffix}")
            };
            let res = app.get(&url).await;
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert_eq!(status, 200, "GET {url}: {body}");
            assert!(
                body.contains("feuille"),
                "GET {url} carries the deepest value"
            );
        }
    }
    // The XML form of it, posted back, is accepted too (the limit is the same for both).
    let xml = app
        .client
        .get(app.url(&format!("Patient/{id}?_format=xml")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let xml = xml.replacen(&format!("<id value=\"{id}\"/>"), "", 1);
    let (status, _, back) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_XML.as_bytes())],
        xml.into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "the XML form at the limit is accepted: {back}");
    assert_eq!(back["extension"], created["extension"]);
}

async fn repeated_types_are_searched_once(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..3 {
        app.create(&json!({"resourceType": "Patient", "name": [{"family": format!("T{i}")}]}))
            .await;
    }
    let types = vec!["Patient"; 500].join(",");
    let (status, b) = app.get_json(&format!("?_type={types}")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["total"], 3, "each patient counted once");
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(3));
    let (status, b) = app
        .get_json(&format!("?_type={types}&_summary=count"))
        .await;
    assert_eq!((status, b["total"].as_i64()), (200, Some(3)));
}

async fn nul_and_invalid_utf8_never_reach_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = sentinel(&app).await;
    for path in [
        "?_getpages=%00",
        "?_getpages=%00&_getpagesoffset=10",
        "Patient?name=%00",
        "Patient?name=%ff",
        "Patient?identifier=a%00|b",
        "Patient/_history?_since=%00",
        "Patient?_format=%00",
        "AuditEvent?agent=Practitioner/%00",
    ] {
        let (status, oo) = app.get_json(path).await;
        assert_eq!(status, 400, "GET {path}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    for path in [
        "Patient/%00",
        "Patient/%00/_history",
        "Patient/%00/_history/1",
        "Patient/%00/$everything",
        "Patient/%00/Immunization",
    ] {
        let (status, oo) = app.get_json(path).await;
        assert_eq!(status, 404, "GET {path}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    // A body with a NUL in a string is refused by validation, naming the element.
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_JSON.as_bytes())],
        br#"{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{oo}");
    assert!(outcome_text(&oo).contains("Patient.name"), "{oo}");
    // The OAuth pages too: a page for the person, never a database error.
    for path in [
        "/auth/consent/%00",
        "/auth/login/x?request=%00",
        "/auth/authorize?client_id=%00&response_type=code",
    ] {
        let res = app
            .client
            .get(format!("{}{path}", app.base.trim_end_matches("/fhir")))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let page = res.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {page}");
        assert!(
            page.contains("<html lang=\"fr\""),
            "{path}: a page in French: {page}"
        );
    }
    let res = app
        .client
        .post(format!("{}/auth/token", app.base.trim_end_matches("/fhir")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=%00")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    still_intact(&app, &s, "NUL bytes").await;
}

async fn unreadable_preconditions_are_refused_never_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = sentinel(&app).await;
    let body = {
        let mut b = s.body.clone();
        b["name"] = json!([{"family": "Écrasée"}]);
        b.as_object_mut().unwrap().remove("meta");
        b.to_string().into_bytes()
    };
    let json_ct: (&str, &[u8]) = ("Content-Type", FHIR_JSON.as_bytes());
    let cases: Vec<(&str, Headers)> = vec![
        ("If-Match: é", vec![json_ct, ("If-Match", "é".as_bytes())]),
        ("If-Match: latin-1", vec![json_ct, ("If-Match", b"\xe9")]),
        ("If-Match: garbage", vec![json_ct, ("If-Match", b"garbage")]),
        (
            "two If-Match lines",
            vec![json_ct, ("If-Match", b"W/\"1\""), ("If-Match", b"W/\"1\"")],
        ),
        (
            "Prefer: return=é",
            vec![json_ct, ("Prefer", "return=é".as_bytes())],
        ),
        (
            "Prefer: return=everything",
            vec![json_ct, ("Prefer", b"return=everything")],
        ),
        ("Prefer: not UTF-8", vec![json_ct, ("Prefer", b"\xff\xfe")]),
        (
            "Content-Type not UTF-8",
            vec![("Content-Type", b"application/fhir+json\xff")],
        ),
    ];
    for (what, headers) in cases {
        let (status, _, oo) =
            send(&app, reqwest::Method::PUT, &s.path, &headers, body.clone()).await;
        assert!(
            status == 400 || status == 415,
            "{what}: a precondition or preference Carnet cannot read is refused, got {status} {oo}"
        );
        assert_eq!(oo["resourceType"], "OperationOutcome", "{what}");
        still_intact(&app, &s, what).await;
    }
    // Reads: If-None-Match and If-Modified-Since that cannot be read are 400 too.
    for (name, value) in [
        ("If-None-Match", "é".as_bytes()),
        ("If-None-Match", b"garbage"),
        ("If-Modified-Since", b"yesterday"),
    ] {
        let (status, _, oo) = send(
            &app,
            reqwest::Method::GET,
            &s.path,
            &[(name, value)],
            vec![],
        )
        .await;
        assert_eq!(status, 400, "{name}: {oo}");
    }
    // Understood ones still work: a weak tag matches, an unknown preference is no failure.
    let (status, _, _) = send(
        &app,
        reqwest::Method::GET,
        &s.path,
        &[("If-None-Match", b"W/\"2\", W/\"1\"")],
        vec![],
    )
    .await;
    assert_eq!(status, 304);
    let (status, _, body) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[
            json_ct,
            ("Prefer", b"respond-async; wait=10, return=minimal"),
        ],
        json!({"resourceType": "Patient"}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        Value::String(String::new()),
        "return=minimal is honoured"
    );
    // If-None-Exist: not UTF-8, or given twice: refused, nothing created.
    let before = patients_total(&app).await;
    for headers in [
        vec![json_ct, ("If-None-Exist", b"name=\xff".as_slice())],
        vec![
            json_ct,
            ("If-None-Exist", b"name=a".as_slice()),
            ("If-None-Exist", b"name=b".as_slice()),
        ],
    ] {
        let (status, _, oo) = send(
            &app,
            reqwest::Method::POST,
            "Patient",
            &headers,
            json!({"resourceType": "Patient"}).to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 400, "{oo}");
    }
    assert_eq!(patients_total(&app).await, before);
}

async fn amplification_is_refused_before_the_work(backend: Backend) {
    let app = spawn_with(backend, |a| a.max_body_bytes = 16 * 1024 * 1024).await;
    let s = sentinel(&app).await;
    let before = patients_total(&app).await;
    // 1.1 MB of XML with 100,000 attributes.
    let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"1\"")).collect();
    let started = std::time::Instant::now();
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_XML.as_bytes())],
        format!("<Patient xmlns=\"http://hl7.org/fhir\"{attrs}/>").into_bytes(),
    )
    .await;
    assert_limit(status, &oo, "max-xml-attributes", "100,000 attributes");
    eprintln!("100,000 attributes refused in {:?}", started.elapsed());
    // A 10 MB JSON Patient with 2 million given names.
    let given = vec!["\"g\""; 2_000_000].join(",");
    let body = format!(r#"{{"resourceType":"Patient","name":[{{"given":[{given}]}}]}}"#);
    assert!(body.len() > 7_000_000);
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_JSON.as_bytes())],
        body.into_bytes(),
    )
    .await;
    assert_limit(status, &oo, "max-array-items", "2 million given names");
    // The same in XML: one resource may not hold a million elements.
    let given_xml = "<given value=\"g\"/>".repeat(499_000);
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "Patient",
        &[("Content-Type", FHIR_XML.as_bytes())],
        format!("<Patient xmlns=\"http://hl7.org/fhir\"><name>{given_xml}</name></Patient>")
            .into_bytes(),
    )
    .await;
    assert_limit(status, &oo, "max-elements", "499,000 XML given names");
    // A batch of 10,000 reads.
    let entry = json!({"request": {"method": "GET", "url": s.path}});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": vec![entry; 10_000]});
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "",
        &[("Content-Type", FHIR_JSON.as_bytes())],
        batch.to_string().into_bytes(),
    )
    .await;
    assert_limit(status, &oo, "max-bundle-reads", "10,000 reads in a batch");
    // A Bundle with more entries than allowed.
    let entry = json!({"request": {"method": "POST", "url": "Patient"},
        "resource": {"resourceType": "Patient"}});
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": vec![entry; 10_001]});
    let (status, _, oo) = send(
        &app,
        reqwest::Method::POST,
        "",
        &[("Content-Type", FHIR_JSON.as_bytes())],
        tx.to_string().into_bytes(),
    )
    .await;
    assert_limit(status, &oo, "max-bundle-entries", "10,001 entries");
    assert_eq!(patients_total(&app).await, before, "nothing was stored");
    still_intact(&app, &s, "amplification").await;
}

async fn a_patch_that_changes_nothing_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Doc"}]}))
        .await;
    let doc = app
        .create(
            &json!({"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": format!("Patient/{}", p["id"].as_str().unwrap())},
            "content": [{"attachment": {"contentType": "text/plain", "data": "Ym9uam91cg=="}}]}),
        )
        .await;
    let path = format!("DocumentReference/{}", doc["id"].as_str().unwrap());
    let patch_ct: (&str, &[u8]) = ("Content-Type", b"application/json-patch+json");
    for patch in [
        json!([]),
        json!([{"op": "replace", "path": "/status", "value": "current"}]),
    ] {
        let (status, _, body) = send(
            &app,
            reqwest::Method::PATCH,
            &path,
            &[patch_ct],
            patch.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{patch}: {body}");
        assert_eq!(body["meta"]["versionId"], "1", "no new version for {patch}");
    }
    let (_, history) = app.get_json(&format!("{path}/_history")).await;
    assert_eq!(history["entry"].as_array().unwrap().len(), 1, "one version");
    // A patch that would double the document again and again is refused.
    let bomb: Vec<Value> = (0..40)
        .map(|i| json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
        .collect();
    let (status, _, oo) = send(
        &app,
        reqwest::Method::PATCH,
        &path,
        &[patch_ct],
        json!(bomb).to_string().into_bytes(),
    )
    .await;
    assert!(status == 400 || status == 422, "{oo}");
    let (_, now) = app.get_json(&path).await;
    assert_eq!(now, doc, "the document is unchanged");
}

async fn every_error_is_an_outcome_or_a_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let long = "a".repeat(2000);
    for path in [
        format!("/auth/login/{long}"),
        "/auth/login/x".to_string(),
        "/auth/callback/x".to_string(),
        "/auth/consent/nothing".to_string(),
        "/auth/authorize".to_string(),
    ] {
        let res = app
            .client
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = res.text().await.unwrap();
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(
            ct.starts_with("text/html") && body.contains("<html lang=\"fr\""),
            "{path} answers a page in French, not '{ct}' {body}"
        );
    }
    // Wrong methods on the OAuth endpoints: 405 OperationOutcome.
    let res = app
        .client
        .get(format!("{origin}/auth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

async fn include_fan_out_is_bounded_and_says_so(backend: Backend) {
    let app = spawn_with(backend, |a| a.limits.max_included = 3).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Vaccinée"}]}))
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    for i in 0..5 {
        app.create(
            &json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": format!("dose {i}")},
            "patient": {"reference": format!("Patient/{pid}")},
            "occurrenceDateTime": "2026-01-01"}),
        )
        .await;
    }
    let (status, b) = app
        .get_json(&format!(
            "Patient?_id={pid}&_revinclude=Immunization:patient"
        ))
        .await;
    assert_eq!(status, 200, "{b}");
    let entries = b["entry"].as_array().unwrap();
    let mode = |m: &str| entries.iter().filter(|e| e["search"]["mode"] == m).count();
    assert_eq!((mode("match"), mode("include")), (1, 3), "{b}");
    assert!(
        b.to_string().contains("max-included"),
        "the page says it is cut: {b}"
    );
    // Under the limit: everything, and no warning.
    let (_, b) = app
        .get_json(&format!(
            "Immunization?patient={pid}&_count=1&_include=Immunization:patient"
        ))
        .await;
    assert!(!b.to_string().contains("max-included"), "{b}");
}

both_backends!(
    include_fan_out_is_bounded_and_says_so,
    nested_xml_is_refused_before_parsing_and_the_server_lives,
    a_resource_at_the_depth_limit_reads_back_on_every_path,
    repeated_types_are_searched_once,
    nul_and_invalid_utf8_never_reach_the_database,
    unreadable_preconditions_are_refused_never_ignored,
    amplification_is_refused_before_the_work,
    a_patch_that_changes_nothing_writes_nothing,
    every_error_is_an_outcome_or_a_page,
);
