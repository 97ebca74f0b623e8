//! consent_facts: loads what the access point asks for ([`Need`]) from storage: a patient's
//! rules (their Consents, `Patient.generalPractitioner`, the RelatedPersons named as legal
//! representatives), a professional's professions, a patient's INS, a resource's current
//! version or first filing time.

use super::repo::Repository;
use super::rows::from_current;
use super::storage::{self, AnyConnection};
use crate::access::{Facts, Interaction, Need, Refusal, Visible};
use crate::auth::RequestContext;
use crate::consent::{self, Matrix, PatientRules, Rule};
use crate::error::FhirError;
use crate::resource::StoredResource;
use serde_json::Value;
use std::sync::Arc;

fn current_json(
    conn: &mut AnyConnection,
    rtype: &str,
    id: &str,
) -> Result<Option<Value>, FhirError> {
    Ok(storage::current(conn, rtype, id)?
        .filter(|r| !r.deleted)
        .and_then(|r| serde_json::from_str(&r.content).ok()))
}

fn identifiers(v: &Value, systems: &[&str]) -> Vec<String> {
    v.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| {
            i.get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| systems.contains(&s))
        })
        .filter_map(|i| i.get("value").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The key of a professional's stamp among the rules stamps (a FHIR id has no `/`, so it
/// never meets a patient's).
pub fn professions_stamp_key(practitioner: &str) -> String {
    format!("Practitioner/{practitioner}")
}

impl Repository {
    /// Loads one fact into `facts`. The access point asks for the rules of the record
    /// before the requester's professions, so that one statement reads both stamps.
    pub(super) fn load_fact(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        need: &Need,
        facts: &mut Facts,
    ) -> Result<(), FhirError> {
        match need {
            Need::Rules(patient) => {
                let stamp = match ctx.actor() {
                    crate::auth::Actor::Practitioner(id) => {
                        use std::collections::hash_map::Entry;
                        match facts.stamps.entry(professions_stamp_key(id)) {
                            Entry::Occupied(_) => {
                                storage::notifications::rules_stamp(conn, patient)?
                            }
                            Entry::Vacant(e) => {
                                let (rules, own) =
                                    storage::notifications::stamps_of_two(conn, patient, e.key())?;
                                e.insert(own);
                                rules
                            }
                        }
                    }
                    _ => storage::notifications::rules_stamp(conn, patient)?,
                };
                let rules = self.cached_rules(conn, patient, stamp)?;
                facts.put_rules(patient, rules);
            }
            Need::Professional(id) => {
                let key = professions_stamp_key(id);
                let stamp = match facts.stamps.get(&key) {
                    Some(s) => s.clone(),
                    None => {
                        let s = storage::notifications::rules_stamp(conn, &key)?;
                        facts.stamps.insert(key.clone(), s.clone());
                        s
                    }
                };
                if let Some(p) = self.professions_cache.get(&key, &stamp) {
                    facts.put_professions(id, p.as_ref().clone());
                    return Ok(());
                }
                let system = Matrix::builtin().profession_system();
                let professions: Vec<String> = current_json(conn, "Practitioner", id)?
                    .and_then(|v| v.get("qualification").cloned())
                    .and_then(|q| q.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|q| {
                        q.pointer("/code/coding")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter(|c| c.get("system").and_then(Value::as_str) == Some(system))
                    .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
                    .collect();
                // Not from inside a write: what it reads may yet be rolled back.
                if !storage::in_write() {
                    self.professions_cache
                        .put(&key, stamp, Arc::new(professions.clone()));
                }
                facts.put_professions(id, professions);
            }
            Need::Ins(patient) => {
                let ins = current_json(conn, "Patient", patient)?
                    .map(|v| identifiers(&v, &[consent::INS_NIR, consent::INS_NIA]))
                    .unwrap_or_default();
                facts.put_ins(patient, ins);
            }
            Need::Current(rtype, id) => {
                let row = storage::current(conn, rtype, id)?.map(from_current);
                facts.put_current(rtype, id, row);
            }
            Need::FiledAt(rtype, id) => {
                let first = storage::first_version(conn, rtype, id)?;
                facts.put_filed_at(rtype, id, first.as_ref().map(|f| f.0));
                facts.put_filed_by(rtype, id, first.and_then(|f| f.1));
            }
            Need::DocumentsOf(binary) => {
                let documents = storage::documents_of_binary(conn, binary)?;
                facts.put_documents_of(binary, documents);
            }
            Need::Versions(rtype, id) => {
                let contents = storage::all_versions(conn, rtype, id)?;
                facts.put_versions(rtype, id, contents);
            }
        }
        Ok(())
    }

    /// A patient's rules: from the cache while their stamp (as read now) is unchanged,
    /// else read again.
    pub(super) fn cached_rules(
        &self,
        conn: &mut AnyConnection,
        patient: &str,
        stamp: String,
    ) -> Result<Arc<PatientRules>, FhirError> {
        if let Some(rules) = self.rules_cache.get(patient, &stamp) {
            return Ok(rules);
        }
        let rules = Arc::new(self.patient_rules(conn, patient)?);
        self.rules_cache.put(patient, stamp, rules.clone());
        Ok(rules)
    }

    /// A patient's rules, from their record as stored now.
    pub(super) fn patient_rules(
        &self,
        conn: &mut AnyConnection,
        patient: &str,
    ) -> Result<PatientRules, FhirError> {
        let mut rules = PatientRules {
            patient: patient.to_string(),
            emergency_by_default: self.access.emergency_by_default(),
            ..PatientRules::default()
        };
        if let Some(p) = current_json(conn, "Patient", patient)? {
            rules.medecins_traitants = p
                .get("generalPractitioner")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("reference").and_then(Value::as_str))
                .filter_map(consent::practitioner_id)
                .map(str::to_string)
                .collect();
        }
        let ids = storage::search::referrers(
            conn,
            "Consent",
            "patient",
            "Patient",
            &[patient.to_string()],
        )?;
        for row in storage::search::current_rows(conn, "Consent", &ids)? {
            if row.deleted {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&row.content) else {
                continue;
            };
            rules.provisions.extend(consent::profile::provisions(&v));
        }
        let guardians: Vec<(String, consent::Period)> = rules
            .provisions
            .iter()
            .filter_map(|p| match &p.rule {
                Rule::Guardian { related_person } => Some((related_person.clone(), p.period)),
                _ => None,
            })
            .collect();
        for (rp, period) in guardians {
            let Some(v) = current_json(conn, "RelatedPerson", &rp)? else {
                continue;
            };
            let of_patient = v
                .pointer("/patient/reference")
                .and_then(Value::as_str)
                .is_some_and(|r| r.ends_with(&format!("Patient/{patient}")));
            let active = v.get("active").and_then(Value::as_bool) != Some(false);
            if of_patient && active {
                let ins = identifiers(&v, &[consent::INS_NIR, consent::INS_NIA]);
                if !ins.is_empty() {
                    rules.guardians.push((ins, period));
                }
            }
        }
        Ok(rules)
    }

    /// Decides on one resource for `ctx`, loading the facts the decision asks for.
    pub(super) fn decide_read(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        interaction: Interaction,
        resource: StoredResource,
        facts: &mut Facts,
    ) -> Result<Result<Visible<StoredResource>, Refusal>, FhirError> {
        self.access
            .check_read(ctx, interaction, resource, facts, &mut |n, f| {
                self.load_fact(conn, ctx, n, f)
            })
    }

    /// Keeps the resources `ctx` may see, loading the facts the decisions ask for.
    pub(super) fn decide_reads(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        interaction: Interaction,
        resources: Vec<StoredResource>,
        facts: &mut Facts,
    ) -> Result<Vec<Visible<StoredResource>>, FhirError> {
        self.access
            .filter(ctx, interaction, resources, facts, &mut |n, f| {
                self.load_fact(conn, ctx, n, f)
            })
    }

    /// Decides on a write for `ctx`, loading the facts the decision asks for.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_write(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        interaction: Interaction,
        (rtype, id): (&str, &str),
        new: Option<&Value>,
        current: Option<&StoredResource>,
        facts: &mut Facts,
    ) -> Result<crate::access::WriteReceipt, FhirError> {
        self.access.check_write(
            ctx,
            interaction,
            rtype,
            id,
            new,
            current,
            facts,
            &mut |n, f| self.load_fact(conn, ctx, n, f),
        )
    }
}
