//! access: the one access-decision point. Every resource the repository returns passes
//! [`AccessPoint::check_read`] (read, vread, every entry of a history or search Bundle,
//! every GET inside a batch/transaction), and every write passes
//! [`AccessPoint::check_write`] before it reaches storage.
//!
//! Responses can only be built from [`Visible`] values, and only this module can make
//! one: a resource that did not pass the decision cannot be serialised.
//!
//! Policy today: allow everything (the core issue). The consent engine replaces the
//! bodies of the two `check_*` functions; no caller changes.

use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::repository::StoredResource;

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
pub struct AccessPoint {}

impl AccessPoint {
    pub fn new() -> AccessPoint {
        AccessPoint {}
    }

    /// May `ctx` see `resource` (one version of it) through `interaction`?
    pub fn check_read(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource: StoredResource,
    ) -> Result<Visible<StoredResource>, Refusal> {
        let _ = (ctx, interaction);
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
        let _ = ctx;
        false
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
        let _ = (ctx, interaction, resource_type, new, current);
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
