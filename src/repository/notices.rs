//! notices: what Carnet tells the patient about their record, as `Communication`s addressed
//! to them — a professional's first access, every emergency access (to their médecin
//! traitant too), a new document, and the two-week notice of an `INVISIBLE_PATIENT`
//! document. Each notice is written once (its key is recorded in the `notices` table, in
//! the transaction that writes it) and is pushed to subscribers like any other write.
//!
//! A notice carries the visibility labels of what it is about (`meta.security`), so the
//! access point hides it exactly as the document is hidden.

use super::storage::{self, notifications, AnyConnection};
use super::Repository;
use crate::access::Facts;
use crate::auth::{Actor, RequestContext};
use crate::consent::{self, Basis, Purpose};
use crate::error::FhirError;
use crate::fhir::instant;
use serde_json::{json, Value};

use crate::consent::NOTICE_SYSTEM;

/// How long after the filing of an `INVISIBLE_PATIENT` document the patient is told that
/// their record was updated (the document itself appears a month after filing).
pub const INVISIBLE_NOTICE_DELAY_US: i64 = 14 * 24 * 3600 * 1_000_000;

/// The kinds of notice (codes of [`NOTICE_SYSTEM`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FirstAccess,
    EmergencyAccess,
    NewDocument,
    RecordUpdated,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::FirstAccess => "first-access",
            Kind::EmergencyAccess => "emergency-access",
            Kind::NewDocument => "new-document",
            Kind::RecordUpdated => "record-updated",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Kind::FirstAccess => "Premier accès d'un professionnel à votre dossier",
            Kind::EmergencyAccess => "Accès en urgence à votre dossier",
            Kind::NewDocument => "Nouveau document dans votre dossier",
            Kind::RecordUpdated => "Votre dossier a été mis à jour",
        }
    }
}

/// A notice to write (now, or when due).
#[derive(Debug, Clone)]
pub struct Notice {
    /// What makes it once-only.
    pub key: String,
    pub patient: String,
    /// When it is due (None: at once).
    pub due_us: Option<i64>,
    pub communication: Value,
}

#[allow(clippy::too_many_arguments)]
fn notice(
    kind: Kind,
    key: String,
    patient: &str,
    recipients: Vec<String>,
    about: Vec<String>,
    text: String,
    labels: &[String],
    due_us: Option<i64>,
) -> Notice {
    let mut c = json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": NOTICE_SYSTEM, "code": kind.code(),
            "display": kind.display()}]}],
        "subject": {"reference": format!("Patient/{patient}")},
        "recipient": recipients.iter().map(|r| json!({"reference": r})).collect::<Vec<_>>(),
        "payload": [{"contentString": text}],
    });
    if !about.is_empty() {
        c["about"] = about.iter().map(|r| json!({"reference": r})).collect();
    }
    if !labels.is_empty() {
        c["meta"] = json!({"security": labels.iter()
            .map(|l| json!({"system": consent::TRE_A07, "code": l})).collect::<Vec<_>>()});
    }
    Notice {
        key,
        patient: patient.to_string(),
        due_us,
        communication: c,
    }
}

/// The notices a professional's accesses call for: the first access to each record opened
/// (reads only: `emergency_only` for a write's trail), and every emergency access (one per
/// declaration, to the patient and their médecin traitant). A notice carries the
/// visibility labels of what was accessed, so that it is hidden from whoever those
/// resources are hidden from (the patient, before the announcement consultation; a legal
/// representative).
pub fn for_accesses(ctx: &RequestContext, facts: &Facts, emergency_only: bool) -> Vec<Notice> {
    let Actor::Practitioner(pro) = ctx.actor() else {
        return Vec::new();
    };
    let mut opened: Vec<&str> = Vec::new();
    for d in facts.trail.iter().filter(|d| d.allowed) {
        // Finding a patient (their identity) is not opening their record.
        if d.resource_type == "Patient" {
            continue;
        }
        for p in &d.patients {
            if !opened.contains(&p.as_str()) {
                opened.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for patient in opened {
        let touched = || {
            facts
                .trail
                .iter()
                .filter(|d| d.allowed && d.patients.iter().any(|p| p == patient))
        };
        let bases: Vec<Basis> = touched().flat_map(|d| d.bases.iter().copied()).collect();
        let mut labels: Vec<String> = touched().flat_map(|d| d.labels.iter().cloned()).collect();
        labels.sort();
        labels.dedup();
        let emergency = match ctx.purpose() {
            Purpose::Emergency {
                reason,
                declared_at,
                ..
            } if bases.contains(&Basis::Emergency) => Some((
                *declared_at,
                format!("Un professionnel (Practitioner/{pro}) a déclaré une urgence pour accéder à votre dossier. Motif : {reason}"),
            )),
            Purpose::Regulation { declared_at, .. } if bases.contains(&Basis::Regulation) => {
                Some((
                    *declared_at,
                    format!("Le médecin régulateur du SAMU (Practitioner/{pro}) a accédé à votre dossier."),
                ))
            }
            _ => None,
        };
        let pro_ref = format!("Practitioner/{pro}");
        if let Some((declared_at, text)) = emergency {
            let mut recipients = vec![format!("Patient/{patient}")];
            if let Some(rules) = facts.rules.get(patient) {
                recipients.extend(
                    rules
                        .medecins_traitants
                        .iter()
                        .filter(|m| *m != pro)
                        .map(|m| format!("Practitioner/{m}")),
                );
            }
            out.push(notice(
                Kind::EmergencyAccess,
                format!("emergency-access|{patient}|{pro}|{declared_at}"),
                patient,
                recipients,
                vec![pro_ref.clone()],
                text,
                &labels,
                None,
            ));
        }
        if emergency_only {
            continue;
        }
        out.push(notice(
            Kind::FirstAccess,
            format!("first-access|{patient}|{pro}"),
            patient,
            vec![format!("Patient/{patient}")],
            vec![pro_ref],
            format!("Un professionnel (Practitioner/{pro}) a consulté votre dossier pour la première fois."),
            &labels,
            None,
        ));
    }
    out
}

/// The notice of a new document filed in `patient`'s record by someone else than the
/// patient: at once, or — for a document hidden from the patient until the announcement
/// consultation — a "record updated" notice two weeks after filing, naming nothing.
pub fn for_new_document(
    ctx: &RequestContext,
    patient: &str,
    doc_id: &str,
    labels: &[String],
    filed_us: i64,
) -> Option<Notice> {
    if let Actor::Patient(_) = ctx.actor() {
        return None;
    }
    let patient_ref = format!("Patient/{patient}");
    if labels.iter().any(|l| l == consent::INVISIBLE_PATIENT) {
        return Some(notice(
            Kind::RecordUpdated,
            format!("record-updated|{doc_id}"),
            patient,
            vec![patient_ref],
            Vec::new(),
            "Votre dossier a été mis à jour : un document vous sera présenté par votre professionnel de santé.".into(),
            &labels.iter().filter(|l| *l != consent::INVISIBLE_PATIENT).cloned().collect::<Vec<_>>(),
            Some(filed_us + INVISIBLE_NOTICE_DELAY_US),
        ));
    }
    let by = match ctx.actor() {
        Actor::Practitioner(id) => format!(" par Practitioner/{id}"),
        _ => String::new(),
    };
    Some(notice(
        Kind::NewDocument,
        format!("new-document|{doc_id}"),
        patient,
        vec![patient_ref],
        vec![format!("DocumentReference/{doc_id}")],
        format!("Un nouveau document a été ajouté à votre dossier{by}."),
        labels,
        None,
    ))
}

impl Repository {
    /// Records `notices` once each, writing those already due as Communications (in the
    /// caller's transaction). Returns their keys, for [`Self::remember_notices`] once the
    /// transaction is committed.
    pub(super) fn write_notices(
        &self,
        conn: &mut AnyConnection,
        notices: Vec<Notice>,
        now_us: i64,
    ) -> Result<Vec<String>, FhirError> {
        let mut keys = Vec::new();
        for n in notices {
            if self.notified.seen(&n.key) {
                continue;
            }
            let due = n.due_us.is_none_or(|d| d <= now_us);
            let content = if due {
                String::new()
            } else {
                n.communication.to_string()
            };
            let due_us = n.due_us.unwrap_or(now_us);
            if notifications::put_notice(conn, &n.key, &n.patient, due_us, &content, due)? && due {
                self.write_communication(conn, n.communication, now_us)?;
            }
            keys.push(n.key);
        }
        Ok(keys)
    }

    /// Notices known recorded (after their transaction committed).
    pub(super) fn remember_notices(&self, keys: &[String]) {
        for k in keys {
            self.notified.remember(k);
        }
    }

    /// Writes the notices due by `now_us` (of one patient, or everyone's) that are still
    /// pending; returns how many were written.
    pub fn write_due_notices(
        &self,
        patient: Option<&str>,
        now_us: i64,
    ) -> Result<usize, FhirError> {
        let mut conn = self.storage.conn()?;
        if notifications::due_notices(&mut conn, patient, now_us, 1)?.is_empty() {
            return Ok(0);
        }
        storage::Storage::write_on(&mut conn, |c| {
            let mut written = 0;
            for (key, content) in notifications::due_notices(c, patient, now_us, 500)? {
                if !notifications::notice_written(c, &key)? {
                    continue;
                }
                let communication: Value = serde_json::from_str(&content)
                    .map_err(|e| FhirError::Internal(format!("a stored notice: {e}")))?;
                self.write_communication(c, communication, now_us)?;
                written += 1;
            }
            Ok(written)
        })
    }

    fn write_communication(
        &self,
        conn: &mut AnyConnection,
        mut communication: Value,
        sent_us: i64,
    ) -> Result<(), FhirError> {
        communication["sent"] = json!(instant::format_us(sent_us));
        let id = super::new_id();
        if self
            .put_checked_opt(conn, "Communication", &id, communication, None, "POST")?
            .is_none()
        {
            return Err(FhirError::Internal("a new notice's id was taken".into()));
        }
        Ok(())
    }
}

/// The keys of notices this process knows are recorded (so that a professional's every
/// read does not try to record their first access again). Bounded: forgotten keys are
/// only tried again, the table keeps them once.
#[derive(Default)]
pub struct Recorded(std::sync::Mutex<std::collections::HashSet<String>>);

impl Recorded {
    fn seen(&self, key: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn remember(&self, key: &str) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= 100_000 {
            set.clear();
        }
        set.insert(key.to_string());
    }
}
