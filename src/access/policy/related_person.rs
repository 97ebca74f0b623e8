//! related_person: a patient's legal representatives (parents of a minor…), recorded by
//! the patient or the registry, never by professionals.

use super::base::{forbid, Policy, Write};
use crate::error::FhirError;

pub(super) struct RelatedPersons;

impl Policy for RelatedPersons {
    fn professional_write(&self, _w: &Write, _professional: &str) -> Result<(), FhirError> {
        Err(forbid(
            "a patient's legal representatives are recorded by the patient or the registry, not \
             by professionals",
        ))
    }
}
