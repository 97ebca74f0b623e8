//! The typed actors every test speaks through: a record with its people ([`World`]), someone
//! making requests with their own token ([`As`]), and builders of the patient's rules.

use super::*;
use carnet::auth::{DevOptions, DevSubject};
use serde_json::{json, Value};

pub(crate) const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
pub(crate) const TRE_G15: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
pub(crate) const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const CONSULTATION: &str = "11488-4";
pub(crate) const IMAGING: &str = "18748-4";
pub(crate) const VACCINATION: &str = "87273-9";

/// Someone making requests with their own token.
pub(crate) struct As {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
}

impl As {
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let req = self
            .client
            .post(self.url(path))
            .header("Content-Type", FHIR_JSON)
            .body(body.to_string());
        self.send(req).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let req = self
            .client
            .put(self.url(path))
            .header("Content-Type", FHIR_JSON)
            .body(body.to_string());
        self.send(req).await
    }

    pub(crate) async fn patch(&self, path: &str, ops: &Value) -> (u16, Value) {
        let req = self
            .client
            .patch(self.url(path))
            .header("Content-Type", "application/json-patch+json")
            .body(ops.to_string());
        self.send(req).await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.client.delete(self.url(path))).await
    }

    /// The ids of a search's matches, and its total.
    pub(crate) async fn search(&self, query: &str) -> (Vec<String>, i64) {
        let (status, bundle) = self.get(query).await;
        assert_eq!(status, 200, "{query}: {bundle}");
        let ids = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] == "match")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect();
        (ids, bundle["total"].as_i64().unwrap_or(-1))
    }
}

/// A record with its people: the patient, their médecin traitant, professionals.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) patient: String,
    pub(crate) mt: String,
}

impl World {
    pub(crate) async fn new(backend: Backend) -> World {
        World::on(spawn_app(backend).await).await
    }

    /// The record on a server already started (with settings of its own).
    pub(crate) async fn on(app: TestApp) -> World {
        let mt = practitioner(&app, "10").await;
        let patient = app
            .create(&json!({"resourceType": "Patient",
                "identifier": [{"system": INS, "value": "180017512345601"}],
                "name": [{"family": "Martin"}],
                "generalPractitioner": [{"reference": format!("Practitioner/{mt}")}]}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        World { app, patient, mt }
    }

    pub(crate) fn token(&self, subject: DevSubject, options: DevOptions) -> As {
        let token = dev_token_with(&self.app.args.data_dir, &subject, None, &options);
        As {
            client: client_with(&token),
            base: self.app.base.clone(),
        }
    }

    pub(crate) fn pro(&self, id: &str) -> As {
        self.token(DevSubject::Practitioner(id.into()), DevOptions::default())
    }

    pub(crate) fn holder(&self) -> As {
        self.token(
            DevSubject::Patient(self.patient.clone()),
            DevOptions::default(),
        )
    }

    pub(crate) fn system(&self) -> As {
        As {
            client: self.app.client.clone(),
            base: self.app.base.clone(),
        }
    }

    /// A document of the patient's, filed by `author`.
    pub(crate) async fn document(&self, author: &str, type_code: &str, labels: &[&str]) -> String {
        let labels: Vec<Value> = labels
            .iter()
            .map(|c| json!({"coding": [{"system": TRE_A07, "code": c}]}))
            .collect();
        let mut doc = json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": LOINC, "code": type_code}]},
            "subject": {"reference": format!("Patient/{}", self.patient)},
            "author": [{"reference": format!("Practitioner/{author}")}],
            "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/x"}}]});
        if !labels.is_empty() {
            doc["securityLabel"] = json!(labels);
        }
        let (status, doc) = self.pro(author).post("DocumentReference", &doc).await;
        assert_eq!(status, 201, "filing needs no authorisation: {doc}");
        doc["id"].as_str().unwrap().to_string()
    }

    /// The patient writes a rule; returns the Consent's id.
    pub(crate) async fn rule(&self, provision: Value) -> String {
        let (status, c) = self
            .holder()
            .post("Consent", &consent(&self.patient, provision))
            .await;
        assert_eq!(status, 201, "{c}");
        c["id"].as_str().unwrap().to_string()
    }
}

pub(crate) async fn practitioner(app: &TestApp, profession: &str) -> String {
    app.create(
        &json!({"resourceType": "Practitioner", "name": [{"family": "Dr"}],
        "qualification": [{"code": {"coding": [{"system": TRE_G15, "code": profession}]}}]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn consent(patient: &str, provision: Value) -> Value {
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "provision": provision})
}

pub(crate) fn actor(kind: &str, reference: &str) -> Value {
    let (system, code) = match kind {
        "GUARD" => ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GUARD"),
        _ => (
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "PRCP",
        ),
    };
    json!([{"role": {"coding": [{"system": system, "code": code}]},
        "reference": {"reference": reference}}])
}

pub(crate) fn authorise(pro: &str) -> Value {
    json!({"type": "permit", "actor": actor("PRCP", &format!("Practitioner/{pro}"))})
}

pub(crate) fn block(pro: &str) -> Value {
    json!({"type": "deny", "actor": actor("PRCP", &format!("Practitioner/{pro}"))})
}

pub(crate) fn object(purposes: &[&str]) -> Value {
    let p: Vec<Value> = purposes
        .iter()
        .map(|c| json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": c}))
        .collect();
    json!({"type": "deny", "purpose": p})
}
