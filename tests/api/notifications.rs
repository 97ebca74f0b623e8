//! "The patient is told": Carnet's notices (Communications addressed to the patient) for a
//! professional's first access, an emergency access, a new document and the two-week
//! notice of a document hidden from the patient, pushed by a rest-hook Subscription to a
//! real HTTP subscriber that is down at first; and who may see and write Subscriptions.

use crate::both_backends;
use crate::helpers::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use carnet::auth::{DevOptions, DevSubject};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NOTICE: &str = "urn:carnet:notice";

/// What a subscriber received: its Authorization header and body.
#[derive(Clone, Debug)]
struct Received {
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A real HTTP subscriber on a loopback port: answers 503 while `up` is false (every
/// attempt is counted), records what it takes.
struct Subscriber {
    url: String,
    up: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    taken: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

#[derive(Clone)]
struct HookState {
    up: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    taken: Arc<Mutex<Vec<Received>>>,
}

async fn hook(req: HttpRequest, body: web::Bytes, state: web::Data<HookState>) -> HttpResponse {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    if !state.up.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    state.taken.lock().unwrap().push(Received {
        authorization: header("Authorization"),
        content_type: header("Content-Type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    HttpResponse::Ok().finish()
}

impl Subscriber {
    fn start(up: bool) -> Subscriber {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = HookState {
            up: Arc::new(AtomicBool::new(up)),
            attempts: Arc::default(),
            taken: Arc::default(),
        };
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/hook", web::post().to(hook))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Subscriber {
            url,
            up: state.up,
            attempts: state.attempts,
            taken: state.taken,
            handle,
        }
    }

    fn taken(&self) -> Vec<Received> {
        self.taken.lock().unwrap().clone()
    }

    /// The notices taken so far (payloads that are Communications), by kind.
    fn notices(&self, kind: &str) -> Vec<Value> {
        self.taken()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .filter(|c| c["category"][0]["coding"][0]["code"] == kind)
            .collect()
    }

    /// Waits (up to 30 s) until `done` holds.
    async fn wait_until(&self, what: &str, done: impl Fn(&Subscriber) -> bool) {
        for _ in 0..300 {
            if done(self) {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the subscriber never got {what}: {:?}", self.taken());
    }
}

fn subscription(criteria: &str, endpoint: &str, payload: Option<&str>) -> Value {
    let mut channel = json!({"type": "rest-hook", "endpoint": endpoint,
        "header": ["Authorization: Bearer subscriber-secret"]});
    if let Some(p) = payload {
        channel["payload"] = json!(p);
    }
    json!({"resourceType": "Subscription", "status": "requested",
        "reason": "tell me", "criteria": criteria, "channel": channel})
}

/// The patient's notices of one kind, as they see them.
async fn my_notices(w: &World, kind: &str, at: Option<&str>) -> Vec<Value> {
    let mut req = w.holder().client.get(w.holder().url(&format!(
        "Communication?recipient=Patient/{}&category={NOTICE}|{kind}",
        w.patient
    )));
    if let Some(t) = at {
        req = req.header("X-Carnet-Now", t);
    }
    let (status, bundle) = w.holder().send(req).await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

/// "The patient is notified when a professional opens the record" — through their app's
/// Subscription, even though the app's endpoint is down when it happens.
async fn a_subscriber_down_at_first_hears_of_every_notice(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let hook = Subscriber::start(false);
    let (status, sub) = w
        .holder()
        .post(
            "Subscription",
            &subscription(
                &format!("Communication?recipient=Patient/{}", w.patient),
                &hook.url,
                Some("application/fhir+json"),
            ),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["status"], "active");

    // The médecin traitant files a document: the patient is told of it.
    let doc = w.document(&w.mt, CONSULTATION, &[]).await;
    // An authorised professional opens the record, twice: one access notice (one session).
    assert_eq!(
        w.pro(&dr).get(&format!("DocumentReference/{doc}")).await.0,
        200
    );
    assert_eq!(
        w.pro(&dr).get(&format!("DocumentReference/{doc}")).await.0,
        200
    );

    // The subscriber is down: Carnet keeps trying.
    hook.wait_until("two attempts while down", |h| {
        h.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    // Nothing is lost meanwhile: the notice is in the patient's record already.
    assert_eq!(my_notices(&w, "professional-access", None).await.len(), 1);
    hook.up.store(true, Ordering::SeqCst);
    hook.wait_until("the access and new-document notices", |h| {
        !h.notices("professional-access").is_empty() && !h.notices("new-document").is_empty()
    })
    .await;
    let first = &hook.notices("professional-access")[0];
    assert_eq!(
        first["recipient"][0]["reference"],
        format!("Patient/{}", w.patient)
    );
    assert_eq!(first["about"][0]["reference"], format!("Practitioner/{dr}"));
    assert!(first["sent"].is_string(), "{first}");
    let new_doc = &hook.notices("new-document")[0];
    assert_eq!(
        new_doc["about"][0]["reference"],
        format!("DocumentReference/{doc}")
    );
    let taken = hook.taken();
    assert!(taken.iter().all(
        |r| r.authorization.as_deref() == Some("Bearer subscriber-secret")
            && r.content_type.as_deref() == Some("application/fhir+json")
    ));

    // An emergency access: told to the patient and their médecin traitant, with the reason.
    let stranger = practitioner(&w.app, "10").await;
    let emergency = w.token(
        DevSubject::Practitioner(stranger.clone()),
        DevOptions {
            acting_for: Some(w.patient.clone()),
            purpose: Some("BTG".into()),
            reason: Some("inconscient aux urgences".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        emergency.get(&format!("DocumentReference/{doc}")).await.0,
        200
    );
    hook.wait_until("the emergency notice", |h| {
        !h.notices("emergency-access").is_empty()
    })
    .await;
    let urgent = &hook.notices("emergency-access")[0];
    let recipients: Vec<&str> = urgent["recipient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert!(
        recipients.contains(&format!("Patient/{}", w.patient).as_str()),
        "{urgent}"
    );
    assert!(
        recipients.contains(&format!("Practitioner/{}", w.mt).as_str()),
        "{urgent}"
    );
    assert!(urgent["payload"][0]["contentString"]
        .as_str()
        .unwrap()
        .contains("inconscient aux urgences"));

    // The patient's inbox holds them; a second read by the same professional added none.
    let firsts = my_notices(&w, "professional-access", None).await;
    let by_dr: Vec<&Value> = firsts
        .iter()
        .filter(|c| c["about"][0]["reference"] == format!("Practitioner/{dr}"))
        .collect();
    assert_eq!(by_dr.len(), 1, "{firsts:?}");
    // The patient marks one read; nothing else of a notice is theirs to change.
    let mut read = by_dr[0].clone();
    let id = read["id"].as_str().unwrap().to_string();
    read["received"] = json!("2026-11-24T10:00:00Z");
    let (status, body) = w.holder().put(&format!("Communication/{id}"), &read).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["received"], "2026-11-24T10:00:00Z");
    read["payload"] = json!([{"contentString": "rien ne s'est passé"}]);
    let (status, body) = w.holder().put(&format!("Communication/{id}"), &read).await;
    assert_eq!(status, 403, "{body}");
    // Nobody but Carnet writes a notice.
    let mut forged = by_dr[0].clone();
    forged.as_object_mut().unwrap().remove("id");
    assert_eq!(w.pro(&dr).post("Communication", &forged).await.0, 403);

    // A document hidden from the patient until the announcement consultation: no notice
    // naming it; two weeks later, "your record was updated".
    let hidden = w
        .document(&w.mt, CONSULTATION, &["INVISIBLE_PATIENT"])
        .await;
    assert!(my_notices(&w, "record-updated", None).await.is_empty());
    // Looked at with a backend service's token (which sees every notice, whatever its
    // labels): none names the hidden document.
    let (_, all) = w
        .system()
        .get(&format!("Communication?subject=Patient/{}", w.patient))
        .await;
    assert!(all["total"].as_i64().unwrap() > 0, "{all}");
    assert!(!all.to_string().contains(&hidden), "{all}");
    let in_15_days = carnet::fhir::instant::format_us(
        carnet::fhir::instant::now_us() + 15 * 24 * 3600 * 1_000_000,
    );
    let updated = my_notices(&w, "record-updated", Some(&in_15_days)).await;
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert!(!updated[0].to_string().contains(&hidden));
    hook.wait_until("the record-updated notice", |h| {
        !h.notices("record-updated").is_empty()
    })
    .await;
    hook.handle.stop(false).await;
}

/// A Subscription is its owner's; its notifications obey the patient's rules; Carnet says
/// what it cannot serve.
async fn subscriptions_are_private_and_follow_the_patients_rules(backend: Backend) {
    let w = World::new(backend).await;
    let dr = practitioner(&w.app, "10").await;
    w.rule(authorise(&dr)).await;
    let dr_hook = Subscriber::start(true);
    let patient_hook = Subscriber::start(true);
    // The professional subscribes to the patient's documents (no payload: a ping).
    let (status, dr_sub) = w
        .pro(&dr)
        .post(
            "Subscription",
            &subscription(
                &format!("DocumentReference?patient={}", w.patient),
                &dr_hook.url,
                None,
            ),
        )
        .await;
    assert_eq!(status, 201, "{dr_sub}");
    let dr_sub_id = dr_sub["id"].as_str().unwrap();
    let (status, _) = w
        .holder()
        .post(
            "Subscription",
            &subscription(
                &format!("Communication?recipient=Patient/{}", w.patient),
                &patient_hook.url,
                Some("application/fhir+json"),
            ),
        )
        .await;
    assert_eq!(status, 201);
    // Nobody else sees or changes it (its headers hold the subscriber's secret).
    assert_eq!(
        w.holder().get(&format!("Subscription/{dr_sub_id}")).await.0,
        404
    );
    let other = practitioner(&w.app, "10").await;
    assert_eq!(
        w.pro(&other)
            .get(&format!("Subscription/{dr_sub_id}"))
            .await
            .0,
        404
    );
    assert_eq!(
        w.pro(&other)
            .delete(&format!("Subscription/{dr_sub_id}"))
            .await
            .0,
        404
    );
    let (status, mine) = w.pro(&dr).get(&format!("Subscription/{dr_sub_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        mine["channel"]["header"][0],
        "Authorization: Bearer subscriber-secret"
    );

    w.document(&w.mt, CONSULTATION, &[]).await;
    dr_hook
        .wait_until("a ping for the first document", |h| h.taken().len() == 1)
        .await;
    assert_eq!(dr_hook.taken()[0].body, "", "no payload was asked for");
    // Blocked: the professional hears of nothing more.
    w.rule(block(&dr)).await;
    let second = w.document(&w.mt, CONSULTATION, &[]).await;
    patient_hook
        .wait_until("the second document's notice", |h| {
            h.notices("new-document")
                .iter()
                .any(|c| c["about"][0]["reference"] == format!("DocumentReference/{second}"))
        })
        .await;
    assert_eq!(
        dr_hook.taken().len(),
        1,
        "a blocked professional was notified"
    );

    // What Carnet cannot serve is said.
    let cases = [
        (json!({"type": "websocket"}), "rest-hook"),
        (
            json!({"type": "rest-hook", "endpoint": "http://example.org/hook"}),
            "https",
        ),
        (
            json!({"type": "rest-hook", "endpoint": patient_hook.url, "payload": "application/fhir+xml"}),
            "payload",
        ),
    ];
    for (channel, says) in cases {
        let mut s = subscription("Communication?status=completed", &patient_hook.url, None);
        s["channel"] = channel;
        let (status, body) = w.holder().post("Subscription", &s).await;
        assert_eq!(status, 422, "{body}");
        assert!(outcome_text(&body).contains(says), "{body}");
    }
    for criteria in [
        "AuditEvent?patient=x",
        "Communication?nonsense=1",
        "Nothing",
    ] {
        let (status, body) = w
            .holder()
            .post(
                "Subscription",
                &subscription(criteria, &patient_hook.url, None),
            )
            .await;
        assert_eq!(status, 422, "{criteria}: {body}");
    }
    dr_hook.handle.stop(false).await;
    patient_hook.handle.stop(false).await;
}

both_backends!(
    a_subscriber_down_at_first_hears_of_every_notice,
    subscriptions_are_private_and_follow_the_patients_rules,
);
