//! profile: Carnet's Consent profile (`fhir-profiles/carnet/StructureDefinition-carnet-consent.json`):
//! how a patient's rule is written as an R4 Consent, checked on every write, and read back
//! into [`Provision`]s.
//!
//! Every rule is an active Consent with scope `consentscope#patient-privacy`, category LOINC
//! `59284-0`, the patient, and exactly one top-level provision (no nested provisions: the
//! engine would not understand them, so they are refused rather than ignored):
//! - `permit` + actor (role `v3-ParticipationType#PRCP`) `Practitioner/X`: authorisation;
//! - the same with `securityLabel` TRE_A07 `MASQUE_PS`: the médecin traitant's view;
//! - `deny` + actor `Practitioner/X`: a block;
//! - `deny` + purpose `v3-ActReason#BTG` (and/or `#ETREAT`), no actor: objection to
//!   emergency access (and/or to SAMU regulation);
//! - `permit` + purpose `v3-ActReason#BTG`, no actor: emergency access allowed (what the
//!   default `--emergency-access opt-in` needs);
//! - `deny`, no actor, no purpose: mask everything (visible to the patient and their legal
//!   representatives only, emergencies included);
//! - `permit` + actor (role `v3-RoleCode#GUARD`) `RelatedPerson/R`: a legal representative,
//!   the person whose INS `R.identifier` carries.
//!
//! `provision.period` bounds any of them. `Consent.performer`, which Carnet sets to the
//! writer, tells who authorised a professional ([`Grantor`]): the patient, a legal
//! representative, or the professional themself (the care team, AC1).

#[cfg(test)]
use super::TRE_A07;
use super::{Grantor, Period, Provision, Rule, ACT_REASON, MASQUE_PS};
use crate::fhir::instant;
use serde_json::Value;

pub const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
pub const LOINC: &str = "http://loinc.org";
pub const PRIVACY_CATEGORY: &str = "59284-0";
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
pub const PROFILE_URL: &str = "https://carnet.example/fhir/StructureDefinition/carnet-consent";

fn has_coding(cc: Option<&Value>, system: &str, code: &str) -> bool {
    cc.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some(system)
                    && c.get("code").and_then(Value::as_str) == Some(code)
            })
        })
}

fn period(p: Option<&Value>) -> Result<Period, String> {
    let Some(p) = p else {
        return Ok(Period::default());
    };
    let bound = |key: &str, end: bool| -> Result<Option<i64>, String> {
        match p.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(text) => {
                let us = instant::parse_us(text)
                    .ok_or_else(|| format!("provision.period.{key} '{text}' is not a date"))?;
                // A date-only end covers its whole day (FHIR Period ends are inclusive).
                Ok(Some(if end && text.len() == 10 {
                    us + 86_400_000_000 - 1
                } else {
                    us
                }))
            }
        }
    };
    Ok(Period {
        start: bound("start", false)?,
        end: bound("end", true)?,
    })
}

/// The actors of a provision: (role system, role code, reference).
fn actors(provision: &Value) -> Vec<(String, String, String)> {
    provision
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let coding = a.pointer("/role/coding/0")?;
            Some((
                coding.get("system")?.as_str()?.to_string(),
                coding.get("code")?.as_str()?.to_string(),
                a.pointer("/reference/reference")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Whether a Consent states privacy rules (scope `patient-privacy`): those must follow
/// Carnet's profile, as the engine enforces them. Consents of other scopes (research,
/// treatment) are kept as records and change no access.
pub fn is_privacy(consent: &Value) -> bool {
    has_coding(consent.get("scope"), CONSENT_SCOPE, "patient-privacy")
}

/// Checks a Consent against Carnet's profile; the message says what is wrong.
pub fn check(consent: &Value) -> Result<(), String> {
    rules_of(consent, true).map(|_| ())
}

/// The rules a Consent states, whatever its status (what it would do when active).
pub fn stated(consent: &Value) -> Vec<Provision> {
    rules_of(consent, true).unwrap_or_default()
}

/// The rules an (active, in-profile) Consent states; none for one that is not active.
pub fn provisions(consent: &Value) -> Vec<Provision> {
    rules_of(consent, false).unwrap_or_default()
}

fn rules_of(consent: &Value, strict: bool) -> Result<Vec<Provision>, String> {
    let id = consent
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !has_coding(consent.get("scope"), CONSENT_SCOPE, "patient-privacy") {
        return Err("Carnet's Consents have scope consentscope#patient-privacy".into());
    }
    let categorised = consent
        .get("category")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| has_coding(Some(c), LOINC, PRIVACY_CATEGORY))
        });
    if !categorised {
        return Err("Carnet's Consents have category LOINC 59284-0".into());
    }
    if consent.pointer("/patient/reference").is_none() {
        return Err("a Consent names its patient (Consent.patient)".into());
    }
    let Some(provision) = consent.get("provision") else {
        return Err("a Consent states its rule in Consent.provision".into());
    };
    if provision.get("provision").is_some() {
        return Err("nested provisions are not supported: one rule per Consent".into());
    }
    let status = consent.get("status").and_then(Value::as_str).unwrap_or("");
    let kind = provision.get("type").and_then(Value::as_str);
    let period = period(provision.get("period"))?;
    let purposes: Vec<&str> = provision
        .get("purpose")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(ACT_REASON))
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .collect();
    let masque_ps = provision
        .get("securityLabel")
        .and_then(Value::as_array)
        .is_some_and(|ls| {
            ls.iter().any(|l| {
                l.get("system")
                    .and_then(Value::as_str)
                    .is_some_and(super::is_tre_a07)
                    && l.get("code").and_then(Value::as_str) == Some(MASQUE_PS)
            })
        });
    let actors = actors(provision);
    let listed_actors = provision
        .get("actor")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if listed_actors != actors.len() {
        return Err(
            "every provision.actor has a coded role and a reference (Practitioner/… or \
             RelatedPerson/…)"
                .into(),
        );
    }
    let mut rules = Vec::new();
    let practitioner = |role: &(String, String, String)| -> Result<String, String> {
        if role.0 != PARTICIPATION_TYPE || role.1 != "PRCP" {
            return Err("a professional is named with role v3-ParticipationType#PRCP".into());
        }
        crate::consent::practitioner_id(&role.2)
            .map(str::to_string)
            .ok_or_else(|| format!("{} is not a Practitioner reference", role.2))
    };
    // Who wrote the rule (Carnet sets `performer` on every write): the patient, a legal
    // representative, or the professional declaring their care-team access.
    // Compared by id: `Consent.patient` may be an absolute URL.
    let patient_id = |r: &str| r.rsplit_once("Patient/").map(|(_, id)| id.to_string());
    let patient_ref = consent
        .pointer("/patient/reference")
        .and_then(Value::as_str)
        .and_then(patient_id);
    let performers: Vec<&str> = consent
        .get("performer")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("reference").and_then(Value::as_str))
        .collect();
    let grantor = |practitioner: &str| -> Grantor {
        if performers.is_empty()
            || performers
                .iter()
                .any(|p| patient_id(p).is_some() && patient_id(p) == patient_ref)
        {
            Grantor::Holder
        } else if performers
            .iter()
            .any(|p| crate::consent::practitioner_id(p) == Some(practitioner))
        {
            Grantor::CareTeam
        } else {
            Grantor::Representative
        }
    };
    match kind {
        Some("deny") if actors.is_empty() && purposes.is_empty() && !masque_ps => {
            rules.push(Rule::MaskEverything);
        }
        Some("permit") if actors.is_empty() => {
            if purposes != ["BTG"] || masque_ps {
                return Err(
                    "a permit without actor allows emergency access: its one purpose is \
                     v3-ActReason#BTG"
                        .into(),
                );
            }
            rules.push(Rule::AllowEmergency);
        }
        Some("deny") if actors.is_empty() => {
            if purposes.is_empty() || purposes.iter().any(|p| *p != "BTG" && *p != "ETREAT") {
                return Err(
                    "a deny without actor objects to emergency access: its purpose is \
                     v3-ActReason#BTG and/or #ETREAT"
                        .into(),
                );
            }
            if purposes.contains(&"BTG") {
                rules.push(Rule::ObjectEmergency);
            }
            if purposes.contains(&"ETREAT") {
                rules.push(Rule::ObjectRegulation);
            }
        }
        Some("deny") => {
            if !purposes.is_empty() || masque_ps {
                return Err("a block names professionals only (no purpose, no label)".into());
            }
            for a in &actors {
                rules.push(Rule::Block {
                    practitioner: practitioner(a)?,
                });
            }
        }
        Some("permit") if !actors.is_empty() => {
            if !purposes.is_empty() {
                return Err("a permit names actors, not purposes".into());
            }
            for a in &actors {
                if a.0 == ROLE_CODE && a.1 == "GUARD" {
                    let Some(rp) = a.2.strip_prefix("RelatedPerson/") else {
                        return Err("a legal representative is a RelatedPerson".into());
                    };
                    rules.push(Rule::Guardian {
                        related_person: rp.to_string(),
                    });
                } else if masque_ps {
                    rules.push(Rule::EquivalentRights {
                        practitioner: practitioner(a)?,
                    });
                } else {
                    let practitioner = practitioner(a)?;
                    let by = grantor(&practitioner);
                    rules.push(Rule::Authorise { practitioner, by });
                }
            }
        }
        _ => {
            return Err(
                "provision.type is permit (with actors) or deny (with actors, or with \
                 purpose BTG/ETREAT)"
                    .into(),
            )
        }
    }
    if status != "active" && !strict {
        return Ok(Vec::new());
    }
    Ok(rules
        .into_iter()
        .map(|rule| Provision {
            rule,
            period,
            consent: id.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consent(provision: Value) -> Value {
        json!({"resourceType": "Consent", "id": "c", "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p"}, "provision": provision})
    }

    #[test]
    fn each_shape_reads_as_its_rule() {
        let prcp = json!({"coding": [{"system": PARTICIPATION_TYPE, "code": "PRCP"}]});
        let block = consent(json!({"type": "deny", "actor": [{"role": prcp,
            "reference": {"reference": "Practitioner/x"}}]}));
        assert_eq!(
            provisions(&block)[0].rule,
            Rule::Block {
                practitioner: "x".into()
            }
        );
        let object = consent(json!({"type": "deny", "purpose": [
            {"system": ACT_REASON, "code": "BTG"}, {"system": ACT_REASON, "code": "ETREAT"}]}));
        assert_eq!(provisions(&object).len(), 2);
        let eq = consent(json!({"type": "permit", "actor": [{"role": prcp,
            "reference": {"reference": "Practitioner/y"}}],
            "securityLabel": [{"system": TRE_A07, "code": "MASQUE_PS"}],
            "period": {"end": "2026-12-31"}}));
        let p = &provisions(&eq)[0];
        assert_eq!(
            p.rule,
            Rule::EquivalentRights {
                practitioner: "y".into()
            }
        );
        assert!(p
            .period
            .contains(instant::parse_us("2026-12-31T23:00:00Z").unwrap()));
        let mut inactive = block.clone();
        inactive["status"] = json!("inactive");
        assert!(provisions(&inactive).is_empty());
        assert!(check(&inactive).is_ok());
        let nested = consent(json!({"type": "deny", "provision": [{"type": "permit"}]}));
        assert!(check(&nested).is_err());
        let no_role = consent(json!({"type": "deny", "actor": [
            {"reference": {"reference": "Practitioner/x"}}]}));
        assert!(check(&no_role).is_err());
    }
}
