//! base: what every policy shares: the [`Policy`] trait (each method defaults to "an
//! ordinary resource of a patient's record"), the views of a read and of a write it decides
//! on, and small helpers.

use serde_json::Value;

pub(in crate::access) use super::super::facts::{Facts, Need};
pub(in crate::access) use super::super::types::Interaction;
use crate::auth::RequestContext;
use crate::consent::{Decision, PatientRules, Subject, Viewer};
use crate::error::FhirError;
use crate::fhir::compartment;
use crate::resource::StoredResource;

/// A resource being read, as the policy sees it.
pub(in crate::access) struct Seen<'a> {
    pub ctx: &'a RequestContext,
    pub resource: &'a StoredResource,
    /// Its JSON, parsed once (None for a deletion).
    pub value: Option<&'a Value>,
}

/// A write being decided, as the policy sees it.
pub(in crate::access) struct Write<'a> {
    pub ctx: &'a RequestContext,
    pub interaction: Interaction,
    pub rtype: &'a str,
    /// The resource as it would be written (None for a delete).
    pub new: Option<&'a Value>,
    /// The current version (None when there is none).
    pub current: Option<&'a StoredResource>,
    /// The current version's JSON (None when there is none, or it is a deletion).
    pub current_value: Option<&'a Value>,
}

/// Whose record the rules look at for a resource.
pub(in crate::access) enum Placed {
    /// The resource's own patients (`Policy::patients_of`).
    Itself,
    /// The document it belongs to (a Binary of a DocumentReference): that document's
    /// record and labels decide.
    Document(String),
    /// These patients, judged with the labels of the documents whose content it is (a
    /// Binary filed under the Patient: the strictest of its documents decide).
    Content(Vec<String>),
}

/// What only a resource type knows about access. Every method has the default of "an
/// ordinary resource of a patient's record".
pub(in crate::access) trait Policy: Sync {
    /// The care directory (professions, roles, organisations): no patient's data, readable
    /// in any context, no patient's rules.
    fn is_directory(&self) -> bool {
        false
    }

    /// Whether a request bounded to `patient` may read it: the patient's compartment.
    fn within_patient(&self, rtype: &str, value: &Value, patient: &str, base_url: &str) -> bool {
        compartment::in_patient_compartment(rtype, value, patient, base_url)
    }

    /// Whether a request bounded to `patient` may write it: it belongs to the patient's
    /// record and names no other patient in any compartment reference (a document about
    /// someone else, "authored" by the patient, is not theirs to file).
    fn writable_by_patient(
        &self,
        rtype: &str,
        value: &Value,
        patient: &str,
        base_url: &str,
    ) -> bool {
        let patients = compartment::patients_referenced(rtype, value, base_url);
        !patients.is_empty() && patients.iter().all(|p| p == patient)
    }

    /// The patients whose record it is in.
    fn patients_of(&self, rtype: &str, value: &Value, base_url: &str) -> Vec<String> {
        compartment::patients_referenced(rtype, value, base_url)
    }

    /// A read the type decides before anyone's rules: `Some(None)` it is seen,
    /// `Some(Some(why))` it is hidden (as if it did not exist), `None` the rules decide.
    fn read_of_its_own(&self, _seen: &Seen) -> Option<Option<&'static str>> {
        None
    }

    /// Whose record and labels the rules look at.
    fn placed(&self, _value: &Value) -> Placed {
        Placed::Itself
    }

    /// One patient's rules on a read by `viewer`.
    fn decide(
        &self,
        seen: &Seen,
        viewer: &Viewer,
        rules: &PatientRules,
        subject: &Subject,
    ) -> Decision {
        crate::consent::decide(
            viewer,
            rules,
            subject,
            crate::consent::Matrix::builtin(),
            seen.ctx.now_us(),
        )
    }

    /// The type's own rules on a write, before the writer's standing is looked at: `Some`
    /// is the answer, `None` goes on.
    fn write_first(&self, _w: &Write) -> Option<Result<(), FhirError>> {
        None
    }

    /// A patient's (or their representative's) write, after the checks every type shares.
    fn patient_write(&self, _w: &Write) -> Result<(), FhirError> {
        Ok(())
    }

    /// A professional's write, before the current version is looked at.
    fn professional_write(&self, _w: &Write, _professional: &str) -> Result<(), FhirError> {
        Ok(())
    }

    /// A professional's create (nothing current), once `professional_write` let it by.
    fn professional_create(
        &self,
        _w: &Write,
        _professional: &str,
        _facts: &Facts,
    ) -> Result<Result<(), FhirError>, Need> {
        Ok(Ok(()))
    }

    /// A professional's write over a current version they may see.
    fn professional_update(
        &self,
        _w: &Write,
        _professional: &str,
        _facts: &Facts,
    ) -> Result<Result<(), FhirError>, Need> {
        Ok(Ok(()))
    }
}

/// Whether `ctx` is an unrestricted backend service (Carnet's own, or a development token).
pub(in crate::access) fn unrestricted_system(ctx: &RequestContext) -> bool {
    matches!(ctx.actor(), crate::auth::Actor::System(_))
        && ctx.system_role() == crate::auth::SystemRole::Full
}

pub(in crate::access) fn forbid(why: &str) -> FhirError {
    FhirError::Forbidden(why.to_string())
}

/// Whether an element of the list `field` of `value` references `Practitioner/{id}` at
/// `pointer` (an AuditEvent's agents, a notice's recipients).
pub(in crate::access) fn names_practitioner(
    value: Option<&Value>,
    field: &str,
    pointer: &str,
    id: &str,
) -> bool {
    value
        .and_then(|v| v.get(field))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.pointer(pointer).and_then(Value::as_str))
        .any(|r| crate::consent::practitioner_id(r) == Some(id))
}

/// `v` without the members `keys` (what a write may change, compared away).
pub(in crate::access) fn without(v: Option<&Value>, keys: &[&str]) -> Value {
    let mut v = v.cloned().unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}
