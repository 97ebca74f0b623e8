//! rules: a write that may change a patient's rules (a Consent, a RelatedPerson, the
//! Patient's médecin traitant) renews their rules stamp, so that every node reads the rules
//! again before its next decision. A Practitioner's write renews the stamp of their
//! professions the same way (the matrice d'habilitation reads them on every decision).

use serde_json::Value;

use crate::error::FhirError;
use crate::repository::{professions_stamp_key, HookTx, WriteHook, Written};

/// Renews the rules stamp of every patient whose rules a write may change.
pub struct RulesStamp;

impl WriteHook for RulesStamp {
    fn written(&self, tx: &mut dyn HookTx, w: &Written<'_>) -> Result<(), FhirError> {
        let rtype = w.resource.resource_type.as_str();
        if rtype == "Practitioner" {
            return tx.renew_rules_stamp(&professions_stamp_key(&w.resource.id));
        }
        if !matches!(rtype, "Patient" | "Consent" | "RelatedPerson") {
            return Ok(());
        }
        let mut patients = Vec::new();
        if rtype == "Patient" {
            patients.push(w.resource.id.clone());
        }
        let old: Option<Value> = w.previous.and_then(|c| serde_json::from_str(c).ok());
        for v in w.value.into_iter().chain(old.as_ref()) {
            patients.extend(tx.patients_of(rtype, v));
        }
        patients.sort();
        patients.dedup();
        for p in patients {
            tx.renew_rules_stamp(&p)?;
        }
        Ok(())
    }
}
