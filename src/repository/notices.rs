//! notices: what Carnet tells the patient about their record, as `Communication`s addressed
//! to them — a professional's first access, every emergency access (to their médecin
//! traitant too), a new document, and the two-week notice of an `INVISIBLE_PATIENT`
//! document. Each notice is written once (its key is recorded in the `notices` table, in
//! the transaction that writes it) and is pushed to subscribers like any other write.
//!
//! A notice carries the visibility labels of what it is about (`meta.security`), so the
//! access point hides it exactly as the document is hidden.

use crate::access::Facts;
use crate::auth::{Actor, RequestContext};
use crate::consent::{self, Basis, Purpose};
use serde_json::{json, Value};

use crate::consent::NOTICE_SYSTEM;

/// How long after the filing of an `INVISIBLE_PATIENT` document the patient is told that
/// their record was updated (the document itself appears a month after filing).
pub const INVISIBLE_NOTICE_DELAY_US: i64 = 14 * 24 * 3600 * 1_000_000;

/// The kinds of notice (codes of [`NOTICE_SYSTEM`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ProfessionalAccess,
    EmergencyAccess,
    CareTeam,
    NewDocument,
    RecordUpdated,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::ProfessionalAccess => "professional-access",
            Kind::CareTeam => "care-team",
            Kind::EmergencyAccess => "emergency-access",
            Kind::NewDocument => "new-document",
            Kind::RecordUpdated => "record-updated",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Kind::ProfessionalAccess => "Un professionnel a consulté votre dossier",
            Kind::CareTeam => "Un professionnel s'est déclaré de votre équipe de soins",
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
pub fn notice(
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

/// An access session of a professional to a record, for its notice: the accesses within
/// one period of four hours (UTC, from midnight): the patient is told once per period in
/// which a professional opened their record, not only at the very first access ever.
pub const ACCESS_SESSION_US: i64 = 4 * 3600 * 1_000_000;

/// A professional as the patient's notices name them: their name when known, the
/// establishment they act for.
pub fn who_for_people(ctx: &RequestContext, pro: &str) -> String {
    let mut who = match ctx.name() {
        Some(name) => format!("Un professionnel, {name} (Practitioner/{pro}),"),
        None => format!("Un professionnel (Practitioner/{pro})"),
    };
    if let Some((org, name)) = ctx.establishment() {
        let at = name.map_or_else(|| org.to_string(), |n| format!("{n} ({org})"));
        who = format!("{who} pour l'établissement {at}");
        if ctx.name().is_some() {
            who.push(',');
        }
    }
    who
}

/// The notices a professional's accesses call for: one per access session to each record
/// opened ([`ACCESS_SESSION_US`]; reads only: `emergency_only` for a write's trail), and every emergency access (one per
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
        let session = ctx.now_us().div_euclid(ACCESS_SESSION_US);
        out.push(notice(
            Kind::ProfessionalAccess,
            format!("professional-access|{patient}|{pro}|{session}"),
            patient,
            vec![format!("Patient/{patient}")],
            vec![pro_ref],
            format!("{} a consulté votre dossier.", who_for_people(ctx, pro)),
            &labels,
            None,
        ));
    }
    out
}
