//! access: the one access-decision point. Every resource the repository returns passes
//! [`AccessPoint::check_read`] (read, vread, every entry of a history or search Bundle,
//! every GET inside a batch/transaction), and every write passes
//! [`AccessPoint::check_write`] before it reaches storage.
//!
//! Responses can only be built from [`Visible`] values, and only this module can make
//! one: a resource that did not pass the decision cannot be serialised.
//!
//! Policy today (identity issue): the token's SMART scopes decide which types and
//! interactions are allowed, and a request bound to a patient (a patient, or an app with
//! `patient/` scopes) sees only that patient's compartment — plus directory resources
//! (Practitioner, PractitionerRole, Organization). The consent engine (issue 5) adds the
//! patient's rules here; no caller changes.

use crate::auth::{Permission, RequestContext};
use crate::error::FhirError;
use crate::fhir::compartment;
use crate::repository::StoredResource;

/// Types that describe the care directory, not a patient: readable in a patient's context.
const DIRECTORY_TYPES: &[&str] = &["Practitioner", "PractitionerRole", "Organization"];

/// What the requester is doing with the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    Vread,
    History,
    Search,
    Create,
    Update,
    Delete,
}

/// A resource the access-decision point let through for this request.
#[derive(Debug, Clone)]
pub struct Visible<T>(T);

impl<T> Visible<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::Deref for Visible<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Why a read was refused. `Hidden` must look exactly like a resource that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Forbidden(String),
    Hidden,
}

#[derive(Debug, Clone, Default)]
pub struct AccessPoint {
    /// This server's base URL (absolute references under it are local).
    base_url: String,
}

impl AccessPoint {
    pub fn new(base_url: &str) -> AccessPoint {
        AccessPoint {
            base_url: base_url.to_string(),
        }
    }

    /// Whether `resource` lies in what a request bound to `patient` may touch.
    fn within_patient(&self, rtype: &str, resource: &serde_json::Value, patient: &str) -> bool {
        if DIRECTORY_TYPES.contains(&rtype) {
            return true;
        }
        if rtype == "Binary" {
            // A Binary belongs to whatever its securityContext names.
            return resource
                .pointer("/securityContext/reference")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|r| r == format!("Patient/{patient}"));
        }
        compartment::in_patient_compartment(rtype, resource, patient, &self.base_url)
    }

    /// May `ctx` search `rtype`? When the request is bound to a patient, the patient whose
    /// compartment the search must be limited to (the caller adds it to the query, so that
    /// totals and paging only ever count what the patient may see).
    pub fn check_search(
        &self,
        ctx: &RequestContext,
        rtype: &str,
    ) -> Result<Option<String>, FhirError> {
        if !ctx.scopes().allows(rtype, Permission::Search) {
            return Err(FhirError::Forbidden(format!(
                "the access token's scopes do not allow searching {rtype}"
            )));
        }
        match ctx.patient_bound() {
            None => Ok(None),
            Some(_) if DIRECTORY_TYPES.contains(&rtype) => Ok(None),
            Some(p) if rtype == "Patient" || !compartment::patient_params(rtype).is_empty() => {
                Ok(Some(p.to_string()))
            }
            Some(_) => Err(FhirError::Forbidden(format!(
                "{rtype} cannot be searched in a patient's context"
            ))),
        }
    }

    /// May `ctx` see `resource` (one version of it) through `interaction`?
    pub fn check_read(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource: StoredResource,
    ) -> Result<Visible<StoredResource>, Refusal> {
        let rtype = resource.resource_type.as_str();
        let scopes = ctx.scopes();
        let allowed = scopes.allows(rtype, Permission::Read)
            || (interaction == Interaction::Search && scopes.allows(rtype, Permission::Search));
        if !allowed {
            // In a Bundle the entry is dropped; a direct read says why.
            return Err(match interaction {
                Interaction::Read | Interaction::Vread => Refusal::Forbidden(format!(
                    "the access token's scopes do not allow reading {rtype}"
                )),
                _ => Refusal::Hidden,
            });
        }
        if let Some(patient) = ctx.patient_bound() {
            // Another patient's data must look exactly like data that does not exist. A
            // tombstone carries no content to place it, so it is hidden too.
            let within = !resource.deleted
                && serde_json::from_str::<serde_json::Value>(&resource.content)
                    .is_ok_and(|v| self.within_patient(rtype, &v, patient));
            if !within {
                return Err(Refusal::Hidden);
            }
        }
        Ok(Visible(resource))
    }

    /// Keeps the resources of a Bundle that `ctx` may see; the others are dropped silently.
    pub fn filter(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resources: Vec<StoredResource>,
    ) -> Vec<Visible<StoredResource>> {
        resources
            .into_iter()
            .filter_map(|r| self.check_read(ctx, interaction, r).ok())
            .collect()
    }

    /// Whether searches must check every candidate before counting and paging (true once
    /// a policy can hide resources from `ctx`; the allow-all policy hides nothing).
    pub fn checks_each_resource(&self, ctx: &RequestContext) -> bool {
        ctx.patient_bound().is_some()
    }

    /// May `ctx` write `new` (None for a delete) over `current` (None when it does not exist)?
    pub fn check_write(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource_type: &str,
        new: Option<&serde_json::Value>,
        current: Option<&StoredResource>,
    ) -> Result<(), FhirError> {
        let permission = match interaction {
            Interaction::Create => Permission::Create,
            Interaction::Delete => Permission::Delete,
            _ => Permission::Update,
        };
        if !ctx.scopes().allows(resource_type, permission) {
            return Err(FhirError::Forbidden(format!(
                "the access token's scopes do not allow {} {resource_type}",
                match permission {
                    Permission::Create => "creating",
                    Permission::Delete => "deleting",
                    _ => "updating",
                }
            )));
        }
        if let Some(patient) = ctx.patient_bound() {
            let outside = || {
                FhirError::Forbidden(format!(
                    "this request may only write the record of Patient/{patient}"
                ))
            };
            if DIRECTORY_TYPES.contains(&resource_type) {
                // The directory is not the patient's to edit.
                return Err(outside());
            }
            if let Some(new) = new {
                if !self.within_patient(resource_type, new, patient) {
                    return Err(outside());
                }
            }
            if let Some(current) = current.filter(|c| !c.deleted) {
                let cur: serde_json::Value =
                    serde_json::from_str(&current.content).map_err(|_| outside())?;
                if !self.within_patient(resource_type, &cur, patient) {
                    return Err(outside());
                }
            }
        }
        Ok(())
    }
}

impl Refusal {
    /// The error a refused single read answers with.
    pub fn into_error(self, resource_type: &str, id: &str) -> FhirError {
        match self {
            Refusal::Forbidden(why) => FhirError::Forbidden(why),
            Refusal::Hidden => FhirError::NotFound(format!("{resource_type}/{id} is not known")),
        }
    }
}
