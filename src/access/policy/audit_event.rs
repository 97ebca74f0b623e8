//! audit_event: the access trail. An AuditEvent is about the patients its entities name
//! (not the patient who was the agent); it is append-only and written by Carnet and backend
//! services only. Professionals see their own traces, the médecin traitant the patient's;
//! a trace is as hidden as what it lists (its `meta.security` labels).

use serde_json::Value;

use super::base::{forbid, names_practitioner, Policy, Seen, Write};
use crate::consent::{self, Decision, PatientRules, Subject, Viewer};
use crate::error::FhirError;

pub(super) struct AuditEvents;

impl Policy for AuditEvents {
    fn patients_of(&self, _: &str, event: &Value, _: &str) -> Vec<String> {
        let mut out: Vec<String> = event
            .get("entity")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.pointer("/what/reference").and_then(Value::as_str))
            .filter_map(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn decide(
        &self,
        seen: &Seen,
        viewer: &Viewer,
        rules: &PatientRules,
        subject: &Subject,
    ) -> Decision {
        let now = seen.ctx.now_us();
        // Carnet's own accesses (the login linking finding the record of someone logging
        // in) are the holder's business only: they tell when the patient logs in.
        if by_carnet(seen.value) && !matches!(viewer, Viewer::Holder { .. }) {
            return Decision::Refused {
                why: "Carnet's own access".into(),
                hidden: true,
            };
        }
        let Viewer::Professional { id, .. } = viewer else {
            return consent::decide(viewer, rules, subject, consent::Matrix::builtin(), now);
        };
        // Their own accesses, as far as they were allowed: a refusal's record-side trace
        // lists what matched and whose record it is, which the refused may not learn (they
        // see the trace of what they asked instead, below).
        let refused = seen
            .value
            .and_then(|v| v.get("outcome"))
            .and_then(Value::as_str)
            .is_some_and(|o| o != "0");
        let named = names_practitioner(seen.value, "agent", "/who/reference", id);
        if named && refused {
            // Not even as the médecin traitant of this or another record it is in.
            return Decision::Refused {
                why: "a refusal's record-side trace".into(),
                hidden: true,
            };
        }
        let own = named;
        let privileged = rules.is_medecin_traitant(id) || rules.has_equivalent_rights(id, now);
        let masked = (subject.has(consent::MASQUE_PS) || subject.has(consent::MASQUE_PSOCIAL))
            && !privileged;
        if (own || (rules.is_medecin_traitant(id) && !rules.is_blocked(id, now))) && !masked {
            Decision::Visible
        } else {
            Decision::Refused {
                why: "another professional's trace".into(),
                hidden: true,
            }
        }
    }

    /// A trace that concerns no record (the one a refused request leaves its requester:
    /// what was asked, nothing of what matched) is its agent's, and backend services'.
    fn read_of_its_own(&self, seen: &Seen) -> Option<Option<&'static str>> {
        let value = seen.value?;
        // Only Carnet's own requester traces (their one entity a query, role 24): any other
        // trace without a record stays closed as before.
        let query_only = value
            .get("entity")
            .and_then(Value::as_array)
            .is_some_and(|e| {
                e.len() == 1 && e[0].pointer("/role/code").and_then(Value::as_str) == Some("24")
            });
        if !query_only || !self.patients_of("AuditEvent", value, "").is_empty() {
            return None;
        }
        let me = seen.ctx.subject();
        let mine = super::base::unrestricted_system(seen.ctx)
            || value
                .get("agent")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|a| a.get("requestor").and_then(Value::as_bool) == Some(true))
                .filter_map(|a| a.pointer("/who/reference").and_then(Value::as_str))
                .any(|r| r == me);
        Some((!mine).then_some("another's trace"))
    }

    fn write_first(&self, w: &Write) -> Option<Result<(), FhirError>> {
        if w.interaction != super::base::Interaction::Create {
            return Some(Err(FhirError::MethodNotAllowed(
                "AuditEvents are append-only: they cannot be changed or deleted".into(),
            )));
        }
        if !super::base::unrestricted_system(w.ctx) {
            // A posted AuditEvent joins the patient's access history: an app or a service
            // could make it say that someone consulted the record.
            return Some(Err(forbid("AuditEvents are written by Carnet only")));
        }
        None
    }
}

/// Whether an AuditEvent traces one of Carnet's own services (its agent is the client
/// `carnet`, `crate::auth::SERVICE_CLIENT`).
fn by_carnet(event: Option<&Value>) -> bool {
    event
        .and_then(|e| e.get("agent"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.pointer("/who/identifier"))
        .any(|i| {
            i.get("system").and_then(Value::as_str) == Some("urn:carnet:client")
                && i.get("value").and_then(Value::as_str) == Some(crate::auth::SERVICE_CLIENT)
        })
}
