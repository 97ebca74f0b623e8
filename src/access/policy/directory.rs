//! directory: Practitioner, PractitionerRole, Organization — the care directory, no
//! patient's data. Readable in any context (a patient's app finds their professionals);
//! maintained by the registry (backend services), never by patients or professionals.

use serde_json::Value;

use super::base::{forbid, Policy, Write};
use crate::error::FhirError;

pub(super) struct Directory;

impl Policy for Directory {
    fn is_directory(&self) -> bool {
        true
    }

    fn within_patient(&self, _: &str, _: &Value, _: &str, _: &str) -> bool {
        true
    }

    fn writable_by_patient(&self, _: &str, _: &Value, _: &str, _: &str) -> bool {
        false
    }

    fn patients_of(&self, _: &str, _: &Value, _: &str) -> Vec<String> {
        Vec::new()
    }

    fn professional_write(&self, _w: &Write, _professional: &str) -> Result<(), FhirError> {
        Err(forbid(
            "the directory (professions, roles, organisations) is maintained by the registry, \
             not by professionals",
        ))
    }
}
