//! document: DocumentReference, the dossier's documents. What a professional filed is
//! changed or deleted by its author only; the patient may change only its labels (mask it,
//! unmask it in Carnet itself). Deleting is logical (the repository marks it
//! entered-in-error, AC9).

use serde_json::Value;

use super::base::{forbid, without, Facts, Need, Policy, Write};
use crate::consent::Subject;
use crate::error::FhirError;

pub(super) struct Documents;

/// Whether some author of the document is not on the patient's side (a professional, a
/// role, an organisation): then it is not the patient's to rewrite or delete.
fn by_professional(doc: Option<&Value>) -> bool {
    doc.is_some_and(|v| {
        v.get("author")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("reference").and_then(Value::as_str))
            .any(|r| !r.starts_with("Patient/") && !r.starts_with("RelatedPerson/"))
    })
}

impl Policy for Documents {
    fn patient_write(&self, w: &Write) -> Result<(), FhirError> {
        if !by_professional(w.current_value) {
            return Ok(());
        }
        match w.interaction {
            super::base::Interaction::Update
                if without(w.new, &["securityLabel", "meta"])
                    != without(w.current_value, &["securityLabel", "meta"]) =>
            {
                Err(forbid(
                    "a patient may change only the labels of a document a professional filed",
                ))
            }
            super::base::Interaction::Delete => {
                Err(forbid("only the author of a document may delete it"))
            }
            _ => Ok(()),
        }
    }

    fn professional_update(
        &self,
        w: &Write,
        professional: &str,
        _facts: &Facts,
    ) -> Result<Result<(), FhirError>, Need> {
        let current = w.current_value.cloned().unwrap_or(Value::Null);
        let authored = Subject::of(w.rtype, &current)
            .authors
            .iter()
            .any(|a| a == professional);
        Ok(if authored {
            Ok(())
        } else {
            Err(forbid(
                "only the author of a document may change or delete it",
            ))
        })
    }
}
