//! The fuzz harness's bounded run (issue 13): thousands of hostile requests made from a
//! fixed seed by `carnet-fuzz` (damaged official examples, deep and wide bodies, XML
//! entities, odd headers, search parameters, JSON Patches, Bundles, OAuth pages) sent as
//! raw HTTP to the real server. None may answer 5xx or go unanswered, the server must
//! still answer at the end, and resources it never aimed a write at must be unchanged.
//! `carnet-fuzz --cases 1000000` runs the same generator for as long as one likes.

use crate::both_backends;
use crate::helpers::*;
use carnet_fuzz::{Generator, HttpClient, Sent};
use serde_json::Value;

/// Cases per backend in the test suite (the long run is `carnet-fuzz`).
const CASES: usize = 2500;

async fn hostile_requests_get_no_5xx_and_change_nothing_else(backend: Backend) {
    let app = spawn_with(backend, |a| a.max_body_bytes = 4 * 1024 * 1024).await;
    let examples = examples();
    let mut seeds = Vec::new();
    let mut xml = Vec::new();
    for (_, v) in &examples {
        if let Ok(x) = carnet_model::json_to_xml(v.to_string().as_bytes()) {
            xml.push(x);
        }
        seeds.push(v.clone());
    }
    // Targets for reads and writes, and sentinels nobody writes to.
    let mut known = Vec::new();
    let mut sentinels: Vec<(String, Value)> = Vec::new();
    for (i, (_, v)) in examples.iter().enumerate().take(40) {
        let t = v["resourceType"].as_str().unwrap().to_string();
        let res = app.post(&t, v).await;
        if res.status() != 201 {
            continue;
        }
        let created: Value = res.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        if i % 4 == 0 {
            sentinels.push((format!("{t}/{id}"), created));
        } else {
            known.push((t, id));
        }
    }
    assert!(sentinels.len() >= 5, "sentinels filed");
    let token = dev_token(&app.args.data_dir, &carnet::auth::DevSubject::System, None);
    let base = app.base.clone();
    let (findings, statuses) = actix_web::rt::task::spawn_blocking(move || {
        let mut gen = Generator::new(13, seeds, xml);
        gen.known = known;
        let mut client = HttpClient::new(&base, &token);
        let mut findings = Vec::new();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for n in 0..CASES {
            let case = gen.case();
            match client.send(&case) {
                Sent::Status(s, _) => {
                    *statuses.entry(s).or_default() += 1;
                    if s >= 500 {
                        findings.push(format!("{s} for case {n}: {}", case.describe(300)));
                    }
                }
                Sent::Failed(e) if e.starts_with(carnet_fuzz::EARLY) => {}
                Sent::Failed(e) => findings.push(format!(
                    "no answer ({e}) for case {n}: {}",
                    case.describe(300)
                )),
            }
        }
        (findings, statuses)
    })
    .await
    .unwrap();
    eprintln!("fuzz: {CASES} cases, statuses {statuses:?}");
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n\n")
    );
    let (status, _) = app.get_json("metadata").await;
    assert_eq!(status, 200, "the server answers after the run");
    for (path, before) in &sentinels {
        let (status, now) = app.get_json(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(&now, before, "{path} is unchanged");
    }
    // The run exercised more than refusals.
    assert!(
        statuses.keys().any(|s| (200..300).contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.keys().any(|s| (400..500).contains(s)),
        "{statuses:?}"
    );
}

both_backends!(hostile_requests_get_no_5xx_and_change_nothing_else);
