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

use crate::auth::{Actor, Permission, RequestContext};
use crate::error::FhirError;
use crate::fhir::compartment;
use crate::fhir::search_query::{Clause, Kind, SearchRequest};
use crate::repository::StoredResource;
use serde_json::Value;

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
    /// A PUT to an id that does not exist (yet): update-as-create.
    UpdateCreate,
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
    /// The identifiers (resource type, system) that link an upstream login to a record
    /// (the INS of a Patient, the national id of a Practitioner): only a backend service
    /// may set or change them, or anyone could make a record answer to their own login.
    login_identifiers: Vec<(String, String)>,
}

impl AccessPoint {
    pub fn new(base_url: &str) -> AccessPoint {
        AccessPoint {
            base_url: base_url.to_string(),
            login_identifiers: Vec::new(),
        }
    }

    /// Protects these (resource type, identifier system) pairs: see `login_identifiers`.
    pub fn with_login_identifiers(mut self, pairs: Vec<(String, String)>) -> AccessPoint {
        self.login_identifiers = pairs;
        self
    }

    /// Refuses a change of a login identifier by anyone but a backend service.
    fn check_login_identifiers(
        &self,
        ctx: &RequestContext,
        resource_type: &str,
        new: Option<&Value>,
        current: Option<&StoredResource>,
    ) -> Result<(), FhirError> {
        if matches!(ctx.actor(), crate::auth::Actor::System(_)) {
            return Ok(());
        }
        let current: Option<Value> = current
            .filter(|c| !c.deleted)
            .and_then(|c| serde_json::from_str(&c.content).ok());
        for (rtype, system) in &self.login_identifiers {
            if rtype != resource_type {
                continue;
            }
            let values = |v: Option<&Value>| -> Vec<String> {
                let mut out: Vec<String> = v
                    .and_then(|v| v.get("identifier"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|i| i.get("system").and_then(Value::as_str) == Some(system))
                    .filter_map(|i| i.get("value").and_then(Value::as_str).map(str::to_string))
                    .collect();
                out.sort();
                out
            };
            if values(new) != values(current.as_ref()) {
                return Err(FhirError::Forbidden(format!(
                    "identifiers of system {system} link a person's login to this record: \
                     only a backend service (the identity registry) may set or change them"
                )));
            }
        }
        Ok(())
    }

    /// Whether the token's scopes grant `permission` on `rtype` and, if so, the patient the
    /// access is bounded to: a patient always to themself; an app to its launch patient
    /// when only `patient/` scopes grant it (a `user/` or `system/` grant is not bounded).
    fn grant(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        permission: Permission,
    ) -> Option<Option<String>> {
        let scopes = ctx.scopes();
        if !scopes.allows(rtype, permission) {
            return None;
        }
        if let Actor::Patient(own) = ctx.actor() {
            return Some(Some(own.clone()));
        }
        if scopes.allows_unbounded(rtype, permission) {
            return Some(None);
        }
        // Only patient/ scopes grant it: bounded to the launch patient (a token with
        // patient/ scopes and no launch patient is refused when it is read, see auth).
        ctx.launch_patient().map(|p| Some(p.to_string()))
    }

    /// May `ctx` do `permission` on `rtype` at all? Checked before anything is looked up,
    /// so that a refusal never depends on whether a resource exists.
    pub fn check_type(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        permission: Permission,
    ) -> Result<(), FhirError> {
        if self.grant(ctx, rtype, permission).is_some() {
            return Ok(());
        }
        Err(FhirError::InsufficientScope(format!(
            "the access token's scopes do not allow {} {rtype}",
            match permission {
                Permission::Create => "creating",
                Permission::Read => "reading",
                Permission::Update => "updating",
                Permission::Delete => "deleting",
                Permission::Search => "searching",
            }
        )))
    }

    /// Whether `resource` lies in what a request bounded to `patient` may read: the
    /// patient, their compartment, or the directory.
    fn readable_by_patient(&self, rtype: &str, resource: &Value, patient: &str) -> bool {
        if DIRECTORY_TYPES.contains(&rtype) {
            return true;
        }
        if rtype == "Binary" {
            // A Binary belongs to whatever its securityContext names.
            return resource
                .pointer("/securityContext/reference")
                .and_then(Value::as_str)
                .is_some_and(|r| r == format!("Patient/{patient}"));
        }
        compartment::in_patient_compartment(rtype, resource, patient, &self.base_url)
    }

    /// Whether a request bounded to `patient` may write `resource`: it must belong to the
    /// patient's record and name no other patient in any compartment reference (a
    /// document about someone else, "authored" by the patient, is not theirs to file).
    fn writable_by_patient(&self, rtype: &str, resource: &Value, patient: &str) -> bool {
        if DIRECTORY_TYPES.contains(&rtype) {
            return false;
        }
        if rtype == "Patient" || rtype == "Binary" {
            return self.readable_by_patient(rtype, resource, patient);
        }
        let patients = compartment::patients_referenced(rtype, resource, &self.base_url);
        !patients.is_empty() && patients.iter().all(|p| p == patient)
    }

    /// May `ctx` search as `req` asks? When the request is bounded to a patient, the patient
    /// whose compartment the search must be limited to (the caller adds it to the query, so
    /// that totals and paging only ever count what the patient may see).
    pub fn check_search(
        &self,
        ctx: &RequestContext,
        req: &SearchRequest,
    ) -> Result<Option<String>, FhirError> {
        self.check_type(ctx, &req.resource_type, Permission::Search)?;
        self.search_restriction(ctx, req)
    }

    /// The patient a search (or a conditional create's criteria) must be limited to, if
    /// any; refuses what would reach beyond what `ctx` may see. A chained parameter or
    /// `_has` tests resources the query does not return (`Practitioner?_has:
    /// DocumentReference:author:subject=Patient/other` would tell who wrote another
    /// patient's documents): each type they touch must be searchable by `ctx`, and in a
    /// patient's context chains may only lead to the directory and `_has` is refused.
    pub fn search_restriction(
        &self,
        ctx: &RequestContext,
        req: &SearchRequest,
    ) -> Result<Option<String>, FhirError> {
        let rtype = req.resource_type.as_str();
        let mut touched = Vec::new();
        for c in &req.clauses {
            types_touched(c, &mut touched);
        }
        for t in &touched {
            self.check_type(ctx, t, Permission::Search)?;
        }
        let bound = match ctx.actor() {
            Actor::Patient(own) => Some(own.clone()),
            // Conditional creates need no search scope, but stay bounded like a search.
            _ => self
                .grant(ctx, rtype, Permission::Search)
                .or_else(|| self.grant(ctx, rtype, Permission::Create))
                .flatten(),
        };
        let Some(patient) = bound else {
            return Ok(None);
        };
        if req.clauses.iter().any(reaches_beyond_directory) {
            return Err(FhirError::Forbidden(
                "in a patient's context, chained parameters may only lead to Practitioner, \
                 PractitionerRole or Organization, and _has is not available"
                    .into(),
            ));
        }
        if DIRECTORY_TYPES.contains(&rtype) {
            Ok(None)
        } else if rtype == "Patient" || !compartment::patient_params(rtype).is_empty() {
            Ok(Some(patient))
        } else {
            Err(FhirError::Forbidden(format!(
                "{rtype} cannot be searched in a patient's context"
            )))
        }
    }

    /// Whether history at type or system level may be listed: not in a patient's context
    /// (its paging would count other patients' versions); instance history is checked
    /// entry by entry.
    pub fn check_history_listing(
        &self,
        ctx: &RequestContext,
        rtype: Option<&str>,
    ) -> Result<(), FhirError> {
        if let Some(t) = rtype {
            self.check_type(ctx, t, Permission::Read)?;
        }
        if self.may_be_bounded(ctx) {
            return Err(FhirError::Forbidden(
                "history of a type or of the whole server is not available in a patient's context"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether some access of `ctx` may be bounded to a patient.
    fn may_be_bounded(&self, ctx: &RequestContext) -> bool {
        matches!(ctx.actor(), Actor::Patient(_)) || ctx.scopes().has_patient_scopes()
    }

    /// May `ctx` see `resource` (one version of it) through `interaction`?
    pub fn check_read(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource: StoredResource,
    ) -> Result<Visible<StoredResource>, Refusal> {
        let rtype = resource.resource_type.as_str();
        let grant = self.grant(ctx, rtype, Permission::Read).or_else(|| {
            (interaction == Interaction::Search)
                .then(|| self.grant(ctx, rtype, Permission::Search))
                .flatten()
        });
        let Some(bound) = grant else {
            // In a Bundle the entry is dropped; a direct read says why (the type was
            // checked before the lookup, so this tells nothing about existence).
            return Err(match interaction {
                Interaction::Read | Interaction::Vread => Refusal::Forbidden(format!(
                    "the access token's scopes do not allow reading {rtype}"
                )),
                _ => Refusal::Hidden,
            });
        };
        if let Some(patient) = bound {
            // Another patient's data must look exactly like data that does not exist. A
            // tombstone carries no content to place it, so it is hidden too.
            let within = !resource.deleted
                && serde_json::from_str::<Value>(&resource.content)
                    .is_ok_and(|v| self.readable_by_patient(rtype, &v, &patient));
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

    /// Whether searches must check every candidate before counting and paging (true when
    /// a policy can hide resources from `ctx`).
    pub fn checks_each_resource(&self, ctx: &RequestContext) -> bool {
        self.may_be_bounded(ctx)
    }

    /// May `ctx` write `new` (None for a delete) over `current` (None when it does not
    /// exist; with its content)? A current resource `ctx` may not see answers 404 exactly
    /// like an absent one, and update-as-create is not offered in a patient's context (a
    /// chosen id could be another patient's deleted resource).
    pub fn check_write(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource_type: &str,
        new: Option<&Value>,
        current: Option<&StoredResource>,
    ) -> Result<(), FhirError> {
        let permission = match interaction {
            Interaction::Create => Permission::Create,
            Interaction::Delete => Permission::Delete,
            _ => Permission::Update,
        };
        self.check_type(ctx, resource_type, permission)?;
        let Some(Some(patient)) = self.grant(ctx, resource_type, permission) else {
            return self.check_login_identifiers(ctx, resource_type, new, current);
        };
        let hidden = |id: &str| FhirError::NotFound(format!("{resource_type}/{id} is not known"));
        if let Some(current) = current {
            let visible = !current.deleted
                && serde_json::from_str::<Value>(&current.content)
                    .is_ok_and(|v| self.readable_by_patient(resource_type, &v, &patient));
            if !visible {
                return Err(hidden(&current.id));
            }
        }
        if interaction == Interaction::UpdateCreate {
            let id = new
                .and_then(|n| n.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(hidden(id));
        }
        if let Some(current) = current {
            let cur: Value = serde_json::from_str(&current.content).unwrap_or(Value::Null);
            if !self.writable_by_patient(resource_type, &cur, &patient) {
                return Err(FhirError::Forbidden(format!(
                    "this request may only change the record of Patient/{patient}"
                )));
            }
        }
        if let Some(new) = new {
            if !self.writable_by_patient(resource_type, new, &patient) {
                return Err(FhirError::Forbidden(format!(
                    "this request may only write the record of Patient/{patient}, and may \
                     name no other patient"
                )));
            }
        }
        self.check_login_identifiers(ctx, resource_type, new, current)
    }

    /// What a request just wrote, returned to it: its write passed [`Self::check_write`].
    pub fn admit_written(&self, resource: StoredResource) -> Visible<StoredResource> {
        Visible(resource)
    }
}

/// The types a clause looks at besides the searched one (chains and `_has`).
fn types_touched(c: &Clause, out: &mut Vec<String>) {
    match &c.kind {
        Kind::Has { source_type, inner } => {
            out.push(source_type.clone());
            types_touched(inner, out);
        }
        Kind::Chain(targets) => {
            for (t, inner) in targets {
                out.push(t.clone());
                types_touched(inner, out);
            }
        }
        Kind::AnyOf(cs) => cs.iter().for_each(|c| types_touched(c, out)),
        _ => {}
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

/// Whether a clause looks at resources other than directory ones besides the searched one.
fn reaches_beyond_directory(c: &Clause) -> bool {
    match &c.kind {
        Kind::Has { .. } => true,
        Kind::Chain(targets) => targets.iter().any(|(t, inner)| {
            !DIRECTORY_TYPES.contains(&t.as_str()) || reaches_beyond_directory(inner)
        }),
        Kind::AnyOf(cs) => cs.iter().any(reaches_beyond_directory),
        _ => false,
    }
}
