//! communication: messages, and Carnet's notices to the patient (`consent::is_notice`: a
//! professional's first access, an emergency access, a new document). A notice tells of
//! other professionals' accesses: among professionals only its recipient (the médecin
//! traitant told of an emergency) reads one; it is written by Carnet, and its recipient may
//! only mark it read (`received`) or, on the patient's side, delete it.

use super::base::{forbid, names_practitioner, without, Policy, Seen, Write};
use crate::auth::Actor;
use crate::consent::{self, Decision, PatientRules, Subject, Viewer};
use crate::error::FhirError;

pub(super) struct Communications;

impl Policy for Communications {
    fn decide(
        &self,
        seen: &Seen,
        viewer: &Viewer,
        rules: &PatientRules,
        subject: &Subject,
    ) -> Decision {
        match viewer {
            Viewer::Professional { id, .. } if seen.value.is_some_and(consent::is_notice) => {
                let addressed = names_practitioner(seen.value, "recipient", "/reference", id);
                if addressed && !rules.is_blocked(id, seen.ctx.now_us()) {
                    Decision::Visible
                } else {
                    Decision::Refused {
                        why: "a notice to the patient".into(),
                        hidden: true,
                    }
                }
            }
            _ => consent::decide(
                viewer,
                rules,
                subject,
                consent::Matrix::builtin(),
                seen.ctx.now_us(),
            ),
        }
    }

    fn write_first(&self, w: &Write) -> Option<Result<(), FhirError>> {
        let notice = w.new.is_some_and(consent::is_notice)
            || w.current_value.is_some_and(consent::is_notice);
        if !notice || super::base::unrestricted_system(w.ctx) {
            return None;
        }
        if matches!(w.ctx.actor(), Actor::System(_)) {
            // A service cannot write in Carnet's voice to the patient.
            return Some(Err(forbid("Carnet's notices are written by Carnet only")));
        }
        let patient_side = matches!(w.ctx.actor(), Actor::Patient(_));
        let allowed = match w.interaction {
            super::base::Interaction::Update => {
                without(w.new, &["received", "meta"])
                    == without(w.current_value, &["received", "meta"])
            }
            super::base::Interaction::Delete => patient_side,
            _ => false,
        };
        (!allowed).then(|| {
            Err(forbid(
                "Carnet's notices are written by Carnet: their recipient may only mark them \
                 read (Communication.received)",
            ))
        })
    }
}
