//! point: the access-decision point's orchestration. A read: the token's scopes, then the
//! patient bound (a patient's context sees its compartment and the directory), then — for
//! everyone the patient's rules bind — where the resource belongs and each of its patients'
//! rules, asking the policy of the type (`super::policy`) what only the type knows. A
//! write: the scopes and the patient bound, the policy's own rules, then the writer's
//! standing (a representative's guardianship, what a third-party app may not lift, what a
//! professional may change). Every decision goes to the facts' trail.

use super::facts::{Decided, Facts, Loader, Need};
use super::policy::{self, Placed, Seen, Write};
use super::types::{Interaction, Refusal, Visible, WriteReceipt};
use crate::auth::{Actor, Permission, RequestContext, SystemRole};
use crate::consent::{self, Subject, Viewer};
use crate::error::FhirError;
use crate::fhir::compartment;
use crate::fhir::search_query::{Clause, Kind, SearchRequest};
use crate::resource::StoredResource;
use serde_json::Value;

/// Bounds of the facts storage loads for a decision.
mod storage_limits {
    /// Most documents read to judge a Binary filed under the Patient; with more, it is
    /// judged as hidden and masked (the loader reads one more to tell).
    pub const MAX_DOCUMENTS_OF_BINARY: usize = 100;
}

/// The role of a backend service whose reach is restricted (None: not a backend service,
/// or Carnet's own or a development one).
fn restricted_system(ctx: &RequestContext) -> Option<SystemRole> {
    match (ctx.actor(), ctx.system_role()) {
        (Actor::System(_), SystemRole::Full) => None,
        (Actor::System(_), role) => Some(role),
        _ => None,
    }
}

/// Types only the registry writes, besides the directory: identities, representatives and
/// their guardianship (the patient's own rules are theirs: see the Consent policy).
const REGISTRY_TYPES: &[&str] = &["Patient", "RelatedPerson", "Consent"];

/// Why a restricted backend service may not read `seen` (None: it may). The registry reads
/// identities, representatives and guardianship; a filing service the Patient it files for
/// (found by identifier) and what it filed itself — and never the rest of the record.
fn system_refusal(
    role: SystemRole,
    ctx: &RequestContext,
    seen: &Seen,
    patients: &[String],
    facts: &Facts,
) -> Result<Option<&'static str>, Need> {
    let rtype = seen.resource.resource_type.as_str();
    if DIRECTORY_TYPES.contains(&rtype) {
        return Ok(None);
    }
    match role {
        SystemRole::Full => Ok(None),
        SystemRole::Registry => {
            // Of the patient's rules, the guardianship only (what it may write, too).
            let own = REGISTRY_TYPES.contains(&rtype)
                && (rtype != "Consent"
                    || seen
                        .value
                        .is_some_and(|v| policy::guardianship_only(Some(v))));
            Ok((!own).then_some("the registry reads identities and accounts, not clinical data"))
        }
        SystemRole::Filing => {
            if rtype == "Patient" {
                return Ok(None);
            }
            if rtype == "AuditEvent" {
                let client = match ctx.actor() {
                    Actor::System(c) => c.as_str(),
                    _ => "",
                };
                let own = seen.value.is_some_and(|v| {
                    v.get("agent")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|a| a.get("requestor").and_then(Value::as_bool) == Some(true))
                        .filter_map(|a| a.pointer("/who/identifier"))
                        .any(|i| {
                            i.get("system").and_then(Value::as_str) == Some("urn:carnet:client")
                                && i.get("value").and_then(Value::as_str) == Some(client)
                        })
                });
                return Ok((!own).then_some("a backend service reads its own traces only"));
            }
            let key = (rtype.to_string(), seen.resource.id.clone());
            let by = facts
                .filed_by
                .get(&key)
                .ok_or_else(|| Need::FiledAt(key.0.clone(), key.1.clone()))?;
            if by.as_deref() != Some(ctx.subject().as_str()) {
                return Ok(Some(
                    "a backend service reads back what it filed itself only",
                ));
            }
            // "No client of any kind reads documents past the patient's rules": a record
            // masked entirely is the patient's (and representatives') alone.
            for p in patients {
                let rules = facts.rules.get(p).ok_or_else(|| Need::Rules(p.clone()))?;
                if rules.masks_everything(ctx.now_us()) {
                    return Ok(Some("the patient's rules"));
                }
            }
            Ok(None)
        }
    }
}

/// A backend service's write, by its role: the registry writes identities, representatives
/// and the directory; a filing service files everything else for a patient and changes
/// only what it filed itself (what it did not file answers as if absent).
fn system_write(
    ctx: &RequestContext,
    interaction: Interaction,
    rtype: &str,
    new: Option<&Value>,
    current: Option<&StoredResource>,
    facts: &Facts,
) -> Result<Result<(), FhirError>, Need> {
    let registry_type = REGISTRY_TYPES.contains(&rtype) || DIRECTORY_TYPES.contains(&rtype);
    match ctx.system_role() {
        SystemRole::Full => Ok(Ok(())),
        SystemRole::Registry if registry_type => Ok(Ok(())),
        SystemRole::Registry => Ok(Err(FhirError::Forbidden(
            "the registry manages identities, representatives and the directory, not clinical \
             data"
                .into(),
        ))),
        SystemRole::Filing if registry_type => Ok(Err(FhirError::Forbidden(format!(
            "a backend service files data for a patient: {rtype} is the identity registry's \
             to write"
        )))),
        SystemRole::Filing => {
            if interaction == Interaction::UpdateCreate {
                // A chosen id could be another's deleted resource, or one another service
                // will file: answered like another's live resource (as if absent).
                let id = new
                    .and_then(|n| n.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Ok(Err(FhirError::hidden(rtype, id)));
            }
            let Some(current) = current else {
                return Ok(Ok(()));
            };
            let key = (rtype.to_string(), current.id.clone());
            let by = facts
                .filed_by
                .get(&key)
                .ok_or_else(|| Need::FiledAt(key.0.clone(), key.1.clone()))?;
            if by.as_deref() == Some(ctx.subject().as_str()) {
                Ok(Ok(()))
            } else {
                Ok(Err(FhirError::hidden(rtype, &current.id)))
            }
        }
    }
}

/// Types that describe the care directory, not a patient: readable in a patient's context.
const DIRECTORY_TYPES: &[&str] = &["Practitioner", "PractitionerRole", "Organization"];

#[derive(Debug, Clone, Default)]
pub struct AccessPoint {
    /// This server's base URL (absolute references under it are local).
    base_url: String,
    /// The identifiers (resource type, system) that link an upstream login to a record
    /// (the INS of a Patient, the national id of a Practitioner): only a backend service
    /// may set or change them, or anyone could make a record answer to their own login.
    login_identifiers: Vec<(String, String)>,
    /// Benchmarks only: the rules are not asked (see `carnet serve --bench-allow-all`).
    allow_all: bool,
    /// Emergency access when the patient said nothing (`carnet serve --emergency-access`).
    emergency_by_default: bool,
}

impl AccessPoint {
    pub fn new(base_url: &str) -> AccessPoint {
        AccessPoint {
            base_url: base_url.to_string(),
            login_identifiers: Vec::new(),
            allow_all: false,
            emergency_by_default: false,
        }
    }

    /// Opens emergency access unless the patient objected (opt-out), rather than only if
    /// they allowed it (opt-in, the default).
    pub fn with_emergency_by_default(mut self, open: bool) -> AccessPoint {
        self.emergency_by_default = open;
        self
    }

    /// The deployment's default for emergency access (what a patient's rules start from).
    pub fn emergency_by_default(&self) -> bool {
        self.emergency_by_default
    }

    /// The allow-all decision point a benchmark compares the consent engine with: scopes
    /// still bound a request, every access is still traced, the patient's rules are not
    /// asked. Never in production (`carnet serve` accepts it with --dev only).
    pub fn allowing_all(mut self) -> AccessPoint {
        self.allow_all = true;
        self
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
        if matches!(ctx.actor(), Actor::System(_))
            && matches!(ctx.system_role(), SystemRole::Full | SystemRole::Registry)
        {
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
                     only the identity registry may set or change them"
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
            // Their own record, or the child's they act for.
            return Some(Some(ctx.launch_patient().unwrap_or(own).to_string()));
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
    /// patient, their compartment, or the directory (as the type's policy places it).
    fn readable_by_patient(&self, rtype: &str, resource: &Value, patient: &str) -> bool {
        policy::of(rtype).within_patient(rtype, resource, patient, &self.base_url)
    }

    /// Whether a request bounded to `patient` may write `resource`.
    fn writable_by_patient(&self, rtype: &str, resource: &Value, patient: &str) -> bool {
        policy::of(rtype).writable_by_patient(rtype, resource, patient, &self.base_url)
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
            Actor::Patient(own) => Some(ctx.launch_patient().unwrap_or(own).to_string()),
            // Conditional creates need no search scope, but stay bounded like a search.
            _ => self
                .grant(ctx, rtype, Permission::Search)
                .or_else(|| self.grant(ctx, rtype, Permission::Create))
                .flatten(),
        };
        // Chains and `_has` test resources the query does not return: for everyone the
        // patient's rules bind, `_has` is refused and chains may lead only to the directory
        // (and, for professionals, to Patient: the identity they may see unless blocked,
        // as in PDSm's `DocumentReference?patient.identifier=…`).
        // An exact identifier (system and value) or an id: never a listing.
        let exact = |c: &Clause| {
            !c.negate
                && !c.values.is_empty()
                && match (c.param.as_str(), &c.kind) {
                    ("identifier", Kind::Token) => c.values.iter().all(|v| {
                        matches!(v, crate::fhir::search_query::Value::Token {
                            system: Some(s), code: Some(code) } if !s.is_empty() && !code.is_empty())
                    }),
                    ("_id", _) => c
                        .values
                        .iter()
                        .all(|v| matches!(v, crate::fhir::search_query::Value::Id(_))),
                    _ => false,
                }
        };
        if restricted_system(ctx) == Some(SystemRole::Filing)
            && rtype == "Patient"
            && !req.clauses.iter().any(exact)
        {
            return Err(FhirError::Forbidden(
                "a backend service finds the Patient it files for by identifier (INS): \
                 Patient?identifier=system|value"
                    .into(),
            ));
        }
        if bound.is_none() && (self.consent_applies(ctx) || restricted_system(ctx).is_some()) {
            let allowed: &[&str] = &[
                "Practitioner",
                "PractitionerRole",
                "Organization",
                "Patient",
            ];
            if req.clauses.iter().any(|c| reaches_beyond(c, allowed)) {
                return Err(FhirError::Forbidden(
                    "_has is not available to professionals, and chained parameters may only \
                     lead to Patient, Practitioner, PractitionerRole or Organization"
                        .into(),
                ));
            }
        }
        // The trail answers for accesses, not for the records behind them: a chain or
        // `_has` on AuditEvent would test a field of a Patient (`patient.birthdate`) through
        // the traces its requester may see.
        if rtype == "AuditEvent"
            && !policy::unrestricted_system(ctx)
            && req.clauses.iter().any(|c| reaches_beyond(c, &[]))
        {
            return Err(FhirError::Forbidden(
                "chained parameters and _has are not available on AuditEvent".into(),
            ));
        }
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
        if restricted_system(ctx) == Some(SystemRole::Filing)
            && rtype.is_none_or(|t| t == "Patient")
        {
            return Err(FhirError::Forbidden(
                "a backend service finds the Patient it files for by identifier: the history \
                 of all Patients (or of the whole server) is not available to it"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether some access of `ctx` may be bounded to a patient.
    fn may_be_bounded(&self, ctx: &RequestContext) -> bool {
        matches!(ctx.actor(), Actor::Patient(_)) || ctx.scopes().has_patient_scopes()
    }

    /// May `ctx` see `resource` (one version of it) through `interaction`? The decision is
    /// written to the facts' trail. Call [`Self::pending`] first until it asks for nothing.
    pub fn check_read(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource: StoredResource,
        facts: &mut Facts,
        load: &mut Loader,
    ) -> Result<Result<Visible<StoredResource>, Refusal>, FhirError> {
        let rtype = resource.resource_type.as_str();
        let grant = self.grant(ctx, rtype, Permission::Read).or_else(|| {
            (interaction == Interaction::Search)
                .then(|| self.grant(ctx, rtype, Permission::Search))
                .flatten()
        });
        let Some(bound) = grant else {
            // In a Bundle the entry is dropped; a direct read says why (the type was
            // checked before the lookup, so this tells nothing about existence).
            return Ok(Err(match interaction {
                Interaction::Read | Interaction::Vread => Refusal::Forbidden(format!(
                    "the access token's scopes do not allow reading {rtype}"
                )),
                _ => Refusal::Hidden,
            }));
        };
        // Parsed once for every rule that looks inside (None for a deletion).
        let value: Option<Value> = if resource.deleted {
            None
        } else {
            serde_json::from_str(&resource.content).ok()
        };
        // A resource placed in a document (a Binary whose securityContext is the
        // DocumentReference) is within the patient's bound when the document is: told by
        // the placement below, which loads the document.
        let mut placed_by_document = None;
        if let Some(patient) = bound {
            // Another patient's data must look exactly like data that does not exist. A
            // tombstone carries no content to place it, so it is hidden too.
            let within = value.as_ref().is_some_and(|v| {
                if matches!(policy::of(rtype).placed(v), Placed::Document(_)) {
                    placed_by_document = Some(patient.clone());
                    true
                } else {
                    self.readable_by_patient(rtype, v, &patient)
                }
            });
            if !within {
                return Ok(Err(Refusal::Hidden));
            }
        }
        let seen = Seen {
            ctx,
            resource: &resource,
            value: value.as_ref(),
        };
        let decided = loading(facts, load, |facts| {
            self.consent_read(interaction, &seen, facts)
        })?;
        if let Some(patient) = &placed_by_document {
            if !decided
                .as_ref()
                .is_some_and(|d| d.patients.contains(patient))
            {
                return Ok(Err(Refusal::Hidden));
            }
        }
        let Some(decided) = decided else {
            return Ok(Ok(Visible(resource)));
        };
        let (allowed, hidden) = (decided.allowed, decided.hidden);
        let why = decided.why.clone().unwrap_or_default();
        facts.trail.push(decided);
        Ok(if allowed {
            Ok(Visible(resource))
        } else if hidden {
            Err(Refusal::Hidden)
        } else {
            Err(match interaction {
                Interaction::Read | Interaction::Vread | Interaction::History => {
                    Refusal::Forbidden(why)
                }
                _ => Refusal::Hidden,
            })
        })
    }

    /// Keeps the resources of a Bundle that `ctx` may see; the others are dropped silently.
    pub fn filter(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resources: Vec<StoredResource>,
        facts: &mut Facts,
        load: &mut Loader,
    ) -> Result<Vec<Visible<StoredResource>>, FhirError> {
        let mut out = Vec::with_capacity(resources.len());
        for r in resources {
            if let Ok(v) = self.check_read(ctx, interaction, r, facts, load)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Whether searches must check every candidate before counting and paging (true when
    /// a policy can hide resources from `ctx`).
    pub fn checks_each_resource(&self, ctx: &RequestContext) -> bool {
        self.may_be_bounded(ctx) || self.consent_applies(ctx) || restricted_system(ctx).is_some()
    }

    /// Whether the patient's rules apply to `ctx` (everyone but backend services).
    fn consent_applies(&self, ctx: &RequestContext) -> bool {
        !matches!(ctx.actor(), Actor::System(_))
    }

    /// Who is looking, as the rules see them (None for a backend service).
    fn viewer(&self, ctx: &RequestContext, facts: &Facts) -> Result<Option<Viewer>, Need> {
        Ok(Some(match ctx.actor() {
            Actor::System(_) => return Ok(None),
            Actor::Patient(own) => match ctx.acting_for() {
                None => Viewer::Holder {
                    patient: own.clone(),
                },
                Some(_) => Viewer::Representative {
                    person: own.clone(),
                    ins: facts
                        .ins
                        .get(own)
                        .cloned()
                        .ok_or_else(|| Need::Ins(own.clone()))?,
                },
            },
            Actor::Practitioner(id) => Viewer::Professional {
                id: id.clone(),
                professions: facts
                    .professions
                    .get(id)
                    .cloned()
                    .ok_or_else(|| Need::Professional(id.clone()))?,
                purpose: ctx.purpose().clone(),
            },
        }))
    }

    /// The records (patient ids) a resource belongs to and its facts for the rules. A
    /// Binary belongs to what its `securityContext` names (a DocumentReference: then that
    /// document's record and labels decide). Versions are judged by the current version's
    /// labels and authors too (a document masked today is masked in all its versions).
    /// Only the record is needed when nobody's rules are `judged` (a backend service's
    /// access, placed for its trace): the current version and the filing time are not
    /// loaded then.
    fn placement(
        &self,
        interaction: Interaction,
        seen: &Seen,
        judged: bool,
        facts: &Facts,
    ) -> Result<(Vec<String>, Subject), Need> {
        let rtype = seen.resource.resource_type.as_str();
        let null = Value::Null;
        let own = seen.value.unwrap_or(&null);
        let mut owner = (rtype.to_string(), seen.resource.id.clone());
        let mut document: Option<Value> = None;
        match policy::of(rtype).placed(own) {
            Placed::Itself => {}
            Placed::Content(patients) if !judged => return Ok((patients, Subject::default())),
            Placed::Content(mut patients) => {
                let id = &seen.resource.id;
                let documents = facts
                    .documents_of
                    .get(id)
                    .ok_or_else(|| Need::DocumentsOf(id.clone()))?;
                let mut subject = Subject::default();
                if documents.len() > storage_limits::MAX_DOCUMENTS_OF_BINARY {
                    // Fails closed: more documents than are read.
                    subject.labels.insert((
                        consent::TRE_A07.to_string(),
                        consent::INVISIBLE_PATIENT.to_string(),
                    ));
                    subject
                        .labels
                        .insert((consent::TRE_A07.to_string(), consent::MASQUE_PS.to_string()));
                }
                for doc in documents {
                    let key = ("DocumentReference".to_string(), doc.clone());
                    let current = facts
                        .current
                        .get(&key)
                        .ok_or_else(|| Need::Current(key.0.clone(), key.1.clone()))?;
                    let Some(value) = current
                        .as_ref()
                        .filter(|c| !c.deleted)
                        .and_then(|c| serde_json::from_str::<Value>(&c.content).ok())
                    else {
                        continue;
                    };
                    let of_doc = Subject::of("DocumentReference", &value);
                    if of_doc.has(consent::INVISIBLE_PATIENT) {
                        let filed = *facts
                            .filed_at
                            .get(&key)
                            .ok_or_else(|| Need::FiledAt(key.0.clone(), key.1.clone()))?;
                        // The latest filing runs longest.
                        subject.filed_at = subject.filed_at.max(filed);
                    }
                    patients.extend(self.patients_of("DocumentReference", &value));
                    subject.labels.extend(of_doc.labels);
                    if let Some(types) = of_doc.document_types {
                        subject
                            .document_types
                            .get_or_insert_with(Vec::new)
                            .extend(types);
                    }
                }
                // Its author is whoever filed the Binary itself, never the authors the
                // documents pointing to it name (anyone may file a document that does).
                let key = ("Binary".to_string(), id.clone());
                let writer = facts
                    .filed_by
                    .get(&key)
                    .ok_or_else(|| Need::FiledAt(key.0.clone(), key.1.clone()))?;
                subject.authors = writer
                    .as_deref()
                    .and_then(|w| w.strip_prefix("Practitioner/"))
                    .map(|p| vec![p.to_string()])
                    .unwrap_or_default();
                patients.sort();
                patients.dedup();
                return Ok((patients, subject));
            }
            Placed::Document(doc) => {
                let key = ("DocumentReference".to_string(), doc);
                let current = facts
                    .current
                    .get(&key)
                    .ok_or_else(|| Need::Current(key.0.clone(), key.1.clone()))?;
                document = Some(
                    current
                        .as_ref()
                        .filter(|c| !c.deleted)
                        .and_then(|c| serde_json::from_str(&c.content).ok())
                        .unwrap_or(Value::Null),
                );
                owner = key;
            }
        }
        let value = document.as_ref().unwrap_or(own);
        let otype = owner.0.as_str();
        let mut patients = self.patients_of(otype, value);
        let mut subject = Subject::of(otype, value);
        let older = matches!(interaction, Interaction::Vread | Interaction::History);
        if judged && older && otype == rtype {
            let current = facts
                .current
                .get(&owner)
                .ok_or_else(|| Need::Current(owner.0.clone(), owner.1.clone()))?;
            // The current version's labels decide for every version; once the resource
            // is deleted, the strictest it ever had (a document masked and then deleted
            // stays masked in all its versions).
            let judged_by: Vec<Value> = match current.as_ref() {
                Some(cur) if !cur.deleted => {
                    vec![serde_json::from_str(&cur.content).unwrap_or(Value::Null)]
                }
                Some(_) => facts
                    .versions
                    .get(&owner)
                    .ok_or_else(|| Need::Versions(owner.0.clone(), owner.1.clone()))?
                    .iter()
                    .map(|c| serde_json::from_str(c).unwrap_or(Value::Null))
                    .collect(),
                None => Vec::new(),
            };
            for other in &judged_by {
                let then = Subject::of(otype, other);
                subject.labels.extend(then.labels);
                subject.authors.retain(|a| then.authors.contains(a));
                if then.document_types.is_some() {
                    subject.document_types = then.document_types;
                }
                patients.extend(self.patients_of(otype, other));
            }
            patients.sort();
            patients.dedup();
        }
        if judged && subject.has(consent::INVISIBLE_PATIENT) {
            subject.filed_at = *facts
                .filed_at
                .get(&owner)
                .ok_or_else(|| Need::FiledAt(owner.0.clone(), owner.1.clone()))?;
        }
        Ok((patients, subject))
    }

    /// The rules' answer for a resource: None when it is no patient's data (the
    /// directory), else the decision for the trail. `Err` names a missing fact.
    fn consent_read(
        &self,
        interaction: Interaction,
        seen: &Seen,
        facts: &Facts,
    ) -> Result<Option<Decided>, Need> {
        let ctx = seen.ctx;
        let resource = seen.resource;
        let rtype = resource.resource_type.as_str();
        let policy = policy::of(rtype);
        if policy.is_directory() {
            return Ok(None);
        }
        let refused = |why: &str, patients: Vec<String>| Decided {
            patients,
            resource_type: rtype.to_string(),
            id: resource.id.clone(),
            allowed: false,
            hidden: true,
            why: Some(why.to_string()),
            bases: Vec::new(),
            labels: Vec::new(),
        };
        if let Some(own) = policy.read_of_its_own(seen) {
            return Ok(own.map(|why| refused(why, Vec::new())));
        }
        if resource.deleted {
            // A deletion carries no content to place it: only unrestricted backend services
            // see it.
            return Ok(
                (self.consent_applies(ctx) || restricted_system(ctx).is_some())
                    .then(|| refused("a deletion", Vec::new())),
            );
        }
        // The rules bind every requester but backend services (and nobody with the
        // allow-all decision of the benchmarks).
        let bound = !self.allow_all && !matches!(ctx.actor(), Actor::System(_));
        let (patients, subject) = self.placement(interaction, seen, bound, facts)?;
        if bound {
            // The records' rules before the requester's professions: the loader reads
            // both stamps in one statement.
            if let Some(p) = patients.iter().find(|p| !facts.rules.contains_key(*p)) {
                return Err(Need::Rules(p.clone()));
            }
        }
        let viewer = if bound {
            self.viewer(ctx, facts)?
        } else {
            None
        };
        if patients.is_empty() {
            // Patient data whose record cannot be told (a Binary without security context,
            // a document whose subject is an identifier): closed to everyone the rules
            // bind, except a professional who authored it.
            let own = matches!(&viewer, Some(Viewer::Professional { id, .. })
                if subject.authors.contains(id));
            if let Some(role) = restricted_system(ctx) {
                return Ok(system_refusal(role, ctx, seen, &[], facts)?
                    .map(|why| refused(why, Vec::new())));
            }
            if viewer.is_none() || own {
                return Ok(None);
            }
            return Ok(Some(refused(
                "the record this resource belongs to cannot be told",
                Vec::new(),
            )));
        }
        let mut decided = Decided {
            patients: patients.clone(),
            resource_type: rtype.to_string(),
            id: resource.id.clone(),
            allowed: true,
            hidden: false,
            why: None,
            bases: Vec::new(),
            labels: visibility_labels(&subject),
        };
        if let Some(role) = restricted_system(ctx) {
            if let Some(why) = system_refusal(role, ctx, seen, &patients, facts)? {
                decided.allowed = false;
                decided.hidden = true;
                decided.why = Some(why.to_string());
            }
            return Ok(Some(decided));
        }
        let Some(viewer) = viewer else {
            return Ok(Some(decided));
        };
        let now = ctx.now_us();
        for patient in &patients {
            let rules = facts
                .rules
                .get(patient)
                .ok_or_else(|| Need::Rules(patient.clone()))?;
            let decision = policy.decide(seen, &viewer, rules, &subject);
            if let Viewer::Professional { id, purpose, .. } = &viewer {
                if let consent::RecordAccess::Open(b) =
                    consent::record_access(rules, id, purpose, now)
                {
                    decided.bases.extend(b);
                }
            }
            if let consent::Decision::Refused { why, hidden } = decision {
                decided.allowed = false;
                decided.hidden = hidden;
                decided.bases.clear();
                decided.why = Some(why);
                break;
            }
        }
        decided.bases.sort();
        decided.bases.dedup();
        Ok(Some(decided))
    }

    /// May `ctx` write `new` (None for a delete) over `current` (None when it does not
    /// exist; with its content)? A current resource `ctx` may not see answers 404 exactly
    /// like an absent one, and update-as-create is not offered in a patient's context (a
    /// chosen id could be another patient's deleted resource).
    #[allow(clippy::too_many_arguments)]
    pub fn check_write(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        resource_type: &str,
        id: &str,
        new: Option<&Value>,
        current: Option<&StoredResource>,
        facts: &mut Facts,
        load: &mut Loader,
    ) -> Result<WriteReceipt, FhirError> {
        self.check_write_scopes(ctx, interaction, resource_type, new, current)?;
        loading(facts, load, |facts| {
            self.consent_write(ctx, interaction, resource_type, new, current, facts)
        })??;
        Ok(WriteReceipt {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
        })
    }

    /// The patient's rules on a write (after the scopes and the patient bound): the type's
    /// own rules, then the writer's standing — a representative's guardianship, what a
    /// third-party app may not lift, the labels only an author or the patient may change,
    /// what a professional may change. `Err` names a missing fact.
    fn consent_write(
        &self,
        ctx: &RequestContext,
        interaction: Interaction,
        rtype: &str,
        new: Option<&Value>,
        current: Option<&StoredResource>,
        facts: &Facts,
    ) -> Result<Result<(), FhirError>, Need> {
        if self.allow_all {
            return Ok(Ok(()));
        }
        let forbid = |why: &str| Ok(Err(FhirError::Forbidden(why.to_string())));
        let current_value: Option<Value> = current
            .filter(|c| !c.deleted)
            .and_then(|c| serde_json::from_str(&c.content).ok());
        let policy = policy::of(rtype);
        let w = Write {
            ctx,
            interaction,
            rtype,
            new,
            current,
            current_value: current_value.as_ref(),
        };
        if let Some(answer) = policy.write_first(&w) {
            return Ok(answer);
        }
        // Also a notice's rules when a write turns another type into one (or back).
        if rtype != "Communication" {
            if let Some(answer) = policy::of("Communication").write_first(&w) {
                return Ok(answer);
            }
        }
        let labels = |v: Option<&Value>| -> std::collections::BTreeSet<String> {
            v.map(|v| Subject::of(rtype, v).labels)
                .unwrap_or_default()
                .into_iter()
                .filter(|(s, _)| s == consent::TRE_A07)
                .map(|(_, c)| c)
                .collect()
        };
        let before = labels(current_value.as_ref());
        let after = if interaction == Interaction::Delete {
            before.clone()
        } else {
            labels(new)
        };
        let changed: Vec<&String> = before.symmetric_difference(&after).collect();
        let removed = |code: &str| before.contains(code) && !after.contains(code);
        let now = ctx.now_us();
        match ctx.actor() {
            Actor::System(_) => system_write(ctx, interaction, rtype, new, current, facts),
            Actor::Patient(own) => {
                let representative = ctx.acting_for().is_some();
                if let Some(child) = ctx.acting_for() {
                    let ins = facts.ins.get(own).ok_or_else(|| Need::Ins(own.clone()))?;
                    let rules = facts
                        .rules
                        .get(child)
                        .ok_or_else(|| Need::Rules(child.to_string()))?;
                    if !rules.represented_by(ins, now) {
                        return forbid(&format!(
                            "Patient/{own} is not a legal representative of Patient/{child}"
                        ));
                    }
                }
                if let Some(cur) = current.filter(|c| !c.deleted) {
                    let seen = Seen {
                        ctx,
                        resource: cur,
                        value: current_value.as_ref(),
                    };
                    let decided = self.consent_read(Interaction::Read, &seen, facts)?;
                    if decided.is_some_and(|d| !d.allowed) {
                        return Ok(Err(FhirError::hidden(rtype, &cur.id)));
                    }
                }
                if !ctx.first_party()
                    && (removed(consent::MASQUE_PS) || removed(consent::MASQUE_PSOCIAL))
                {
                    return forbid(
                        "a document is unmasked by the patient in Carnet itself, not through \
                         an app",
                    );
                }
                if changed.iter().any(|c| *c == consent::INVISIBLE_PATIENT) {
                    return forbid(
                        "INVISIBLE_PATIENT is set and lifted by the document's author (after \
                         the announcement consultation)",
                    );
                }
                if representative
                    && changed
                        .iter()
                        .any(|c| *c == consent::INVISIBLE_REPRESENTANTS_LEGAUX)
                {
                    return forbid(
                        "INVISIBLE_REPRESENTANTS_LEGAUX is not a representative's to change",
                    );
                }
                Ok(policy.patient_write(&w))
            }
            Actor::Practitioner(id) => {
                if let Err(e) = policy.professional_write(&w, id) {
                    return Ok(Err(e));
                }
                let Some(cur) = current.filter(|c| !c.deleted) else {
                    // Filing needs no authorisation (AC2).
                    return policy.professional_create(&w, id, facts);
                };
                let seen = Seen {
                    ctx,
                    resource: cur,
                    value: current_value.as_ref(),
                };
                let decided = self.consent_read(Interaction::Read, &seen, facts)?;
                if let Some(d) = decided.filter(|d| !d.allowed) {
                    let why = d.why.unwrap_or_default();
                    return Ok(Err(if d.hidden {
                        FhirError::hidden(rtype, &cur.id)
                    } else {
                        FhirError::Forbidden(why)
                    }));
                }
                if let Err(e) = policy.professional_update(&w, id, facts)? {
                    return Ok(Err(e));
                }
                if removed(consent::MASQUE_PS) || removed(consent::MASQUE_PSOCIAL) {
                    return forbid("only the patient unmasks a document");
                }
                Ok(Ok(()))
            }
        }
    }

    /// The scopes and the patient bound of a write.
    fn check_write_scopes(
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
        let hidden = |id: &str| FhirError::hidden(resource_type, id);
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

    /// The trail entry of a write (decided by [`Self::check_write`]): the records of the
    /// resource as written and as it was.
    pub fn decided_write(
        &self,
        rtype: &str,
        id: &str,
        new: Option<&Value>,
        current: Option<&StoredResource>,
        refusal: Option<&FhirError>,
    ) -> Decided {
        let current_value: Option<Value> = current
            .filter(|c| !c.deleted)
            .and_then(|c| serde_json::from_str(&c.content).ok());
        let mut patients = new.map(|v| self.patients_of(rtype, v)).unwrap_or_default();
        if rtype == "Patient" {
            // A new Patient has no id in its body yet.
            patients.push(id.to_string());
        }
        if let Some(cur) = current.filter(|c| !c.deleted) {
            if let Ok(v) = serde_json::from_str::<Value>(&cur.content) {
                patients.extend(self.patients_of(rtype, &v));
            }
        }
        patients.sort();
        patients.dedup();
        Decided {
            patients,
            resource_type: rtype.to_string(),
            id: id.to_string(),
            allowed: refusal.is_none(),
            hidden: matches!(refusal, Some(FhirError::NotFound(_))),
            why: refusal.map(|e| e.to_string()),
            bases: Vec::new(),
            labels: new
                .or(current_value.as_ref())
                .map(|v| visibility_labels(&Subject::of(rtype, v)))
                .unwrap_or_default(),
        }
    }

    /// The patients whose record `resource` is in (as the policy of its type places it: a
    /// Binary, the patient its security context names; an AuditEvent, its entities).
    pub fn patients_of(&self, rtype: &str, resource: &Value) -> Vec<String> {
        policy::of(rtype).patients_of(rtype, resource, &self.base_url)
    }
}

/// How many facts one decision may wait for (a Binary → its document → its patient's
/// rules → the professional's professions → …).
const MAX_FACT_ROUNDS: usize = 8;

/// Runs `decide` until it needs no more facts, loading each one it names.
fn loading<T>(
    facts: &mut Facts,
    load: &mut Loader,
    decide: impl Fn(&Facts) -> Result<T, Need>,
) -> Result<T, FhirError> {
    for _ in 0..MAX_FACT_ROUNDS {
        match decide(facts) {
            Ok(decision) => return Ok(decision),
            Err(need) => load(&need, facts)?,
        }
    }
    Err(FhirError::Internal(
        "an access decision kept asking for facts".into(),
    ))
}

/// The visibility labels (TRE_A07 codes) of a resource, which its traces carry.
fn visibility_labels(subject: &Subject) -> Vec<String> {
    subject
        .labels
        .iter()
        .filter(|(s, _)| s == consent::TRE_A07)
        .map(|(_, c)| c.clone())
        .collect()
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

/// Whether a clause looks at resources other than directory ones besides the searched one.
fn reaches_beyond_directory(c: &Clause) -> bool {
    reaches_beyond(c, DIRECTORY_TYPES)
}

/// Whether a clause uses `_has`, or chains to a type outside `allowed`.
fn reaches_beyond(c: &Clause, allowed: &[&str]) -> bool {
    match &c.kind {
        Kind::Has { .. } => true,
        Kind::Chain(targets) => targets
            .iter()
            .any(|(t, inner)| !allowed.contains(&t.as_str()) || reaches_beyond(inner, allowed)),
        Kind::AnyOf(cs) => cs.iter().any(|c| reaches_beyond(c, allowed)),
        _ => false,
    }
}
