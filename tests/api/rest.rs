//! The RESTful interactions: create, read, vread, update, delete, history, conditional
//! requests and Prefer, as a client sees them.

use crate::both_backends;
use crate::helpers::*;
use serde_json::json;

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Hélène"]}], "gender": "female",
           "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": format!("2{family}")}]})
}

async fn create_answers_201_with_location_etag_and_meta(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "id": "client-chosen", "gender": "male"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["etag"], "W/\"1\"");
    assert!(res.headers().contains_key("last-modified"));
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let body: serde_json::Value = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_ne!(
        id, "client-chosen",
        "the server assigns the id of a created resource"
    );
    assert_eq!(location, app.url(&format!("Patient/{id}/_history/1")));
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let (status, read) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read, body);
}

async fn update_keeps_every_version_and_vread_returns_each(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create(&patient("Martin")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut v2 = created.clone();
    v2["name"][0]["family"] = json!("Martin-Durand");
    let res = app.put(&format!("Patient/{id}"), &v2).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    let (_, current) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(current["name"][0]["family"], "Martin-Durand");
    assert_eq!(current["meta"]["versionId"], "2");
    let (status, old) = app.get_json(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(status, 200);
    assert_eq!(old["name"][0]["family"], "Martin");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/3")).await.status(),
        404
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/x")).await.status(),
        404
    );
}

async fn update_with_a_new_id_creates_and_with_a_stale_if_match_fails(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .put(
            "Patient/pat-42",
            &json!({"resourceType": "Patient", "id": "pat-42", "active": true}),
        )
        .await;
    assert_eq!(res.status(), 201, "update as create");
    let stale = app
        .client
        .put(app.url("Patient/pat-42"))
        .header("Content-Type", FHIR_JSON)
        .header("If-Match", "W/\"7\"")
        .body(json!({"resourceType": "Patient", "id": "pat-42", "active": false}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let oo: serde_json::Value = stale.json().await.unwrap();
    assert!(outcome_text(&oo).contains("W/\\\"1\\\""), "{oo}");
    let good = app
        .client
        .put(app.url("Patient/pat-42"))
        .header("Content-Type", FHIR_JSON)
        .header("If-Match", "W/\"1\"")
        .body(json!({"resourceType": "Patient", "id": "pat-42", "active": false}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let (_, now) = app.get_json("Patient/pat-42").await;
    assert_eq!(now["active"], false);
    assert_eq!(now["meta"]["versionId"], "2");
}

async fn delete_leaves_a_tombstone_gone_on_read_and_kept_in_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create(&patient("Bernard")).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status(), 204);
    let gone = app.get(&format!("Patient/{id}")).await;
    assert_eq!(gone.status(), 410);
    let oo: serde_json::Value = gone.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/1")).await.status(),
        200,
        "old versions stay readable"
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/2")).await.status(),
        410,
        "the tombstone version"
    );
    let (_, history) = app.get_json(&format!("Patient/{id}/_history")).await;
    let entries = history["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[1]["request"]["method"], "POST");
    assert_eq!(app.delete("Patient/never-was").await.status(), 404);
    assert_eq!(
        app.delete(&format!("Patient/{id}")).await.status(),
        204,
        "deleting twice is idempotent"
    );
    // Re-creating by update continues the version sequence.
    let back = app
        .put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id}),
        )
        .await;
    assert_eq!(back.status(), 201);
    assert_eq!(back.headers()["etag"], "W/\"3\"");
}

async fn history_pages_cover_every_version_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            app.create(&patient(&format!("Famille{i}"))).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    app.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Soignant"}]}))
        .await;
    let mut seen = Vec::new();
    let mut url = app.url("Patient/_history?_count=3");
    loop {
        let page: serde_json::Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["type"], "history");
        for e in page["entry"].as_array().cloned().unwrap_or_default() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_string());
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(
        seen, expected,
        "type history: every Patient version once, newest first"
    );
    let (_, system) = app.get_json("_history?_count=100").await;
    let records = system["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] != "AuditEvent")
        .count();
    assert_eq!(
        records, 8,
        "system history includes the Practitioner (and the AuditEvents of the accesses)"
    );
    let (status, _) = app.get_json("_history?_since=notadate").await;
    assert_eq!(status, 400);
    let (_, future) = app.get_json("_history?_since=2999-01-01T00:00:00Z").await;
    assert!(future.get("entry").is_none());
    assert_eq!(app.get("Patient/nobody/_history").await.status(), 404);
}

async fn conditional_create_returns_the_existing_match(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = patient("Petit");
    let criteria = "identifier=urn:oid:1.2.250.1.213.1.4.8|2Petit";
    let send = || {
        app.client
            .post(app.url("Patient"))
            .header("Content-Type", FHIR_JSON)
            .header("If-None-Exist", criteria)
            .body(body.to_string())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let (_, history) = app.get_json("Patient/_history").await;
    assert_eq!(
        history["entry"].as_array().unwrap().len(),
        1,
        "nothing written the second time"
    );
    let unsupported = app
        .client
        .post(app.url("Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", "colour=blue")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsupported.status(),
        400,
        "an unknown parameter never matches silently"
    );
    // Any search parameter works as criteria: by name, the existing patient is returned.
    let by_name = app
        .client
        .post(app.url("Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", "family=petit&gender=female")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), 200);
    let found: serde_json::Value = by_name.json().await.unwrap();
    assert_eq!(found["id"], first["id"]);
    // Several matches: 412.
    app.create(&patient("Petit")).await;
    let two = app
        .client
        .post(app.url("Patient"))
        .header("Content-Type", FHIR_JSON)
        .header("If-None-Exist", "family=petit")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 412);
}

async fn conditional_read_answers_304_when_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create(&patient("Roux")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let res = app
        .client
        .get(app.url(&path))
        .header("If-None-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = app
        .client
        .get(app.url(&path))
        .header("If-None-Match", "W/\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let last_modified = app.get(&path).await.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    let res = app
        .client
        .get(app.url(&path))
        .header("If-Modified-Since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = app
        .client
        .get(app.url(&path))
        .header("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn prefer_header_chooses_the_response_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = |prefer: &'static str| {
        app.client
            .post(app.url("Patient"))
            .header("Content-Type", FHIR_JSON)
            .header("Prefer", prefer)
            .body(patient("Prefer").to_string())
            .send()
    };
    let minimal = send("return=minimal").await.unwrap();
    assert_eq!(minimal.status(), 201);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.text().await.unwrap().is_empty());
    let oo: serde_json::Value = send("return=OperationOutcome")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let rep: serde_json::Value = send("return=representation")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rep["resourceType"], "Patient");
}

async fn formats_follow_accept_format_and_pretty(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create(&patient("Format")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let xml = app
        .client
        .get(app.url(&format!("{path}?_format=xml")))
        .send()
        .await
        .unwrap();
    assert!(xml.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with(FHIR_XML));
    assert!(xml
        .text()
        .await
        .unwrap()
        .contains("<Patient xmlns=\"http://hl7.org/fhir\">"));
    let pretty = app
        .client
        .get(app.url(&format!("{path}?_pretty=true")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pretty.contains("\n  \"resourceType\": \"Patient\""),
        "{pretty}"
    );
    let plain = app
        .client
        .get(app.url(&path))
        .header("Accept", "*/*")
        .send()
        .await
        .unwrap();
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with(FHIR_JSON));
    let bad = app
        .client
        .get(app.url(&format!("{path}?_format=text/turtle")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 406);
    // Errors come in the format asked for.
    let err = app
        .client
        .get(app.url("Patient/nobody?_format=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 404);
    assert!(err
        .text()
        .await
        .unwrap()
        .contains("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"));
}

both_backends!(
    create_answers_201_with_location_etag_and_meta,
    update_keeps_every_version_and_vread_returns_each,
    update_with_a_new_id_creates_and_with_a_stale_if_match_fails,
    delete_leaves_a_tombstone_gone_on_read_and_kept_in_history,
    history_pages_cover_every_version_newest_first,
    conditional_create_returns_the_existing_match,
    conditional_read_answers_304_when_unchanged,
    prefer_header_chooses_the_response_body,
    formats_follow_accept_format_and_pretty,
);
