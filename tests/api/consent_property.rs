//! Property test of the consent engine against the independent oracle
//! (`consent_oracle.rs`, written from domain.md and the issue without reading the engine).
//!
//! Random worlds — patients, professionals of several professions (one outside the
//! matrix, one of the social sector), médecins traitants, guardians, documents with
//! authors and label sets, Consents (authorisations, blocks, equivalent rights, emergency
//! and regulation objections, mask everything) with periods in the past, present or future
//! or inactive —
//! are written through the real server. Then every actor (holders, representatives acting
//! for a child, professionals with normal, emergency, malformed emergency, regulation and
//! malformed regulation purposes), at a clock moved 0, 20 or 40 days ahead, reads every
//! document by read, vread of version 1 and search; what they get must equal what the
//! oracle says. The seed is printed; `CARNET_PROPERTY_SEED` replays one,
//! `CARNET_PROPERTY_WORLDS` sets how many worlds per backend (default 4).

use crate::both_backends;
use crate::consent_oracle as oracle;
use crate::consent_oracle_control as control;
use crate::helpers::*;
use carnet::auth::{DevOptions, DevSubject};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

const TRE_A07: &str = oracle::TRE_A07;
const TRE_G15: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
const DAY: i64 = 86_400;

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Professions (code, social sector) and document types (system, code).
type Professions = Vec<(String, bool)>;
type DocumentTypes = Vec<(String, String)>;

/// The matrix as the oracle takes it: every (profession, type) pair of the shipped table.
fn oracle_matrix() -> (oracle::Matrix, Professions, DocumentTypes) {
    let file: Value = serde_json::from_str(include_str!(
        "../../fhir-profiles/carnet/matrice-habilitation.json"
    ))
    .unwrap();
    let types: Vec<(String, String)> = file["documentTypes"]
        .as_object()
        .unwrap()
        .keys()
        .map(|code| {
            let system = if code.chars().next().unwrap().is_ascii_digit() {
                "http://loinc.org"
            } else {
                "urn:carnet:document-type"
            };
            (system.to_string(), code.clone())
        })
        .collect();
    let mut matrix = oracle::Matrix::default();
    let mut professions = Vec::new();
    for p in file["professions"].as_array().unwrap() {
        let code = p["code"].as_str().unwrap();
        professions.push((code.to_string(), p["social"].as_bool().unwrap()));
        let deny: Vec<&str> = p["deny"]
            .as_array()
            .map(|d| d.iter().map(|x| x.as_str().unwrap()).collect())
            .unwrap_or_default();
        for (_, t) in &types {
            let allowed = match &p["allow"] {
                Value::String(s) if s == "*" => !deny.contains(&t.as_str()),
                Value::Array(list) => list.iter().any(|x| x == t) && !deny.contains(&t.as_str()),
                _ => false,
            };
            if allowed {
                matrix.allow(code, t);
            } else {
                matrix.forbid(code, t);
            }
        }
    }
    // A profession the table does not know.
    professions.push(("99".into(), false));
    (matrix, professions, types)
}

/// A validity in the oracle's terms and as a FHIR Consent (status, period), around `now`.
fn validity(rng: &mut Rng, now: i64) -> (oracle::Validity, &'static str, Option<Value>) {
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    match rng.below(6) {
        0 | 1 => (oracle::Validity::always(), "active", None),
        2 => {
            let (s, e) = (now - 30 * DAY, now - 10 * DAY);
            (
                oracle::Validity::between(Some(s), Some(e)),
                "active",
                Some(json!({"start": at(s), "end": at(e)})),
            )
        }
        3 => {
            let s = now + 30 * DAY;
            (
                oracle::Validity::between(Some(s), None),
                "active",
                Some(json!({"start": at(s)})),
            )
        }
        4 => {
            let (s, e) = (now - 10 * DAY, now + 30 * DAY);
            (
                oracle::Validity::between(Some(s), Some(e)),
                "active",
                Some(json!({"start": at(s), "end": at(e)})),
            )
        }
        _ => (oracle::Validity::inactive(), "inactive", None),
    }
}

fn consent(patient: &str, status: &str, mut provision: Value, period: Option<Value>) -> Value {
    if let Some(p) = period {
        provision["period"] = p;
    }
    json!({"resourceType": "Consent", "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "provision": provision})
}

fn actor(role_system: &str, role: &str, reference: &str) -> Value {
    json!([{"role": {"coding": [{"system": role_system, "code": role}]},
        "reference": {"reference": reference}}])
}

const PRCP: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

struct Client {
    client: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.expect("request");
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, body: &Value) -> Value {
        let (status, v) = self
            .send(
                self.client
                    .post(format!("{}/{path}", self.base))
                    .header("Content-Type", FHIR_JSON)
                    .body(body.to_string()),
            )
            .await;
        assert_eq!(status, 201, "POST {path}: {v}");
        v
    }
    /// A GET's status.
    async fn status(&self, path: &str) -> u16 {
        self.send(self.client.get(format!("{}/{path}", self.base)))
            .await
            .0
    }
    /// A POST whose refusal is an answer too: its status.
    async fn try_post(&self, path: &str, body: &Value) -> u16 {
        self.send(
            self.client
                .post(format!("{}/{path}", self.base))
                .header("Content-Type", FHIR_JSON)
                .body(body.to_string()),
        )
        .await
        .0
    }
}

/// The filing backend service of the property test's worlds.
const SERVICE: &str = "property-lab";

/// Registers a filing backend service (`carnet client add`); its key.
fn filing_service(app: &TestApp) -> ClientKey {
    let key = ClientKey::new("property-lab-key");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    carnet_client(
        app,
        &[
            "add",
            "--client-id",
            SERVICE,
            "--name",
            "Laboratoire",
            "--scope",
            "system/*.cruds",
            "--jwks-file",
            jwks.to_str().unwrap(),
        ],
    );
    key
}

/// The filing service with a fresh token from the token endpoint (client_credentials, a
/// signed assertion): tokens live five minutes, a world takes seconds.
async fn service_client(app: &TestApp, key: &ClientKey) -> Client {
    let token_url = app.url("../auth/token").replace("/fhir/../", "/");
    let token = service_token(&token_url, key, SERVICE, "system/*.cruds").await;
    Client {
        client: client_with(&token),
        base: app.base.clone(),
    }
}

/// One random world, written through the server, and its oracle model.
struct World {
    /// The model with what issue 16 adds: emergency permits and the deployment's default,
    /// authorisations given by legal representatives, care-team declarations.
    control: control::ControlModel,
    docs: Vec<oracle::Document>,
    patients: Vec<String>,
    /// (person = a Patient id, child) guardianships recorded (in effect or not).
    guardians: Vec<(String, String)>,
    pros: Vec<String>,
}

async fn build_world(
    app: &TestApp,
    rng: &mut Rng,
    now: i64,
    tag: u64,
    emergency_default: control::EmergencyDefault,
) -> World {
    let (matrix, professions, types) = oracle_matrix();
    let mut model = oracle::Model::new(matrix);
    let mut permits: HashMap<String, Vec<oracle::Validity>> = HashMap::new();
    let mut grants: Vec<control::Grant> = Vec::new();
    let mut care_team: Vec<control::CareTeamDeclaration> = Vec::new();
    let as_ = |subject: DevSubject| Client {
        client: client_with(&dev_token(&app.args.data_dir, &subject, None)),
        base: app.base.clone(),
    };
    let system = Client {
        client: app.client.clone(),
        base: app.base.clone(),
    };
    // Professionals.
    let mut pros = Vec::new();
    for _ in 0..6 {
        let (profession, social) = rng.pick(&professions).clone();
        let p = system
            .post("Practitioner", &json!({"resourceType": "Practitioner",
                "qualification": [{"code": {"coding": [{"system": TRE_G15, "code": profession}]}}]}))
            .await;
        let id = p["id"].as_str().unwrap().to_string();
        model.add_professional(&id, &profession, social);
        pros.push(id);
    }
    // Patients (three with records, two more people who may be guardians).
    let mut people = Vec::new();
    for i in 0..5u64 {
        let ins = format!("{}{:04}{:02}", 1_800_175_123, tag % 10_000, i);
        let mut p = json!({"resourceType": "Patient",
            "identifier": [{"system": INS, "value": ins}]});
        let mt = (i < 3 && rng.chance(60)).then(|| rng.pick(&pros).clone());
        if let Some(mt) = &mt {
            p["generalPractitioner"] = json!([{"reference": format!("Practitioner/{mt}")}]);
        }
        let id = system.post("Patient", &p).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let rules = model.add_patient(&id);
        if let Some(mt) = mt {
            rules
                .medecin_traitant
                .push(oracle::ProfessionalProvision::new(
                    &mt,
                    oracle::Validity::always(),
                ));
        }
        people.push((id, ins));
    }
    let patients: Vec<String> = people[..3].iter().map(|p| p.0.clone()).collect();
    // Guardianships: people 3 and 4 (and patient 0) may represent patients 1 and 2.
    let mut guardians = Vec::new();
    for child in &patients[1..] {
        for person in [&people[3], &people[4], &people[0]] {
            if !rng.chance(50) {
                continue;
            }
            let (v, status, period) = validity(rng, now);
            let rp = system
                .post(
                    "RelatedPerson",
                    &json!({"resourceType": "RelatedPerson",
                    "patient": {"reference": format!("Patient/{child}")},
                    "identifier": [{"system": INS, "value": person.1}]}),
                )
                .await;
            let rp = rp["id"].as_str().unwrap();
            system
                .post(
                    "Consent",
                    &consent(
                        child,
                        status,
                        json!({"type": "permit", "actor": actor(
                            "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GUARD",
                            &format!("RelatedPerson/{rp}"))}),
                        period,
                    ),
                )
                .await;
            model
                .patient_mut(child)
                .guardians
                .push(oracle::Guardianship::new(&person.0, v));
            guardians.push((person.0.clone(), child.clone()));
        }
    }
    // The patients' rules, written by the patients.
    for p in &patients {
        let holder = as_(DevSubject::Patient(p.clone()));
        for pro in &pros {
            for kind in ["authorise", "block", "equivalent"] {
                let odds = match kind {
                    "authorise" => 45,
                    "block" => 15,
                    _ => 15,
                };
                if !rng.chance(odds) {
                    continue;
                }
                let (v, status, period) = validity(rng, now);
                let mut provision = json!({
                    "type": if kind == "block" { "deny" } else { "permit" },
                    "actor": actor(PRCP, "PRCP", &format!("Practitioner/{pro}"))});
                if kind == "equivalent" {
                    provision["securityLabel"] = json!([{"system": TRE_A07, "code": "MASQUE_PS"}]);
                }
                holder
                    .post("Consent", &consent(p, status, provision, period))
                    .await;
                let rules = model.patient_mut(p);
                let list = match kind {
                    "authorise" => &mut rules.authorisations,
                    "block" => &mut rules.blocks,
                    _ => &mut rules.equivalent_rights,
                };
                list.push(oracle::ProfessionalProvision::new(pro, v));
            }
        }
        for purpose in ["BTG", "ETREAT"] {
            if !rng.chance(30) {
                continue;
            }
            let (v, status, period) = validity(rng, now);
            holder
                .post(
                    "Consent",
                    &consent(
                        p,
                        status,
                        json!({"type": "deny", "purpose": [{"system":
                            "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}),
                        period,
                    ),
                )
                .await;
            let rules = model.patient_mut(p);
            if purpose == "BTG" {
                rules.emergency_objection.push(v);
            } else {
                rules.regulation_objection.push(v);
            }
        }
        // Emergency access allowed by the patient (what the opt-in default needs).
        if rng.chance(30) {
            let (v, status, period) = validity(rng, now);
            holder
                .post(
                    "Consent",
                    &consent(
                        p,
                        status,
                        json!({"type": "permit", "purpose": [{"system":
                            "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG"}]}),
                        period,
                    ),
                )
                .await;
            permits.entry(p.clone()).or_default().push(v);
        }
        // Mask everything (AC4, the oracle's A19): a deny with no actor and no purpose.
        if rng.chance(12) {
            let (v, status, period) = validity(rng, now);
            holder
                .post(
                    "Consent",
                    &consent(p, status, json!({"type": "deny"}), period),
                )
                .await;
            model.patient_mut(p).mask_everything.push(v);
        }
    }
    // Legal representatives authorise professionals on the child's record (issue 16: the
    // professional then sees what the representative sees); refused while the
    // guardianship is not in effect.
    for (person, child) in &guardians {
        let parent = Client {
            client: client_with(&dev_token_with(
                &app.args.data_dir,
                &DevSubject::Patient(person.clone()),
                None,
                &DevOptions {
                    acting_for: Some(child.clone()),
                    ..Default::default()
                },
            )),
            base: app.base.clone(),
        };
        for pro in &pros {
            if !rng.chance(25) {
                continue;
            }
            let (v, status, period) = validity(rng, now);
            let provision = json!({"type": "permit",
                "actor": actor(PRCP, "PRCP", &format!("Practitioner/{pro}"))});
            let written = parent
                .try_post("Consent", &consent(child, status, provision, period))
                .await;
            if written == 201 {
                grants.push(control::Grant {
                    patient: child.clone(),
                    professional: pro.clone(),
                    kind: control::GrantKind::Authorisation,
                    grantor: control::Grantor::LegalRepresentative(person.clone()),
                    validity: v,
                });
            }
        }
    }
    // Professionals declare themselves of a patient's care team (AC1); refused when
    // blocked.
    for p in &patients {
        for pro in &pros {
            if !rng.chance(10) {
                continue;
            }
            let provision = json!({"type": "permit",
                "actor": actor(PRCP, "PRCP", &format!("Practitioner/{pro}"))});
            let written = as_(DevSubject::Practitioner(pro.clone()))
                .try_post("Consent", &consent(p, "active", provision, None))
                .await;
            let blocked = model
                .patients
                .get(p.as_str())
                .is_some_and(|r| r.is_blocked(pro, now));
            assert_eq!(
                written == 201,
                !blocked,
                "a care-team declaration by {pro} for {p} (blocked: {blocked}): {written}"
            );
            if written == 201 {
                care_team.push(control::CareTeamDeclaration {
                    patient: p.clone(),
                    professional: pro.clone(),
                    through: None,
                    recorded_at: now,
                    validity: oracle::Validity::always(),
                    withdrawn: None,
                });
            }
        }
    }
    // Documents.
    let mut docs = Vec::new();
    for p in &patients {
        for _ in 0..4 {
            let by_patient = rng.chance(20);
            let (system_url, type_code) = rng.pick(&types).clone();
            let mut labels: BTreeSet<oracle::Label> = BTreeSet::new();
            let candidates: &[&str] = if by_patient {
                &["MASQUE_PS", "INVISIBLE_REPRESENTANTS_LEGAUX"]
            } else {
                &[
                    "MASQUE_PS",
                    "INVISIBLE_PATIENT",
                    "INVISIBLE_REPRESENTANTS_LEGAUX",
                    "MASQUE_PSOCIAL",
                ]
            };
            for code in candidates {
                if rng.chance(25) {
                    labels.insert(oracle::label(TRE_A07, code));
                }
            }
            if rng.chance(30) {
                labels.insert(oracle::label(oracle::V3_CONFIDENTIALITY, "N"));
            }
            let (author, author_ref, filer) = if by_patient {
                (
                    oracle::Author::PatientSide,
                    format!("Patient/{p}"),
                    as_(DevSubject::Patient(p.clone())),
                )
            } else {
                let pro = rng.pick(&pros).clone();
                (
                    oracle::Author::Professional(pro.clone()),
                    format!("Practitioner/{pro}"),
                    as_(DevSubject::Practitioner(pro)),
                )
            };
            let mut body = json!({"resourceType": "DocumentReference", "status": "current",
                "type": {"coding": [{"system": system_url, "code": type_code}]},
                "subject": {"reference": format!("Patient/{p}")},
                "author": [{"reference": author_ref}],
                "content": [{"attachment": {"contentType": "application/pdf"}}]});
            if !labels.is_empty() {
                body["securityLabel"] = labels
                    .iter()
                    .map(|(s, c)| json!({"coding": [{"system": s, "code": c}]}))
                    .collect();
            }
            let created = filer.post("DocumentReference", &body).await;
            let mut doc =
                oracle::Document::new(created["id"].as_str().unwrap(), p, author, &type_code, now);
            doc.labels = labels;
            docs.push(doc);
        }
    }
    let mut control = control::ControlModel::new(model.clone());
    control.emergency_default = emergency_default;
    control.emergency_permits = permits;
    control.grants = grants;
    control.care_team = care_team;
    World {
        control,
        docs,
        patients,
        guardians,
        pros,
    }
}

/// Who asks, as the server's token and as the oracle's request.
struct Asker {
    subject: DevSubject,
    options: DevOptions,
    request: oracle::Request,
    /// The record the request is bound to (a patient's own, or the child's).
    bound: Option<String>,
    /// The patient an emergency purpose was declared for.
    emergency_for: Option<String>,
    label: String,
}

fn askers(world: &World, now: i64, shift: i64) -> Vec<Asker> {
    let at = now + shift;
    let mut out = Vec::new();
    for p in &world.patients {
        out.push(Asker {
            subject: DevSubject::Patient(p.clone()),
            options: DevOptions::default(),
            request: oracle::Request::patient(p, at),
            bound: Some(p.clone()),
            emergency_for: None,
            label: format!("holder {p}"),
        });
    }
    for (person, child) in &world.guardians {
        out.push(Asker {
            subject: DevSubject::Patient(person.clone()),
            options: DevOptions {
                acting_for: Some(child.clone()),
                ..Default::default()
            },
            request: oracle::Request::representative(person, at),
            bound: Some(child.clone()),
            emergency_for: None,
            label: format!("{person} for {child}"),
        });
    }
    for (k, pro) in world.pros.iter().enumerate() {
        // An emergency is declared for one patient: it opens that record only.
        let context = world.patients[k % world.patients.len()].clone();
        let purposes: [(Option<&str>, Option<&str>, bool, oracle::Purpose); 5] = [
            (None, None, false, oracle::Purpose::Normal),
            (
                Some("BTG"),
                Some("urgence vitale"),
                false,
                oracle::Purpose::Btg {
                    reason: "urgence vitale".into(),
                    declared_at: now,
                },
            ),
            (
                Some("BTG"),
                Some("   "),
                false,
                oracle::Purpose::Btg {
                    reason: "   ".into(),
                    declared_at: now,
                },
            ),
            (
                Some("ETREAT"),
                None,
                true,
                oracle::Purpose::Etreat {
                    regulation_role: true,
                    declared_at: now,
                },
            ),
            (
                Some("ETREAT"),
                None,
                false,
                oracle::Purpose::Etreat {
                    regulation_role: false,
                    declared_at: now,
                },
            ),
        ];
        for (purpose, reason, regulation, op) in purposes {
            out.push(Asker {
                subject: DevSubject::Practitioner(pro.clone()),
                options: DevOptions {
                    purpose: purpose.map(str::to_string),
                    reason: reason.map(str::to_string),
                    regulation,
                    acting_for: purpose.map(|_| context.clone()),
                    ..Default::default()
                },
                request: oracle::Request::new(oracle::Actor::Professional(pro.clone()), op, at),
                bound: None,
                emergency_for: purpose.map(|_| context.clone()),
                label: format!("pro {pro} {purpose:?} {reason:?} reg={regulation}"),
            });
        }
    }
    out
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn what_each_actor_gets_equals_the_oracle(backend: Backend) {
    let seed: u64 = std::env::var("CARNET_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let worlds: u64 = std::env::var("CARNET_PROPERTY_WORLDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    eprintln!("consent property test: seed {seed} (CARNET_PROPERTY_SEED), {worlds} worlds");
    // The deployment's emergency default, one per run (issue 16): both over the seeds.
    let emergency_default = if seed.is_multiple_of(2) {
        control::EmergencyDefault::OptIn
    } else {
        control::EmergencyDefault::OptOut
    };
    let setting = match emergency_default {
        control::EmergencyDefault::OptIn => "opt-in",
        control::EmergencyDefault::OptOut => "opt-out",
    };
    eprintln!("consent property test: --emergency-access {setting}");
    let app = spawn_with(backend, |a| a.emergency_access = setting.into()).await;
    let service_key = filing_service(&app);
    let mut rng = Rng(seed);
    let mut cases = 0u64;
    let mut visible = 0u64;
    let mut failures: Vec<String> = Vec::new();
    // What each professional was shown (under any of their purposes): their own traces
    // may name those documents and no other.
    let mut shown: HashMap<String, BTreeSet<String>> = HashMap::new();
    for w in 0..worlds {
        // The tokens' issue time starts the emergency window: `now` is taken just before.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let world = build_world(&app, &mut rng, now, seed.wrapping_add(w), emergency_default).await;
        let shift = *rng.pick(&[0, 0, 20 * DAY, 40 * DAY]);
        // A professional knows what they filed themselves.
        for doc in &world.docs {
            if let oracle::Author::Professional(pro) = &doc.author {
                shown.entry(pro.clone()).or_default().insert(doc.id.clone());
            }
        }
        for asker in askers(&world, now, shift) {
            if let DevSubject::Practitioner(pro) = &asker.subject {
                shown.entry(pro.clone()).or_default();
            }
            let token = dev_token_with(&app.args.data_dir, &asker.subject, None, &asker.options);
            let client = client_with(&token);
            // Unshifted requests run on the server's own clock (after the tokens' issue
            // time, which opens an emergency window); shifted ones move it.
            let get = |path: String| {
                let req = client.get(format!("{}/{path}", app.base));
                if shift > 0 {
                    req.header("X-Carnet-Now", rfc3339(now + shift)).send()
                } else {
                    req.send()
                }
            };
            let mut found: HashMap<String, BTreeSet<String>> = HashMap::new();
            for p in &world.patients {
                let res = get(format!("DocumentReference?patient={p}&_count=100"))
                    .await
                    .unwrap();
                let bundle: Value = res.json().await.unwrap();
                let ids: BTreeSet<String> = bundle["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"]["id"].as_str().unwrap_or("").to_string())
                    .collect();
                if bundle["total"].as_u64() != Some(ids.len() as u64) {
                    failures.push(format!(
                        "{}: total {} but {} entries",
                        asker.label,
                        bundle["total"],
                        ids.len()
                    ));
                }
                found.insert(p.clone(), ids);
            }
            for doc in &world.docs {
                let in_bound = asker.bound.as_ref().is_none_or(|b| *b == doc.patient);
                // Out of the emergency's record, a well-formed emergency claim is a normal
                // request (a malformed one is refused everywhere).
                let mut request = asker.request.clone();
                let well_formed = match &request.purpose {
                    oracle::Purpose::Btg { reason, .. } => !reason.trim().is_empty(),
                    oracle::Purpose::Etreat {
                        regulation_role, ..
                    } => *regulation_role,
                    oracle::Purpose::Normal => true,
                };
                if well_formed
                    && asker
                        .emergency_for
                        .as_ref()
                        .is_some_and(|p| *p != doc.patient)
                {
                    request.purpose = oracle::Purpose::Normal;
                }
                let expected = in_bound
                    && control::decide_person(&world.control, &request, doc)
                        == control::Outcome::Visible;
                let read = get(format!("DocumentReference/{}", doc.id))
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                let vread = get(format!("DocumentReference/{}/_history/1", doc.id))
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                let searched = found[&doc.patient].contains(&doc.id);
                if let DevSubject::Practitioner(pro) = &asker.subject {
                    if read == 200 || vread == 200 || searched {
                        shown.entry(pro.clone()).or_default().insert(doc.id.clone());
                    }
                }
                for (path, got) in [
                    ("read", read == 200),
                    ("vread", vread == 200),
                    ("search", searched),
                ] {
                    cases += 1;
                    visible += got as u64;
                    if got != expected {
                        failures.push(format!(
                            "{} {path} DocumentReference/{} (labels {:?}, author {:?}, type {}, \
                             patient {}): engine {got}, oracle {expected} ({:?}); seed {seed}",
                            asker.label,
                            doc.id,
                            doc.labels.iter().map(|l| &l.1).collect::<Vec<_>>(),
                            doc.author,
                            doc.type_code,
                            doc.patient,
                            control::decide_person(&world.control, &request, doc),
                        ));
                    }
                    if (read == 200) != (vread == 200) || ![200, 403, 404].contains(&read) {
                        failures.push(format!(
                            "{} DocumentReference/{}: read {read}, vread {vread}",
                            asker.label, doc.id
                        ));
                    }
                }
            }
        }
        // A filing backend service (a real token from the token endpoint): it files one
        // document and reads back that one only, never the rest of any record.
        let service = service_client(&app, &service_key).await;
        let filed = service
            .post(
                "DocumentReference",
                &json!({"resourceType": "DocumentReference", "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
                    "subject": {"reference": format!("Patient/{}", world.patients[w as usize % world.patients.len()])},
                    "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/lab"}}]}),
            )
            .await;
        let filed_id = filed["id"].as_str().unwrap().to_string();
        let mut cm = world.control.clone();
        cm.clients
            .insert(SERVICE.to_string(), control::ClientKind::Backend);
        let ask = control::Requester::Backend {
            client: SERVICE.to_string(),
            files_for: world.patients.iter().cloned().collect(),
            now,
        };
        let mut resources: Vec<control::FiledResource> = world
            .docs
            .iter()
            .map(|d| {
                let filer = match &d.author {
                    oracle::Author::Professional(p) => control::Filer::Professional(p.clone()),
                    oracle::Author::PatientSide => control::Filer::PatientSide,
                };
                let mut r = control::FiledResource::new(
                    control::ResourceKind::DocumentReference,
                    &d.id,
                    &d.patient,
                    filer,
                    &d.type_code,
                    d.filed_at,
                );
                for (system, code) in &d.labels {
                    r = r.labelled(system, code);
                }
                r
            })
            .collect();
        resources.push(control::FiledResource::new(
            control::ResourceKind::DocumentReference,
            &filed_id,
            &world.patients[w as usize % world.patients.len()],
            control::Filer::Backend(SERVICE.to_string()),
            "11502-2",
            now,
        ));
        for r in &resources {
            let expected = control::decide_clinical(&cm, &ask, r) == control::Outcome::Visible;
            let got = service
                .status(&format!("DocumentReference/{}", r.document.id))
                .await
                == 200;
            cases += 1;
            visible += got as u64;
            if got != expected {
                failures.push(format!(
                    "filing service read DocumentReference/{} (patient {}): engine {got}, \
                     oracle {expected} ({:?}); seed {seed}",
                    r.document.id,
                    r.patient(),
                    control::decide_clinical(&cm, &ask, r),
                ));
            }
        }
    }
    // Each professional's own traces (what they see of the trail) name no document they
    // were not shown, and a refusal names none at all.
    let mut traces_seen = 0u64;
    let pros: BTreeSet<String> = shown.keys().cloned().collect();
    for pro in pros {
        let token = dev_token_with(
            &app.args.data_dir,
            &DevSubject::Practitioner(pro.clone()),
            None,
            &DevOptions::default(),
        );
        let client = client_with(&token);
        let mut url = Some(format!(
            "{}/AuditEvent?agent=Practitioner/{pro}&_count=500",
            app.base
        ));
        while let Some(u) = url.take() {
            let bundle: Value = client.get(&u).send().await.unwrap().json().await.unwrap();
            for e in bundle["entry"].as_array().into_iter().flatten() {
                let trace = &e["resource"];
                traces_seen += 1;
                let refused = trace["outcome"] != "0";
                for en in trace["entity"].as_array().into_iter().flatten() {
                    let Some(r) = en["what"]["reference"].as_str() else {
                        continue;
                    };
                    if let Some(id) = r.strip_prefix("DocumentReference/") {
                        let allowed = shown.get(&pro).is_some_and(|s| s.contains(id));
                        if refused || !allowed {
                            failures.push(format!(
                                "pro {pro}'s own trace names {r} ({}; shown to them: \
                                 {allowed}); seed {seed}",
                                if refused { "a refusal" } else { "answered" }
                            ));
                        }
                    }
                }
            }
            url = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_string);
        }
    }
    eprintln!(
        "consent property test: {cases} cases ({visible} visible), {traces_seen} own traces \
         checked, {} mismatches",
        failures.len()
    );
    assert!(traces_seen > 0, "the professionals' own traces were read");
    assert!(
        failures.is_empty(),
        "{} mismatches, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(cases >= 1000, "{cases} cases");
    assert!(visible > 0 && visible < cases, "both outcomes occur");
}

both_backends!(what_each_actor_gets_equals_the_oracle);
