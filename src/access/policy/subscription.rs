//! subscription: a Subscription is its owner's (its headers may hold the subscriber's
//! secret) and backend services'; to anyone else it does not exist. It is in no record.

use serde_json::Value;

use super::base::{Policy, Seen, Write};
use crate::error::FhirError;

pub(super) struct Subscriptions;

/// `meta.tag` system naming a Subscription's owner.
pub const SUBSCRIPTION_OWNER: &str = "urn:carnet:subscription-owner";

/// The owner a Subscription's `meta.tag` names (`Patient/X`, `Practitioner/X`,
/// `client/C`): Carnet sets it when the Subscription is written.
pub fn subscription_owner(resource: &Value) -> Option<&str> {
    resource
        .pointer("/meta/tag")?
        .as_array()?
        .iter()
        .find(|t| t.get("system").and_then(Value::as_str) == Some(SUBSCRIPTION_OWNER))?
        .get("code")?
        .as_str()
}

/// Whether `subject` owns the Subscription `value` (as tagged when it was written).
fn owned_by(value: &Value, subject: &str) -> bool {
    subscription_owner(value) == Some(subject)
}

impl Policy for Subscriptions {
    fn within_patient(&self, _: &str, _: &Value, _: &str, _: &str) -> bool {
        // Its owner's, checked by `read_of_its_own`; in no record.
        true
    }

    fn writable_by_patient(&self, _: &str, _: &Value, _: &str, _: &str) -> bool {
        true
    }

    fn read_of_its_own(&self, seen: &Seen) -> Option<Option<&'static str>> {
        let mine = super::base::unrestricted_system(seen.ctx)
            || seen
                .value
                .is_some_and(|v| owned_by(v, seen.ctx.subject().as_str()));
        Some((!mine).then_some("another's subscription"))
    }

    fn write_first(&self, w: &Write) -> Option<Result<(), FhirError>> {
        // A filing service finds Patients by identifier, one at a time: it is not told of
        // every identity written.
        let on_patients = w
            .new
            .and_then(|n| n.get("criteria"))
            .and_then(Value::as_str)
            .is_some_and(|c| c.trim_start_matches('/').starts_with("Patient"));
        if on_patients
            && matches!(w.ctx.actor(), crate::auth::Actor::System(_))
            && w.ctx.system_role() == crate::auth::SystemRole::Filing
        {
            return Some(Err(super::base::forbid(
                "a backend service subscribes to what it files, not to Patients",
            )));
        }
        if let Some(cur) = w.current_value {
            if !super::base::unrestricted_system(w.ctx) && !owned_by(cur, w.ctx.subject().as_str())
            {
                let id = w.current.map(|c| c.id.as_str()).unwrap_or_default();
                return Some(Err(FhirError::hidden("Subscription", id)));
            }
        }
        Some(Ok(()))
    }
}
