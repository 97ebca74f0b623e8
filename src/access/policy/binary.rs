//! binary: a document's content. A Binary belongs to what its `securityContext` names: a
//! DocumentReference (then that document's record and labels decide, as for the document
//! itself) or a Patient (then the labels of the documents whose content it is decide too). Once filed, its content is not changed by professionals.

use serde_json::Value;

use super::base::{forbid, Placed, Policy, Write};
use crate::error::FhirError;

pub(super) struct Binaries;

fn security_context(value: &Value) -> Option<&str> {
    value
        .pointer("/securityContext/reference")
        .and_then(Value::as_str)
}

impl Policy for Binaries {
    fn within_patient(&self, _: &str, value: &Value, patient: &str, _: &str) -> bool {
        security_context(value).is_some_and(|r| r == format!("Patient/{patient}"))
    }

    fn writable_by_patient(&self, rtype: &str, value: &Value, patient: &str, base: &str) -> bool {
        self.within_patient(rtype, value, patient, base)
    }

    fn patients_of(&self, _: &str, value: &Value, _: &str) -> Vec<String> {
        security_context(value)
            .and_then(|r| r.rsplit_once("Patient/"))
            .map(|(_, id)| vec![id.to_string()])
            .unwrap_or_default()
    }

    fn placed(&self, value: &Value) -> Placed {
        match security_context(value).and_then(|r| r.rsplit_once("DocumentReference/")) {
            Some((_, doc)) => Placed::Document(doc.to_string()),
            None => Placed::Content(self.patients_of("Binary", value, "")),
        }
    }

    fn professional_write(&self, w: &Write, _professional: &str) -> Result<(), FhirError> {
        if w.current.is_some() {
            return Err(forbid(
                "a document's content is not changed or deleted once filed",
            ));
        }
        Ok(())
    }
}
