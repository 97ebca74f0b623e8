//! policy: the rules of each resource type, one file a type (or a family: the directory).
//! The access point (`super::point`) orchestrates — scopes, the patient bound, the facts a
//! decision needs, the trail — and asks the policy of the type what only the type knows:
//! where a resource belongs, who may see it beyond the patient's rules, who may write it.
//! A new type with rules of its own is one new file here and one line in [`of`].
//!
//! Each policy works on the resource parsed once (`Seen::value`, `Write::new`/`current`).
//! Must never: load anything (ask for a [`Need`](super::Need) instead) or touch storage.

mod audit_event;
mod base;
mod binary;
mod communication;
mod consent;
mod directory;
mod document;
mod patient;
mod record;
mod related_person;
mod subscription;

pub(super) use base::{unrestricted_system, Placed, Seen, Write};
pub(super) use consent::guardianship_only;
pub use subscription::{subscription_owner, SUBSCRIPTION_OWNER};

use base::Policy;

/// The policy of `rtype`.
pub(super) fn of(rtype: &str) -> &'static dyn Policy {
    match rtype {
        "AuditEvent" => &audit_event::AuditEvents,
        "Binary" => &binary::Binaries,
        "Communication" => &communication::Communications,
        "Consent" => &consent::Consents,
        "DocumentReference" => &document::Documents,
        "Patient" => &patient::Patients,
        "Practitioner" | "PractitionerRole" | "Organization" => &directory::Directory,
        "RelatedPerson" => &related_person::RelatedPersons,
        "Subscription" => &subscription::Subscriptions,
        _ => &record::Record,
    }
}
