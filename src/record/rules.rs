//! rules: a write that may change a patient's rules (a Consent, a RelatedPerson, the
//! Patient's médecin traitant) renews their rules stamp, so that every node reads the rules
//! again before its next decision. A Practitioner's write renews the stamp of their
//! professions the same way (the matrice d'habilitation reads them on every decision).

use serde_json::{json, Value};

use crate::access::Interaction;
use crate::auth::{Actor, RequestContext};
use crate::consent::{profile, Grantor, Rule};
use crate::error::FhirError;
use crate::repository::notices::{notice, Kind, Notice};
use crate::repository::{professions_stamp_key, HookTx, WriteHook, Written};

/// Renews the rules stamp of every patient whose rules a write may change.
pub struct RulesStamp;

impl WriteHook for RulesStamp {
    /// A patient's rule records who wrote it: `Consent.performer` is set to the writer
    /// (the patient, the legal representative acting for them, or the professional
    /// declaring their care-team access), whatever the request said — the rules read it.
    fn preparing(
        &self,
        _tx: &mut dyn HookTx,
        ctx: &RequestContext,
        rtype: &str,
        mut resource: Value,
        _current: Option<&Value>,
    ) -> Result<Value, FhirError> {
        if rtype != "Consent" || !profile::is_privacy(&resource) {
            return Ok(resource);
        }
        let writer = match ctx.actor() {
            Actor::Patient(_) | Actor::Practitioner(_) => ctx.subject(),
            Actor::System(_) => return Ok(resource),
        };
        resource["performer"] = json!([{"reference": writer}]);
        if let Some((org, name)) = ctx.establishment() {
            let mut organization = json!({"reference": org});
            if let Some(n) = name {
                organization["display"] = json!(n);
            }
            resource["organization"] = json!([organization]);
        }
        Ok(resource)
    }

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
        for p in &patients {
            tx.renew_rules_stamp(p)?;
        }
        if rtype == "Consent" {
            tx.notify(care_team_notices(w, &patients))?;
        }
        Ok(())
    }
}

/// The patient is told when a professional declares themselves of their care team (they
/// can withdraw it, or block the professional).
fn care_team_notices(w: &Written<'_>, patients: &[String]) -> Vec<Notice> {
    let (Some(ctx), Some(value)) = (w.ctx, w.value) else {
        return Vec::new();
    };
    let Actor::Practitioner(pro) = ctx.actor() else {
        return Vec::new();
    };
    let declared = matches!(w.interaction, Interaction::Create)
        && profile::stated(value).iter().any(|p| {
            matches!(
                p.rule,
                Rule::Authorise {
                    by: Grantor::CareTeam,
                    ..
                }
            )
        });
    if !declared {
        return Vec::new();
    }
    let who = crate::repository::notices::who_for_people(ctx, pro);
    patients
        .iter()
        .map(|patient| {
            notice(
                Kind::CareTeam,
                format!("care-team|{}", w.resource.id),
                patient,
                vec![format!("Patient/{patient}")],
                vec![
                    format!("Consent/{}", w.resource.id),
                    format!("Practitioner/{pro}"),
                ],
                format!(
                    "{who} a indiqué faire partie de votre équipe de soins : vous en avez été \
                     informé(e) et ne vous y êtes pas opposé(e). Il peut donc consulter votre \
                     dossier. Vous pouvez retirer cette autorisation ou bloquer ce \
                     professionnel dans vos règles d'accès."
                ),
                &[],
                None,
            )
        })
        .collect()
}
