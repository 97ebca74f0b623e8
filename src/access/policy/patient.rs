//! patient: the Patient resource, the identity at the head of a record. A professional
//! finds a patient (to file a document, or to ask for access) unless blocked: the identity
//! is not the record. Only a professional the patient authorised updates it, never
//! deletes it; the médecin traitant (`generalPractitioner`) is the patient's to declare.

use serde_json::Value;

use super::base::{forbid, Facts, Need, Policy, Seen, Write};
use crate::consent::{self, Decision, PatientRules, Subject, Viewer};
use crate::error::FhirError;

pub(super) struct Patients;

fn general_practitioner(v: Option<&Value>) -> Option<Value> {
    v.and_then(|v| v.get("generalPractitioner")).cloned()
}

impl Policy for Patients {
    fn writable_by_patient(&self, rtype: &str, value: &Value, patient: &str, base: &str) -> bool {
        self.within_patient(rtype, value, patient, base)
    }

    fn decide(
        &self,
        seen: &Seen,
        viewer: &Viewer,
        rules: &PatientRules,
        subject: &Subject,
    ) -> Decision {
        let now = seen.ctx.now_us();
        match viewer {
            Viewer::Professional { id, .. } if rules.is_blocked(id, now) => Decision::Refused {
                why: "the patient has blocked this professional".into(),
                hidden: false,
            },
            Viewer::Professional { .. } => Decision::Visible,
            _ => consent::decide(viewer, rules, subject, consent::Matrix::builtin(), now),
        }
    }

    fn professional_write(&self, w: &Write, _professional: &str) -> Result<(), FhirError> {
        let new_record = w.current.is_none_or(|c| c.deleted);
        if new_record
            && w.new
                .is_some_and(|n| n.get("generalPractitioner").is_some())
        {
            return Err(forbid("the médecin traitant is the patient's to declare"));
        }
        Ok(())
    }

    fn professional_update(
        &self,
        w: &Write,
        professional: &str,
        facts: &Facts,
    ) -> Result<Result<(), FhirError>, Need> {
        let Some(cur) = w.current else {
            return Ok(Ok(()));
        };
        let rules = facts
            .rules
            .get(&cur.id)
            .ok_or_else(|| Need::Rules(cur.id.clone()))?;
        let open = matches!(
            consent::record_access(rules, professional, w.ctx.purpose(), w.ctx.now_us()),
            consent::RecordAccess::Open(_)
        );
        if !open || w.interaction == super::base::Interaction::Delete {
            return Ok(Err(forbid(
                "the patient has not authorised this professional",
            )));
        }
        if general_practitioner(w.new) != general_practitioner(w.current_value) {
            return Ok(Err(forbid(
                "the médecin traitant is the patient's to declare",
            )));
        }
        Ok(Ok(()))
    }
}
