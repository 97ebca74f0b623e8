//! repository: the FHIR interactions (create, conditional create, read, vread, update,
//! delete, history, batch and transaction) over storage, independent of HTTP.
//!
//! Every resource leaves this module as a [`Visible`], which only the access-decision
//! point can make; storage is a private child module, so nothing else can read the
//! database. What it must never do: serialise for the wire, or decide access itself.

mod audit;
mod consent_facts;
mod notices;
mod oauth_store;
mod storage;
mod subscriptions;
pub mod transaction;

use serde_json::{json, Value};

use crate::access::{AccessPoint, Facts, Interaction, Visible};
use crate::auth::{Actor, Permission, RequestContext};
use crate::error::FhirError;
use crate::fhir::{instant, resource_types, validate};
pub use crate::resource::StoredResource;
pub use oauth_store::{AuthorizationRow, GrantRow, OAuthStore, RefreshRow};
pub use storage::clients::ClientRow;
pub use storage::{redact_url, Backend};
use storage::{AnyConnection, HistoryQuery, Storage, WriteVersion};
pub use subscriptions::Outgoing;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Created,
    Updated,
    /// Conditional create found the resource already there: nothing written.
    Existing,
    Deleted,
    /// Delete of a resource already deleted: nothing written.
    AlreadyDeleted,
}

#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub status: WriteStatus,
    pub resource: Visible<StoredResource>,
}

/// A page of history, newest first, and the cursor of the next page.
pub struct HistoryPage {
    pub entries: Vec<Visible<StoredResource>>,
    pub next_cursor: Option<i64>,
}

/// A page of search results: matches that passed the access point, the total after
/// filtering, and the snapshot later pages are read from (when there are any).
pub struct SearchPage {
    pub entries: Vec<Visible<StoredResource>>,
    /// Resources brought in by _include/_revinclude (search.mode include).
    pub included: Vec<Visible<StoredResource>>,
    /// Whether `_include`/`_revinclude` would have brought in more than the limit allows.
    pub included_truncated: bool,
    pub total: i64,
    pub snapshot: Option<String>,
    pub offset: i64,
    pub count: i64,
}

/// Which history to list.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub since_us: Option<i64>,
    pub cursor: Option<i64>,
    pub count: i64,
}

#[derive(Clone)]
pub struct Repository {
    storage: Storage,
    access: AccessPoint,
    /// The group commit of reads' AuditEvents.
    audit: std::sync::Arc<audit::Queue>,
    /// Notices known recorded (a professional's first access is recorded once).
    notified: std::sync::Arc<notices::Recorded>,
    /// Patients' rules as last read (checked against their stamp on every use).
    rules_cache: std::sync::Arc<consent_facts::RulesCache>,
    /// This server's FHIR base URL: absolute references under it are local ones.
    base_url: String,
    /// Limits on input (Bundle entries and reads, include fan-out).
    limits: crate::fhir::limits::Limits,
}

impl Repository {
    /// Opens the database (running its migrations) behind a new repository.
    pub fn open(
        database_url: &str,
        pool_size: u32,
        access: AccessPoint,
        base_url: &str,
    ) -> Result<Repository, String> {
        Ok(Repository {
            storage: Storage::open(database_url, pool_size)?,
            access,
            audit: Default::default(),
            notified: Default::default(),
            rules_cache: Default::default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            limits: Default::default(),
        })
    }

    /// The same repository under other input limits.
    pub fn with_limits(mut self, limits: crate::fhir::limits::Limits) -> Repository {
        self.limits = limits;
        self
    }

    pub fn backend(&self) -> Backend {
        self.storage.backend()
    }

    pub fn read(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
    ) -> Result<Visible<StoredResource>, FhirError> {
        self.audited_read(ctx, "read", |conn, facts| {
            self.read_in(conn, ctx, rtype, id, facts)
        })
    }

    fn read_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        facts: &mut Facts,
    ) -> Result<Visible<StoredResource>, FhirError> {
        check_type(rtype)?;
        check_id(rtype, id)?;
        self.access.check_type(ctx, rtype, Permission::Read)?;
        let row = storage::current(conn, rtype, id)?.ok_or_else(|| not_found(rtype, id))?;
        let visible = self
            .decide_read(conn, ctx, Interaction::Read, from_current(row), facts)?
            .map_err(|r| r.into_error(rtype, id))?;
        if visible.deleted {
            return Err(FhirError::Gone(format!("{rtype}/{id} was deleted")));
        }
        Ok(visible)
    }

    pub fn vread(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        vid: &str,
    ) -> Result<Visible<StoredResource>, FhirError> {
        self.audited_read(ctx, "vread", |conn, facts| {
            self.vread_in(conn, ctx, rtype, id, vid, facts)
        })
    }

    fn vread_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        vid: &str,
        facts: &mut Facts,
    ) -> Result<Visible<StoredResource>, FhirError> {
        check_type(rtype)?;
        check_id(rtype, id)?;
        self.access.check_type(ctx, rtype, Permission::Read)?;
        // One answer for an absent resource, an absent version and a hidden one.
        let missing = || FhirError::NotFound(format!("{rtype}/{id}/_history/{vid} is not known"));
        let v: i64 = vid.parse().map_err(|_| missing())?;
        let row = from_version(storage::version(conn, rtype, id, v)?.ok_or_else(missing)?);
        let visible = self
            .decide_read(conn, ctx, Interaction::Vread, row, facts)?
            .map_err(|r| match r {
                crate::access::Refusal::Hidden => missing(),
                other => other.into_error(rtype, id),
            })?;
        if visible.deleted {
            return Err(FhirError::Gone(format!(
                "version {vid} of {rtype}/{id} is a deletion"
            )));
        }
        Ok(visible)
    }

    /// Creates a resource (a new server id), or, with `if_none_exist`, returns the one
    /// resource that matches the criteria.
    pub fn create(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        resource: Value,
        if_none_exist: Option<&str>,
    ) -> Result<WriteOutcome, FhirError> {
        check_type(rtype)?;
        let resource = validate_as(rtype, resource)?;
        self.audited_write(ctx, "create", |conn, facts| {
            if let Some(criteria) = if_none_exist {
                if let Some(existing) = self.conditional_match(conn, ctx, rtype, criteria, facts)? {
                    return Ok(existing);
                }
            }
            let id = new_id();
            self.write_in(conn, ctx, rtype, &id, resource, None, "POST", facts)
        })
    }

    /// Applies a JSON Patch to a DocumentReference (PDSm: only `status`, `securityLabel`
    /// and the archive extension may change), as an update of the version read.
    pub fn patch(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        patch: &Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, FhirError> {
        check_type(rtype)?;
        if rtype != "DocumentReference" {
            return Err(FhirError::MethodNotAllowed(format!(
                "PATCH is offered on DocumentReference only (PDSm); send a PUT to change a {rtype}"
            )));
        }
        check_id(rtype, id)?;
        self.access.check_type(ctx, rtype, Permission::Update)?;
        self.audited_write(ctx, "patch", |conn, facts| {
            let current = self.read_in(conn, ctx, rtype, id, facts)?;
            let before = current.json()?;
            let after = crate::fhir::patch::apply(&before, patch, self.limits.max_elements)?;
            crate::fhir::limits::check_value(&after, &self.limits)?;
            crate::fhir::patch::check_pdsm_scope(&before, &after)?;
            let after = validate_for_update(rtype, id, after)?;
            let expected = Some(if_match.unwrap_or(current.version_id));
            self.write_in(conn, ctx, rtype, id, after, expected, "PATCH", facts)
        })
    }

    /// Runs a write in one transaction with its AuditEvents; a refused write is traced
    /// after the rollback.
    fn audited_write<T>(
        &self,
        ctx: &RequestContext,
        interaction: &str,
        f: impl FnOnce(&mut AnyConnection, &mut Facts) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let mut conn = self.storage.conn()?;
        let mut facts = Facts::new();
        let result = Storage::write_on(&mut conn, |c| {
            let out = f(c, &mut facts)?;
            self.audit_in(c, ctx, interaction, &facts)?;
            Ok(out)
        });
        if result.is_err() && facts.trail.iter().any(|d| !d.allowed) {
            facts.trail.retain(|d| !d.allowed);
            self.trace(&mut conn, ctx, interaction, &facts)?;
        }
        result
    }

    /// Updates (or creates with a client id) a resource; `if_match` is the version the
    /// client last saw.
    pub fn update(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, FhirError> {
        check_type(rtype)?;
        let resource = validate_for_update(rtype, id, resource)?;
        self.audited_write(ctx, "update", |conn, facts| {
            self.write_in(conn, ctx, rtype, id, resource, if_match, "PUT", facts)
        })
    }

    pub fn delete(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, FhirError> {
        check_type(rtype)?;
        check_id(rtype, id)?;
        self.audited_write(ctx, "delete", |conn, facts| {
            self.delete_in(conn, ctx, rtype, id, if_match, facts)
        })
    }

    /// The one resource matching `criteria`, if exactly one does; 412 if several do.
    fn conditional_match(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        criteria: &str,
        facts: &mut Facts,
    ) -> Result<Option<WriteOutcome>, FhirError> {
        // Only a request that may create this type learns anything from its criteria.
        self.access.check_type(ctx, rtype, Permission::Create)?;
        // The criteria are a search: every parameter search supports, strictly (an unknown
        // parameter must not silently match everything).
        let search = crate::fhir::search_query::parse(rtype, criteria, 2, 2, "", true).map_err(
            |e| match e {
                FhirError::BadRequest(m) => FhirError::BadRequest(format!("If-None-Exist: {m}")),
                other => other,
            },
        )?;
        if search.clauses.is_empty() {
            return Err(FhirError::BadRequest(
                "If-None-Exist has no search criteria".into(),
            ));
        }
        // In a patient's context, only that patient's resources can match (a match
        // elsewhere must not show, not even as a count).
        let mut search = search;
        if let Some(patient) = self.access.search_restriction(ctx, &search)? {
            search
                .clauses
                .push(crate::fhir::search_query::patient_restriction(
                    rtype, &patient,
                )?);
        }
        // Serialise conditional creates with the same criteria (normalised as parsed).
        storage::lock_criteria(conn, &format!("{rtype}?{}", search.canonical_query))?;
        let ids = storage::search::matching_ids(conn, &search)?;
        // Only matches the requester may see count (a hidden match must not show, not even
        // as "several match").
        let ids: Vec<String> = if self.access.checks_each_resource(ctx) {
            self.visible_rows(
                conn,
                ctx,
                &ids.into_iter()
                    .map(|i| (rtype.to_string(), i))
                    .collect::<Vec<_>>(),
                facts,
            )?
            .into_iter()
            .map(|v| v.id.clone())
            .collect()
        } else {
            ids
        };
        match ids.as_slice() {
            [] => Ok(None),
            [one] => {
                let resource = self.read_in(conn, ctx, rtype, one, facts)?;
                Ok(Some(WriteOutcome {
                    status: WriteStatus::Existing,
                    resource,
                }))
            }
            _ => Err(FhirError::PreconditionFailed(format!(
                "If-None-Exist '{criteria}' matches {} resources",
                ids.len()
            ))),
        }
    }

    /// Writes a new version of `rtype/id` (creating it if needed) inside a transaction.
    #[allow(clippy::too_many_arguments)]
    fn write_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
        method: &str,
        facts: &mut Facts,
    ) -> Result<WriteOutcome, FhirError> {
        let current = storage::current(conn, rtype, id)?;
        let current_stored = current.clone().map(from_current);
        let interaction = match &current {
            Some(row) if !row.deleted => Interaction::Update,
            _ if method == "PUT" => Interaction::UpdateCreate,
            _ => Interaction::Create,
        };
        // The access decision comes first: a precondition must not tell whether a
        // resource the requester may not see exists.
        let decision = self.decide_write(
            conn,
            ctx,
            interaction,
            rtype,
            Some(&resource),
            current_stored.as_ref(),
            facts,
        );
        let decided = self.access.decided_write(
            rtype,
            id,
            Some(&resource),
            current_stored.as_ref(),
            decision.as_ref().err(),
        );
        facts.trail.push(decided);
        decision?;
        if let Some(expected) = if_match {
            match &current {
                Some(row) if !row.deleted && row.version_id == expected => {}
                Some(row) if !row.deleted => {
                    return Err(FhirError::PreconditionFailed(format!(
                        "If-Match W/\"{expected}\" does not match the current version W/\"{}\" of {rtype}/{id}",
                        row.version_id
                    )))
                }
                _ => {
                    return Err(FhirError::PreconditionFailed(format!(
                        "If-Match W/\"{expected}\": {rtype}/{id} does not exist"
                    )))
                }
            }
        }
        if method == "PATCH" {
            if let Some(cur) = current_stored.as_ref().filter(|c| !c.deleted) {
                if same_content(&cur.json()?, &resource) {
                    // A patch that changes nothing writes nothing (no new version).
                    return Ok(WriteOutcome {
                        status: WriteStatus::Updated,
                        resource: self.access.admit_written(cur.clone()),
                    });
                }
            }
        }
        let mut subscription = None;
        let resource = if rtype == "Subscription" {
            let current_value = current_stored
                .as_ref()
                .filter(|c| !c.deleted)
                .map(StoredResource::json)
                .transpose()?;
            let (resource, active) = subscriptions::prepare(
                ctx,
                &self.access,
                resource,
                current_value.as_ref(),
                &self.base_url,
            )?;
            subscription = Some(active);
            resource
        } else {
            resource
        };
        let mut outcome =
            match self.put_checked_opt(conn, rtype, id, resource, current.as_ref(), method)? {
                Some(o) => o,
                None => return Err(lost_race(rtype, id, if_match)),
            };
        if let Some(active) = subscription {
            self.record_subscription(conn, ctx, id, active)?;
        }
        if rtype == "DocumentReference" && interaction != Interaction::Update {
            self.notify_new_document(conn, ctx, &outcome.resource)?;
        }
        outcome.status = if interaction == Interaction::Update {
            WriteStatus::Updated
        } else {
            WriteStatus::Created
        };
        Ok(outcome)
    }

    /// Tells the patient of a document just filed in their record (by someone else).
    fn notify_new_document(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        doc: &StoredResource,
    ) -> Result<(), FhirError> {
        let value = doc.json()?;
        let labels: Vec<String> = crate::consent::Subject::of("DocumentReference", &value)
            .labels
            .into_iter()
            .filter(|(s, _)| s == crate::consent::TRE_A07)
            .map(|(_, c)| c)
            .collect();
        let notices: Vec<notices::Notice> = self
            .access
            .patients_of("DocumentReference", &value)
            .iter()
            .filter_map(|p| {
                notices::for_new_document(ctx, p, &doc.id, &labels, doc.last_updated_us)
            })
            .collect();
        self.write_notices(conn, notices, instant::now_us())?;
        Ok(())
    }

    /// Writes `resource` as the next version after `current` (a decided write).
    fn put_checked(
        &self,
        conn: &mut AnyConnection,
        rtype: &str,
        id: &str,
        resource: Value,
        current: &storage::CurrentRow,
        method: &str,
    ) -> Result<WriteOutcome, FhirError> {
        self.put_checked_opt(conn, rtype, id, resource, Some(current), method)?
            .ok_or_else(|| lost_race(rtype, id, None))
    }

    /// Writes `resource` as the next version after `current`; None when a concurrent
    /// writer got there first.
    fn put_checked_opt(
        &self,
        conn: &mut AnyConnection,
        rtype: &str,
        id: &str,
        mut resource: Value,
        current: Option<&storage::CurrentRow>,
        method: &str,
    ) -> Result<Option<WriteOutcome>, FhirError> {
        let version_id = current.map_or(1, |r| r.version_id + 1);
        let now = instant::now_us();
        stamp(&mut resource, id, version_id, now);
        let content = serde_json::to_string(&resource)
            .map_err(|e| FhirError::Internal(format!("serialising: {e}")))?;
        let index = crate::fhir::index::index_rows(rtype, &resource, &self.base_url);
        self.storage.note_written(1);
        let written = storage::put_version(
            conn,
            &WriteVersion {
                resource_type: rtype,
                id,
                version_id,
                last_updated: now,
                deleted: false,
                method,
                content: &content,
                index: &index,
            },
            current.map(|r| r.version_id),
        )?;
        if !written {
            return Ok(None);
        }
        self.renew_rules(
            conn,
            rtype,
            id,
            Some(&resource),
            current.map(|c| c.content.as_str()),
        )?;
        let stored = StoredResource {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id,
            last_updated_us: now,
            deleted: false,
            content,
            method: Some(method.to_string()),
        };
        self.match_subscriptions(conn, &stored)?;
        Ok(Some(WriteOutcome {
            status: WriteStatus::Updated,
            resource: self.access.admit_written(stored),
        }))
    }

    fn delete_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        if_match: Option<i64>,
        facts: &mut Facts,
    ) -> Result<WriteOutcome, FhirError> {
        self.access.check_type(ctx, rtype, Permission::Delete)?;
        let current = storage::current(conn, rtype, id)?.ok_or_else(|| not_found(rtype, id))?;
        let current_stored = from_current(current.clone());
        let decision = self.decide_write(
            conn,
            ctx,
            Interaction::Delete,
            rtype,
            None,
            Some(&current_stored),
            facts,
        );
        facts.trail.push(self.access.decided_write(
            rtype,
            id,
            None,
            Some(&current_stored),
            decision.as_ref().err(),
        ));
        decision?;
        if rtype == "DocumentReference" && !current.deleted {
            // The DMP deletes logically: the document is marked entered-in-error and
            // keeps its history (AC9).
            if let Some(expected) = if_match {
                if current.version_id != expected {
                    return Err(FhirError::PreconditionFailed(format!(
                        "If-Match W/\"{expected}\" does not match the current version of {rtype}/{id}"
                    )));
                }
            }
            let mut doc: Value = current_stored.json()?;
            if doc.get("status").and_then(Value::as_str) == Some("entered-in-error") {
                let resource = self.access.admit_written(current_stored);
                return Ok(WriteOutcome {
                    status: WriteStatus::AlreadyDeleted,
                    resource,
                });
            }
            doc["status"] = json!("entered-in-error");
            let mut outcome = self.put_checked(conn, rtype, id, doc, &current, "PUT")?;
            outcome.status = WriteStatus::Deleted;
            return Ok(outcome);
        }
        if let Some(expected) = if_match {
            if current.deleted || current.version_id != expected {
                return Err(FhirError::PreconditionFailed(format!(
                    "If-Match W/\"{expected}\" does not match the current version of {rtype}/{id}"
                )));
            }
        }
        if current.deleted {
            let resource = self.access.admit_written(current_stored);
            return Ok(WriteOutcome {
                status: WriteStatus::AlreadyDeleted,
                resource,
            });
        }
        let version_id = current.version_id + 1;
        let now = instant::now_us();
        self.storage.note_written(1);
        let written = storage::put_version(
            conn,
            &WriteVersion {
                resource_type: rtype,
                id,
                version_id,
                last_updated: now,
                deleted: true,
                method: "DELETE",
                content: "",
                index: &crate::fhir::index::IndexRows::default(),
            },
            Some(current.version_id),
        )?;
        if !written {
            return Err(lost_race(rtype, id, if_match));
        }
        if rtype == "Subscription" {
            self.record_subscription(conn, ctx, id, None)?;
        }
        self.renew_rules(conn, rtype, id, None, Some(current.content.as_str()))?;
        let stored = StoredResource {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id,
            last_updated_us: now,
            deleted: true,
            content: String::new(),
            method: Some("DELETE".into()),
        };
        let resource = self.access.admit_written(stored);
        Ok(WriteOutcome {
            status: WriteStatus::Deleted,
            resource,
        })
    }

    /// A page of history (instance, type or system level), newest first. Every entry
    /// passes the access-decision point; no total is given, as hidden entries must not
    /// be counted.
    pub fn history(
        &self,
        ctx: &RequestContext,
        req: &HistoryRequest,
    ) -> Result<HistoryPage, FhirError> {
        if let Some(t) = &req.resource_type {
            check_type(t)?;
        }
        if req.id.is_none() {
            self.access
                .check_history_listing(ctx, req.resource_type.as_deref())?;
        }
        let interaction = match (&req.resource_type, &req.id) {
            (Some(_), Some(_)) => "history-instance",
            (Some(_), None) => "history-type",
            _ => "history-system",
        };
        self.audited_read(ctx, interaction, |conn, facts| {
            self.history_in(conn, ctx, req, facts)
        })
    }

    fn history_in(
        &self,
        conn: &mut storage::Conn,
        ctx: &RequestContext,
        req: &HistoryRequest,
        facts: &mut Facts,
    ) -> Result<HistoryPage, FhirError> {
        if let (Some(t), Some(id)) = (&req.resource_type, &req.id) {
            // Whether the resource exists is itself an answer: it passes the access point
            // (as a read: the instance's refusal says why).
            check_id(t, id)?;
            self.access.check_type(ctx, t, Permission::Read)?;
            let row = storage::current(conn, t, id)?.ok_or_else(|| not_found(t, id))?;
            let traced = facts.trail.len();
            let checked =
                self.decide_read(conn, ctx, Interaction::Read, from_current(row), facts)?;
            // Only a refusal is traced here; the entries below trace what is shown.
            if let Err(r) = checked {
                return Err(r.into_error(t, id));
            }
            facts.trail.truncate(traced);
        }
        let conn = &mut **conn;
        let rows = storage::history(
            conn,
            &HistoryQuery {
                resource_type: req.resource_type.clone(),
                id: req.id.clone(),
                since_us: req.since_us,
                before_seq: req.cursor,
                limit: req.count + 1,
            },
        )?;
        let more = rows.len() as i64 > req.count;
        let rows: Vec<_> = rows.into_iter().take(req.count as usize).collect();
        let next_cursor = if more {
            rows.last().map(|r| r.seq)
        } else {
            None
        };
        let rows: Vec<StoredResource> = rows.into_iter().map(from_version).collect();
        let entries = self.decide_reads(conn, ctx, Interaction::History, rows, facts)?;
        Ok(HistoryPage {
            entries,
            next_cursor,
        })
    }
}

impl Repository {
    /// Runs a search: matching ids from the indexes, filtered by the access point before
    /// anything is counted, the first page loaded, and a snapshot kept for later pages.
    pub fn search(
        &self,
        ctx: &RequestContext,
        req: &crate::fhir::search_query::SearchRequest,
    ) -> Result<SearchPage, FhirError> {
        self.search_types(ctx, std::slice::from_ref(req), req.count)
    }

    /// A search over several types at once (system-level `_type`): one request per type,
    /// results in the order of the types; includes follow the first request's.
    pub fn search_types(
        &self,
        ctx: &RequestContext,
        reqs: &[crate::fhir::search_query::SearchRequest],
        count: i64,
    ) -> Result<SearchPage, FhirError> {
        let interaction = if reqs.len() == 1 {
            "search-type"
        } else {
            "search-system"
        };
        // A patient looking at their notices finds those that fell due (the two-week notice
        // of a document hidden until the announcement consultation) at their clock.
        if let (Actor::Patient(_), Some(patient)) = (ctx.actor(), ctx.launch_patient()) {
            if reqs.iter().any(|r| r.resource_type == "Communication") {
                self.write_due_notices(Some(patient), ctx.now_us())?;
            }
        }
        self.audited_read(ctx, interaction, |conn, facts| {
            self.search_in(conn, ctx, reqs, count, facts)
        })
    }

    fn search_in(
        &self,
        conn: &mut storage::Conn,
        ctx: &RequestContext,
        reqs: &[crate::fhir::search_query::SearchRequest],
        count: i64,
        facts: &mut Facts,
    ) -> Result<SearchPage, FhirError> {
        let mut refs: Vec<(String, String)> = Vec::new();
        for req in reqs {
            check_type(&req.resource_type)?;
            let mut req = req.clone();
            if let Some(patient) = self.access.check_search(ctx, &req)? {
                req.clauses
                    .push(crate::fhir::search_query::patient_restriction(
                        &req.resource_type,
                        &patient,
                    )?);
            }
            let req = &req;
            let ids = storage::search::matching_ids(conn, req)?;
            refs.extend(ids.into_iter().map(|id| (req.resource_type.clone(), id)));
        }
        if self.access.checks_each_resource(ctx) {
            refs = self
                .visible_rows(conn, ctx, &refs, facts)?
                .into_iter()
                .map(|v| (v.resource_type.clone(), v.id.clone()))
                .collect();
            // What was refused is traced; what is shown is traced by the page below.
            facts.trail.retain(|d| !d.allowed);
        }
        let total = refs.len() as i64;
        let first: Vec<(String, String)> =
            refs.iter().take(count.max(0) as usize).cloned().collect();
        let snapshot = if total > count && count > 0 {
            let sid = uuid::Uuid::new_v4().to_string();
            let query = reqs
                .first()
                .map(|r| format!("{}?{}", r.resource_type, r.canonical_query))
                .unwrap_or_default();
            let snapshot = storage::search::Snapshot {
                search_id: &sid,
                owner: &ctx.principal(),
                query: &query,
                refs: &refs,
                page_size: count,
            };
            storage::search::with_relaxed_sync(conn, |conn| {
                Storage::write_on(conn, |c| storage::search::save_snapshot(c, &snapshot))
            })?;
            Some(sid)
        } else {
            None
        };
        let entries = self.visible_rows(conn, ctx, &first, facts)?;
        let (included, included_truncated) = match reqs.first() {
            Some(req) => self.includes(conn, ctx, req, &entries, facts)?,
            None => (Vec::new(), false),
        };
        Ok(SearchPage {
            entries,
            included,
            included_truncated,
            total,
            snapshot,
            offset: 0,
            count,
        })
    }

    /// A later page of a search, read from its snapshot; 410 when it expired, never was,
    /// or was run by someone else. `parse` turns the search as stored (`Type`, `query`)
    /// back into a request, whose includes are brought in for this page too.
    pub fn search_page(
        &self,
        ctx: &RequestContext,
        search_id: &str,
        offset: i64,
        count: Option<i64>,
        parse: impl FnOnce(&str, &str) -> Result<crate::fhir::search_query::SearchRequest, FhirError>,
    ) -> Result<(SearchPage, crate::fhir::search_query::SearchRequest), FhirError> {
        let gone = || {
            FhirError::Gone(
                "this search result expired or never existed; run the search again".into(),
            )
        };
        self.audited_read(ctx, "search-type", |conn, facts| {
            let snap =
                storage::search::snapshot_page(conn, search_id, &ctx.principal(), offset, count)?
                    .ok_or_else(gone)?;
            let (rtype, query) = snap.query.split_once('?').unwrap_or((&snap.query, ""));
            let req = parse(rtype, query)?;
            let entries = self.visible_rows(conn, ctx, &snap.refs, facts)?;
            let (included, included_truncated) = self.includes(conn, ctx, &req, &entries, facts)?;
            let page = SearchPage {
                entries,
                included,
                included_truncated,
                total: snap.total,
                snapshot: Some(search_id.to_string()),
                offset,
                count: snap.page_size,
            };
            Ok((page, req))
        })
    }

    /// The current versions of `refs` that exist, are not deleted and pass the access
    /// point for a search, in the order given.
    fn visible_rows(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        refs: &[(String, String)],
        facts: &mut Facts,
    ) -> Result<Vec<Visible<StoredResource>>, FhirError> {
        let rows: Vec<StoredResource> = storage::search::current_rows_of(conn, refs)?
            .into_iter()
            .filter(|r| !r.deleted)
            .map(from_current)
            .collect();
        self.decide_reads(conn, ctx, Interaction::Search, rows, facts)
    }

    /// The resources `_include` and `_revinclude` bring in for `matches` (each through the
    /// access point); with `:iterate`, also for what was included, three levels at most;
    /// at most `max-included` of them (then `true`: the page says it may be cut).
    fn includes(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        req: &crate::fhir::search_query::SearchRequest,
        matches: &[Visible<StoredResource>],
        facts: &mut Facts,
    ) -> Result<(Vec<Visible<StoredResource>>, bool), FhirError> {
        use std::collections::{BTreeMap, HashSet};
        if req.includes.is_empty() && req.revincludes.is_empty() {
            return Ok((Vec::new(), false));
        }
        // At most `cap` resources come in; at most ten times that many candidates are
        // decided (the cost bound when most of them are hidden from the requester).
        let cap = self.limits.max_included;
        let cost_cap = cap.saturating_mul(10);
        let mut decided = 0usize;
        let mut seen: HashSet<(String, String)> = matches
            .iter()
            .map(|m| (m.resource_type.clone(), m.id.clone()))
            .collect();
        let mut included: Vec<Visible<StoredResource>> = Vec::new();
        let mut frontier: Vec<(String, String)> = seen.iter().cloned().collect();
        for round in 0..3 {
            let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let by_type = |t: &str| {
                frontier
                    .iter()
                    .filter(|f| f.0 == t)
                    .map(|f| f.1.clone())
                    .collect::<Vec<_>>()
            };
            for inc in req.includes.iter().filter(|i| round == 0 || i.iterate) {
                let ids = by_type(&inc.source_type);
                for (t, id) in
                    storage::search::reference_targets(conn, &inc.source_type, &ids, &inc.param)?
                {
                    if inc.target_type.as_deref().is_none_or(|want| want == t)
                        && resource_types::is_supported(&t)
                    {
                        wanted.entry(t).or_default().push(id);
                    }
                }
            }
            for inc in req.revincludes.iter().filter(|i| round == 0 || i.iterate) {
                let mut types: Vec<&str> = frontier.iter().map(|f| f.0.as_str()).collect();
                types.sort();
                types.dedup();
                for t in types {
                    if inc.target_type.as_deref().is_some_and(|want| want != t) {
                        continue;
                    }
                    for id in storage::search::referrers(
                        conn,
                        &inc.source_type,
                        &inc.param,
                        t,
                        &by_type(t),
                    )? {
                        wanted.entry(inc.source_type.clone()).or_default().push(id);
                    }
                }
            }
            let mut next = Vec::new();
            'types: for (t, mut ids) in wanted {
                ids.retain(|id| !seen.contains(&(t.clone(), id.clone())));
                ids.sort();
                ids.dedup();
                for chunk in ids.chunks(64) {
                    if included.len() >= cap || decided >= cost_cap {
                        break 'types;
                    }
                    decided += chunk.len();
                    let rows: Vec<StoredResource> = storage::search::current_rows(conn, &t, chunk)?
                        .into_iter()
                        .filter(|r| !r.deleted)
                        .map(from_current)
                        .collect();
                    for v in self.decide_reads(conn, ctx, Interaction::Search, rows, facts)? {
                        if included.len() < cap
                            && seen.insert((v.resource_type.clone(), v.id.clone()))
                        {
                            next.push((v.resource_type.clone(), v.id.clone()));
                            included.push(v);
                        }
                    }
                }
            }
            if next.is_empty() || included.len() >= cap || decided >= cost_cap {
                break;
            }
            frontier = next;
        }
        // Said from what the requester may see only (a full page of includes), never from
        // how many candidates there were: hidden ones must not show, even as a count.
        let truncated = included.len() >= cap;
        Ok((included, truncated))
    }
}

fn from_current(row: storage::CurrentRow) -> StoredResource {
    StoredResource {
        resource_type: row.resource_type,
        id: row.id,
        version_id: row.version_id,
        last_updated_us: row.last_updated,
        deleted: row.deleted,
        content: row.content,
        method: None,
    }
}

/// An id that cannot be a FHIR id names nothing here (and never reaches the database).
fn check_id(rtype: &str, id: &str) -> Result<(), FhirError> {
    if resource_types::is_valid_id(id) {
        Ok(())
    } else {
        Err(not_found(rtype, id))
    }
}

fn from_version(row: storage::VersionRow) -> StoredResource {
    StoredResource {
        resource_type: row.resource_type,
        id: row.id,
        version_id: row.version_id,
        last_updated_us: row.last_updated,
        deleted: row.deleted,
        content: row.content,
        method: Some(row.method),
    }
}

/// The id of a resource created by the server: a UUID version 7 (time-ordered, 74 random
/// bits). Time order keeps the primary keys and the index rows of new resources at the end
/// of their B-trees, so an ingest dirties a few pages instead of one per resource and
/// index (random v4 UUIDs made SQLite's ingest mostly page writes).
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn not_found(rtype: &str, id: &str) -> FhirError {
    FhirError::NotFound(format!("{rtype}/{id} is not known"))
}

fn lost_race(rtype: &str, id: &str, if_match: Option<i64>) -> FhirError {
    match if_match {
        Some(v) => FhirError::PreconditionFailed(format!(
            "If-Match W/\"{v}\": {rtype}/{id} was changed by another request"
        )),
        None => FhirError::Conflict(format!(
            "{rtype}/{id} was changed by another request at the same time; retry"
        )),
    }
}

/// Whether two versions of a resource say the same thing (`meta.versionId` and
/// `meta.lastUpdated` aside, which every write sets).
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                v.as_object_mut().map(|o| o.remove("meta"));
            }
        }
        v
    };
    strip(a) == strip(b)
}

pub fn check_type(rtype: &str) -> Result<(), FhirError> {
    if resource_types::is_supported(rtype) {
        Ok(())
    } else {
        Err(FhirError::UnsupportedType(rtype.to_string()))
    }
}

/// Validates a resource posted to `/{rtype}` (its id, if any, is ignored).
fn validate_as(rtype: &str, resource: Value) -> Result<Value, FhirError> {
    check_resource_type(rtype, &resource)?;
    validate::validate(resource)
}

/// Validates a resource put to `/{rtype}/{id}`: its id must be that id.
fn validate_for_update(rtype: &str, id: &str, resource: Value) -> Result<Value, FhirError> {
    check_resource_type(rtype, &resource)?;
    if !resource_types::is_valid_id(id) {
        return Err(FhirError::BadRequest(format!(
            "'{id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"
        )));
    }
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
                format!("{rtype}.id"),
                format!("the resource id '{body_id}' does not match the id '{id}' in the URL"),
            )]))
        }
        None => {
            return Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
                format!("{rtype}.id"),
                "an update must carry the resource id",
            )]))
        }
    }
    validate::validate(resource)
}

fn check_resource_type(rtype: &str, resource: &Value) -> Result<(), FhirError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rtype => Ok(()),
        Some(t) => Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
            "resourceType",
            format!("a {t} was sent to the {rtype} endpoint"),
        )])),
        None => Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
            "resourceType",
            "the resource has no resourceType",
        )])),
    }
}

/// Sets the server-owned parts of a resource: id, meta.versionId, meta.lastUpdated.
fn stamp(resource: &mut Value, id: &str, version_id: i64, now_us: i64) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    // Rebuild the object so that `id` and `meta` come right after `resourceType`.
    let old = std::mem::take(obj);
    let mut meta = old
        .get("meta")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    meta.remove("versionId");
    meta.remove("lastUpdated");
    let mut new_meta = serde_json::Map::new();
    new_meta.insert("versionId".into(), json!(version_id.to_string()));
    new_meta.insert("lastUpdated".into(), json!(instant::format_us(now_us)));
    new_meta.extend(meta);
    obj.insert(
        "resourceType".into(),
        old.get("resourceType").cloned().unwrap_or(Value::Null),
    );
    obj.insert("id".into(), json!(id));
    obj.insert("meta".into(), Value::Object(new_meta));
    for (k, v) in old {
        if k != "resourceType" && k != "id" && k != "meta" {
            obj.insert(k, v);
        }
    }
}

/// The client registry: the OAuth client applications allowed to obtain tokens. Not FHIR
/// resources (no versions, no search, no access point): only the authorization server and
/// the `carnet client` admin command use it.
impl Repository {
    pub fn client(&self, client_id: &str) -> Result<Option<ClientRow>, FhirError> {
        let mut conn = self.storage.conn()?;
        storage::clients::get(&mut conn, client_id)
    }

    pub fn clients(&self) -> Result<Vec<ClientRow>, FhirError> {
        let mut conn = self.storage.conn()?;
        storage::clients::list(&mut conn)
    }

    pub fn put_client(&self, row: &ClientRow) -> Result<(), FhirError> {
        self.storage.write(|c| storage::clients::put(c, row))
    }

    /// Suspends (or resumes) a client; false when it is not registered.
    pub fn suspend_client(&self, client_id: &str, suspended: bool) -> Result<bool, FhirError> {
        self.storage
            .write(|c| storage::clients::set_suspended(c, client_id, suspended))
    }

    /// Records a client assertion's `jti` until `exp_us`; false if it was used before.
    pub fn use_assertion(
        &self,
        jti: &str,
        client_id: &str,
        exp_us: i64,
    ) -> Result<bool, FhirError> {
        let now = instant::now_us();
        self.storage
            .write(|c| storage::clients::use_assertion(c, jti, client_id, exp_us, now))
    }
}
