//! consent: the patient's rules themselves. A privacy Consent must follow Carnet's Consent
//! profile; the rules are written by the patient or their legal representative (a backend
//! service records legal representatives only), never by professionals; and a block or an
//! objection is lifted by the patient in Carnet itself, not through an app.

use super::base::{forbid, Facts, Interaction, Need, Policy, Write};
use crate::auth::Actor;
use crate::consent::{profile, Rule};
use crate::error::FhirError;
use serde_json::Value;

pub(super) struct Consents;

/// Whether a Consent (or its absence) records legal representatives only.
pub(in crate::access) fn guardianship_only(v: Option<&Value>) -> bool {
    v.is_none_or(|v| {
        if !profile::is_privacy(v) {
            return true;
        }
        let p = profile::stated(v);
        !p.is_empty() && p.iter().all(|p| matches!(p.rule, Rule::Guardian { .. }))
    })
}

/// Whether a professional's write records their care-team access (AC1: the patient was
/// informed and did not object): a new, active privacy Consent whose one rule authorises
/// them, and no one else.
fn care_team_declaration(w: &Write, me: &str) -> bool {
    let Some(new) = w.new.filter(|_| w.interaction == Interaction::Create) else {
        return false;
    };
    if !profile::is_privacy(new) || new.get("status").and_then(Value::as_str) != Some("active") {
        return false;
    }
    let stated = profile::stated(new);
    stated.len() == 1
        && matches!(&stated[0].rule, Rule::Authorise { practitioner, .. } if practitioner == me)
}

impl Policy for Consents {
    fn professional_create(
        &self,
        w: &Write,
        professional: &str,
        facts: &Facts,
    ) -> Result<Result<(), FhirError>, Need> {
        // A blocked professional cannot declare themselves of the care team.
        let patients = self.patients_of("Consent", w.new.unwrap_or(&Value::Null), "");
        if patients.is_empty() {
            return Ok(Err(forbid(
                "a care-team declaration names the patient (Consent.patient: Patient/ID)",
            )));
        }
        for patient in patients {
            let rules = facts
                .rules
                .get(&patient)
                .ok_or_else(|| Need::Rules(patient.clone()))?;
            if rules.is_blocked(professional, w.ctx.now_us()) {
                return Ok(Err(forbid("the patient has blocked this professional")));
            }
        }
        Ok(Ok(()))
    }

    fn write_first(&self, w: &Write) -> Option<Result<(), FhirError>> {
        if let Some(new) = w.new.filter(|n| profile::is_privacy(n)) {
            if let Err(why) = profile::check(new) {
                return Some(Err(FhirError::Unprocessable(format!(
                    "this Consent does not follow Carnet's Consent profile: {why}"
                ))));
            }
        }
        match w.ctx.actor() {
            Actor::Practitioner(me) if care_team_declaration(w, me) => None,
            Actor::Practitioner(_) => Some(Err(forbid(
                "a patient's rules (Consents) are written by the patient or their legal \
                 representative; a professional only records their own care-team access \
                 (a new active permit naming themselves, once the patient was informed and \
                 did not object)",
            ))),
            Actor::System(_)
                if !(guardianship_only(w.new) && guardianship_only(w.current_value)) =>
            {
                Some(Err(forbid(
                    "a backend service may record legal representatives only; the patient's \
                     privacy rules are theirs to write",
                )))
            }
            _ => None,
        }
    }

    fn patient_write(&self, w: &Write) -> Result<(), FhirError> {
        if w.ctx.first_party() || w.interaction == super::base::Interaction::Create {
            return Ok(());
        }
        // "No professional or app can lift a block or unmask": a third-party app acting for
        // the patient adds rules and masks, never the reverse.
        let restrictive = w.current_value.is_some_and(|v| {
            profile::is_privacy(v)
                && profile::stated(v).iter().any(|p| {
                    matches!(
                        p.rule,
                        Rule::Block { .. } | Rule::ObjectEmergency | Rule::ObjectRegulation
                    )
                })
        });
        if restrictive {
            return Err(forbid(
                "a block or an objection is lifted by the patient in Carnet itself, not through \
                 an app",
            ));
        }
        Ok(())
    }
}
