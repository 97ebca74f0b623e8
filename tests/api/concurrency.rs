//! Concurrent writers and restarts: exactly one of several racing updates wins, and
//! nothing is lost across a restart.

use crate::both_backends;
use crate::helpers::*;
use serde_json::json;

async fn concurrent_updates_with_if_match_have_exactly_one_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Course"}]}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = app.client.clone();
        let url = app.url(&format!("Patient/{id}"));
        let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("Gagnant{i}")}]});
        tasks.push(actix_web::rt::spawn(async move {
            let res = client
                .put(url)
                .header("Content-Type", FHIR_JSON)
                .header("If-Match", "W/\"1\"")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (i, res.status().as_u16())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, status) = t.await.unwrap();
        match status {
            200 => winners.push(i),
            412 => {}
            other => panic!("update {i} answered {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    let (_, now) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(now["meta"]["versionId"], "2");
    assert_eq!(now["name"][0]["family"], format!("Gagnant{}", winners[0]));
    let (_, history) = app.get_json(&format!("Patient/{id}/_history")).await;
    assert_eq!(history["entry"].as_array().unwrap().len(), 2);
}

async fn concurrent_creates_are_all_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url("Patient");
        tasks.push(actix_web::rt::spawn(async move {
            let body = json!({"resourceType": "Patient", "name": [{"family": format!("N{i}")}]});
            client
                .post(url)
                .header("Content-Type", FHIR_JSON)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let (_, history) = app.get_json("Patient/_history?_count=100").await;
    assert_eq!(history["entry"].as_array().unwrap().len(), 20);
}

async fn data_survives_a_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let created = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Durable"}]}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut v2 = created.clone();
    v2["active"] = json!(true);
    assert_eq!(app.put(&format!("Patient/{id}"), &v2).await.status(), 200);
    let (_, before) = app.get_json(&format!("Patient/{id}")).await;
    app.restart().await;
    let (status, after) = app.get_json(&format!("Patient/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    let (_, v1) = app.get_json(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(without_server_fields(&v1), without_server_fields(&created));
    // The version sequence goes on after the restart.
    let res = app.put(&format!("Patient/{id}"), &before).await;
    assert_eq!(res.headers()["etag"], "W/\"3\"");
}

both_backends!(
    concurrent_updates_with_if_match_have_exactly_one_winner,
    concurrent_creates_are_all_kept,
    data_survives_a_restart,
);
