//! carnet-bench: a load run against any FHIR R4 server, over plain REST.
//!
//! 1. Loads a data set as transaction Bundles (per patient: a Patient, 4 DocumentReferences,
//!    3 Immunizations, 2 Appointments: 10 resources) and reports the load rate.
//! 2. Measures, at a fixed concurrency, throughput and p50/p99 latency of: read by id, a
//!    token search, a string search, a patient's documents in a date range, the same with
//!    `_include`, and a patient's vaccinations by date.
//! 3. Measures the same way a ceiling: a bare actix-web handler, started in this process,
//!    returning a stored Patient's bytes; every figure is also given as a ratio to it.
//!
//! `cargo run --release -p carnet-bench -- --base-url http://127.0.0.1:8080/fhir`

use clap::Parser;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Clone)]
#[command(about = "Load run for a FHIR R4 server")]
struct Args {
    /// FHIR base URL of the server under test.
    #[arg(long)]
    base_url: String,
    /// Patients to load (10 resources each).
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Patients per transaction Bundle.
    #[arg(long, default_value_t = 50)]
    bundle_patients: usize,
    /// Concurrent clients during measurements.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bearer token to send (servers that require one).
    #[arg(long)]
    token: Option<String>,
    /// Process id of the server, to report its peak RSS (VmHWM) at the end.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Carnet only: Consents to give each patient (1 to 4: authorise --practitioner, block
    /// another professional, object to emergency access, give a third equivalent rights),
    /// written by each patient with a development token signed with the key in --data-dir.
    #[arg(long, default_value_t = 0)]
    consents: usize,
    /// Carnet's data directory (its development signing key), for --consents.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// The professional the Consents authorise (created as a médecin, TRE_G15 10).
    #[arg(long, default_value = "bench-reader")]
    practitioner: String,
    /// Bearer token of the measured requests (default: --token), e.g. the professional's.
    #[arg(long)]
    reader_token: Option<String>,
    /// Scenarios to run (comma-separated keys: read, read-document, identifier, family,
    /// documents, documents-include, vaccinations); all by default.
    #[arg(long)]
    only: Option<String>,
}

const FAMILIES: &[&str] = &[
    "Lévêque",
    "Dupré",
    "Müller",
    "Garçon",
    "Éluard",
    "Lefèvre",
    "Martin",
    "Bernard",
    "Petit",
    "Durand",
    "Moreau",
    "Laurent",
];
const GIVENS: &[&str] = &[
    "Hélène", "Zoé", "Noël", "Anaïs", "Jean", "Chloé", "Élodie", "Lucas",
];
const NIR_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";

fn patient_entries(i: usize) -> Vec<Value> {
    let pid = format!("urn:uuid:00000000-0000-4000-8000-{:012}", i);
    let mut e = vec![
        json!({"fullUrl": pid, "request": {"method": "POST", "url": "Patient"}, "resource": {
        "resourceType": "Patient",
        "identifier": [{"system": NIR_SYSTEM, "value": format!("{}", 1_000_000_000_000u64 + i as u64)}],
        "name": [{"family": FAMILIES[i % FAMILIES.len()], "given": [GIVENS[i % GIVENS.len()]]}],
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("{}-{:02}-{:02}", 1940 + i % 80, 1 + i % 12, 1 + i % 28)}}),
    ];
    for d in 0..4 {
        e.push(json!({"request": {"method": "POST", "url": "DocumentReference"}, "resource": {
            "resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": (["11488-4", "18842-5", "57133-1", "11506-3"][d])}]},
            "subject": {"reference": pid}, "date": format!("{}-{:02}-15T09:00:00+01:00", 2020 + (i + d) % 5, 1 + (i + 3 * d) % 12),
            "content": [{"attachment": {"contentType": "application/pdf", "url": format!("Binary/doc-{i}-{d}")}}]}}));
    }
    for v in 0..3 {
        e.push(json!({"request": {"method": "POST", "url": "Immunization"}, "resource": {
            "resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": (["DTCaP", "ROR", "HPV"][v])},
            "patient": {"reference": pid}, "occurrenceDateTime": format!("{}-{:02}-01", 2000 + (i + v) % 24, 1 + v * 3)}}));
    }
    for a in 0..2 {
        e.push(json!({"request": {"method": "POST", "url": "Appointment"}, "resource": {
            "resourceType": "Appointment", "status": "booked",
            "start": format!("2026-{:02}-10T10:00:00Z", 1 + (i + a) % 12), "end": format!("2026-{:02}-10T10:30:00Z", 1 + (i + a) % 12),
            "participant": [{"actor": {"reference": pid}, "status": "accepted"}]}}));
    }
    e
}

fn client(args: &Args) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("Accept", "application/fhir+json".parse().unwrap());
    if let Some(t) = &args.token {
        headers.insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()
        .unwrap()
}

/// Loads the data set; returns the patient ids, the resources/s rate, the count and the
/// DocumentReference ids.
async fn load(args: &Args, http: &reqwest::Client) -> (Vec<String>, f64, usize, Vec<String>) {
    let start = Instant::now();
    let mut ids = Vec::with_capacity(args.patients);
    let mut docs = Vec::with_capacity(args.patients * 4);
    let mut resources = 0;
    let mut first = 0;
    while first < args.patients {
        let last = (first + args.bundle_patients).min(args.patients);
        let entries: Vec<Value> = (first..last).flat_map(patient_entries).collect();
        resources += entries.len();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let res = http
            .post(&args.base_url)
            .header("Content-Type", "application/fhir+json")
            .header("Prefer", "return=minimal")
            .body(bundle.to_string())
            .send()
            .await
            .expect("transaction");
        let status = res.status();
        let out: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "transaction failed: {status} {out}");
        for e in out["entry"].as_array().unwrap() {
            let loc = e["response"]["location"].as_str().unwrap_or("");
            if let Some(rest) = loc.split("DocumentReference/").nth(1) {
                docs.push(rest.split('/').next().unwrap_or_default().to_string());
            }
            if loc.starts_with("Patient/") || loc.contains("/Patient/") {
                let id = loc
                    .split("Patient/")
                    .nth(1)
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string();
                ids.push(id);
            }
        }
        first = last;
    }
    let secs = start.elapsed().as_secs_f64();
    (ids, resources as f64 / secs, resources, docs)
}

/// The Consents of one patient (Carnet's Consent profile).
fn consents_of(patient: &str, n: usize, reader: &str) -> Vec<Value> {
    let prcp = |who: &str| {
        json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
            "reference": {"reference": format!("Practitioner/{who}")}}])
    };
    let provisions = [
        json!({"type": "permit", "actor": prcp(reader)}),
        json!({"type": "deny", "actor": prcp("bench-blocked")}),
        json!({"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG"}]}),
        json!({"type": "permit", "actor": prcp("bench-equivalent"),
            "securityLabel": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument", "code": "MASQUE_PS"}]}),
    ];
    provisions
        .into_iter()
        .take(n)
        .map(|p| json!({"request": {"method": "POST", "url": "Consent"}, "resource": {
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{patient}")}, "provision": p}}))
        .collect()
}

/// Carnet only: creates the professional and has every patient write their Consents (a
/// transaction each, with the patient's own development token).
async fn load_consents(args: &Args, http: &reqwest::Client, ids: &[String]) -> f64 {
    let dir = args.data_dir.as_ref().expect("--consents needs --data-dir");
    let key = carnet::auth::keys::SigningKey::load_or_create(dir).expect("signing key");
    let dev = carnet::auth::keys::SigningKey::load_or_create_dev(dir).expect("dev key");
    let tokens = Arc::new(carnet::auth::token::TokenService::new(key, Some(dev)));
    let base = args.base_url.trim_end_matches('/').to_string();
    for who in [
        args.practitioner.as_str(),
        "bench-blocked",
        "bench-equivalent",
    ] {
        let res = http
            .put(format!("{base}/Practitioner/{who}"))
            .header("Content-Type", "application/fhir+json")
            .body(json!({"resourceType": "Practitioner", "id": who, "name": [{"family": who}],
                "qualification": [{"code": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante", "code": "10"}]}}]}).to_string())
            .send()
            .await
            .expect("practitioner");
        assert!(
            res.status().is_success(),
            "Practitioner/{who}: {}",
            res.status()
        );
    }
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(ids.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (next, ids, tokens, base) = (next.clone(), ids.clone(), tokens.clone(), base.clone());
        let (n, reader) = (args.consents, args.practitioner.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(patient) = ids.get(i) else { break };
                let token = carnet::auth::dev_token(
                    &tokens,
                    &carnet::auth::DevSubject::Patient(patient.clone()),
                    None,
                    3600,
                )
                .expect("token");
                let bundle = json!({"resourceType": "Bundle", "type": "transaction",
                    "entry": consents_of(patient, n, &reader)});
                let res = http
                    .post(&base)
                    .bearer_auth(token)
                    .header("Content-Type", "application/fhir+json")
                    .header("Prefer", "return=minimal")
                    .body(bundle.to_string())
                    .send()
                    .await
                    .expect("consents");
                assert!(
                    res.status().is_success(),
                    "Consents of {patient}: {}",
                    res.status()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (ids.len() * args.consents) as f64 / start.elapsed().as_secs_f64()
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// Runs `make_url(n)` GETs from `concurrency` workers for `seconds`.
async fn measure(
    http: &reqwest::Client,
    concurrency: usize,
    seconds: u64,
    make_url: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Figures {
    let counter = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, counter, errors, make_url) = (
            http.clone(),
            counter.clone(),
            errors.clone(),
            make_url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match http.get(make_url(n)).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Figures {
        rps: all.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let base = args.base_url.trim_end_matches('/').to_string();
    let http = client(&args);
    println!(
        "loading {} patients ({} resources) as transaction Bundles of {} patients…",
        args.patients,
        args.patients * 10,
        args.bundle_patients
    );
    let (ids, load_rate, loaded, docs) = load(&args, &http).await;
    println!("loaded {loaded} resources: {load_rate:.0} resources/s");
    if args.consents > 0 {
        let rate = load_consents(&args, &http, &ids).await;
        println!(
            "each patient wrote {} Consents: {rate:.0} Consents/s",
            args.consents
        );
    }
    let ids = Arc::new(ids);
    let docs = Arc::new(docs);
    let reader = match &args.reader_token {
        Some(t) => client(&Args {
            token: Some(t.clone()),
            ..args.clone()
        }),
        None => http.clone(),
    };

    // The ceiling: a bare actix-web handler returning a stored Patient's bytes.
    let stored = http
        .get(format!("{base}/Patient/{}", ids[0]))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ceiling_addr = listener.local_addr().unwrap();
    let body = stored.clone();
    let server = actix_web::HttpServer::new(move || {
        let body = body.clone();
        actix_web::App::new().route(
            "/Patient/{id}",
            actix_web::web::get().to(move || {
                let body = body.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/fhir+json")
                        .body(body)
                }
            }),
        )
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let n_ids = ids.len();
    let pick = move |n: usize| (n.wrapping_mul(2654435761)) % n_ids;
    let ceiling = measure(
        &http,
        args.concurrency,
        args.seconds,
        Arc::new(move |_| format!("http://{ceiling_addr}/Patient/x")),
    )
    .await;

    type Scenario = (
        &'static str,
        &'static str,
        Arc<dyn Fn(usize) -> String + Send + Sync>,
    );
    let n_docs = docs.len().max(1);
    let (b, i) = (base.clone(), ids.clone());
    let scenarios: Vec<Scenario> = vec![
        (
            "read-document",
            "read a document by id",
            Arc::new({
                let (b, d) = (b.clone(), docs.clone());
                move |n| {
                    format!(
                        "{b}/DocumentReference/{}",
                        d[(n.wrapping_mul(2654435761)) % n_docs]
                    )
                }
            }),
        ),
        (
            "read",
            "read by id",
            Arc::new({
                let (b, i) = (b.clone(), i.clone());
                move |n| format!("{b}/Patient/{}", i[pick(n)])
            }),
        ),
        (
            "identifier",
            "token search (identifier)",
            Arc::new({
                let b = b.clone();
                move |n| {
                    format!(
                        "{b}/Patient?identifier={NIR_SYSTEM}|{}",
                        1_000_000_000_000u64 + pick(n) as u64
                    )
                }
            }),
        ),
        (
            "family",
            "string search (family)",
            Arc::new({
                let b = b.clone();
                move |n| {
                    format!(
                        "{b}/Patient?family={}&_count=20",
                        ["lev", "dup", "mul", "gar", "elu"][n % 5]
                    )
                }
            }),
        ),
        (
            "documents",
            "patient documents in a date range",
            Arc::new({
                let (b, i) = (b.clone(), i.clone());
                move |n| {
                    format!("{b}/DocumentReference?patient=Patient/{}&date=ge2021-01-01&date=lt2024-01-01", i[pick(n)])
                }
            }),
        ),
        (
            "documents-include",
            "same with _include=DocumentReference:subject",
            Arc::new({
                let (b, i) = (b.clone(), i.clone());
                move |n| {
                    format!("{b}/DocumentReference?patient=Patient/{}&date=ge2021-01-01&_include=DocumentReference:subject", i[pick(n)])
                }
            }),
        ),
        (
            "vaccinations",
            "patient vaccinations by date",
            Arc::new({
                let (b, i) = (b.clone(), i.clone());
                move |n| {
                    format!(
                        "{b}/Immunization?patient=Patient/{}&date=ge2005",
                        i[pick(n)]
                    )
                }
            }),
        ),
    ];
    println!();
    println!("| scenario | req/s | p50 ms | p99 ms | errors | ratio to ceiling |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| ceiling: bare actix-web handler, stored bytes | {:.0} | {:.2} | {:.2} | {} | 100 % |",
        ceiling.rps, ceiling.p50_ms, ceiling.p99_ms, ceiling.errors
    );
    let only: Option<Vec<String>> = args
        .only
        .as_ref()
        .map(|o| o.split(',').map(|k| k.trim().to_string()).collect());
    for (key, name, url) in scenarios {
        if only.as_ref().is_some_and(|o| !o.iter().any(|k| k == key)) {
            continue;
        }
        let f = measure(&reader, args.concurrency, args.seconds, url).await;
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.1} % |",
            f.rps,
            f.p50_ms,
            f.p99_ms,
            f.errors,
            100.0 * f.rps / ceiling.rps
        );
    }
    println!("| transaction ingest | {load_rate:.0} resources/s | | | | |");
    if let Some(pid) = args.server_pid {
        if let Some(mb) = peak_rss_mb(pid) {
            println!("\nserver peak RSS (VmHWM): {mb:.0} MB");
        }
    }
    handle.stop(false).await;
}
