//! access: the one access-decision point. Every resource the repository returns passes
//! [`AccessPoint::check_read`] (read, vread, every entry of a history or search Bundle,
//! every GET inside a batch/transaction), and every write passes
//! [`AccessPoint::check_write`] before it reaches storage.
//!
//! Responses can only be built from [`Visible`] values, and only this module can make
//! one: a resource that did not pass a read decision, or a write whose [`WriteReceipt`]
//! the write decision did not return, cannot be serialised.
//!
//! Policy, in order: the token's SMART scopes decide which types and interactions are
//! allowed; a request bound to a patient (a patient, or an app with `patient/` scopes) sees
//! only that patient's compartment — plus directory resources (Practitioner,
//! PractitionerRole, Organization); then the patient's own rules ([`crate::consent`]) decide
//! for patients, their legal representatives and professionals. Backend services (hospital
//! systems, the registry) are trusted infrastructure: scopes bound them, the patient's rules
//! do not (their accesses are traced all the same).
//!
//! `point` orchestrates; `policy/` holds what each resource type adds, one file a type.
//! What the rules need (a patient's Consents, a professional's professions…) is asked for
//! as a [`Need`] and loaded by the repository into [`Facts`]; every decision is written to
//! the facts' trail, from which the repository writes the AuditEvents.
//!
//! Must never: load data or touch storage, or serve anything itself.

pub mod facts;
mod point;
mod policy;
mod types;

pub use facts::{Decided, Facts, Loader, Need};
pub use point::AccessPoint;
pub use policy::{subscription_owner, SUBSCRIPTION_OWNER};
pub use types::{Interaction, Refusal, Visible, WriteReceipt};
