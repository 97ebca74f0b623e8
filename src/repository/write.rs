//! write: create (conditional too), update, patch and delete, each decided by the access
//! point before it reaches storage, traced in its own transaction, and followed there by the
//! write hooks features registered.

use serde_json::{json, Value};

use super::hooks::{HookTx, Written};
use super::notices::Notice;
use super::repo::{Repository, WriteOutcome, WriteStatus};
use super::rows::{
    check_id, check_type, from_current, lost_race, new_id, not_found, same_content, stamp,
    validate_as, validate_for_update,
};
use super::storage::{self, AnyConnection, Storage, WriteVersion};
use crate::access::{Facts, Interaction};
use crate::auth::{Permission, RequestContext};
use crate::error::FhirError;
use crate::fhir::instant;
use crate::fhir::search_query::SearchRequest;
use crate::resource::StoredResource;

impl Repository {
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
    pub(super) fn audited_write<T>(
        &self,
        ctx: &RequestContext,
        interaction: &str,
        f: impl FnOnce(&mut AnyConnection, &mut Facts) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let mut conn = self.storage.conn()?;
        let mut facts = Facts::new();
        let result = Storage::write_on(&mut conn, |c| {
            let out = f(c, &mut facts)?;
            facts.answered = true;
            self.audit_in(c, ctx, interaction, &facts)?;
            Ok(out)
        });
        // A refused write is traced after the rollback (and a professional's failed request
        // always leaves its requester the trace of what they asked).
        let professional = matches!(ctx.actor(), crate::auth::Actor::Practitioner(_));
        if result.is_err() && (professional || facts.trail.iter().any(|d| !d.allowed)) {
            facts.answered = false;
            facts.trail.retain(|d| !d.allowed);
            drop(conn);
            self.trace(ctx, interaction, &facts)?;
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
    pub(super) fn conditional_match(
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
    pub(super) fn write_in(
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
        facts.asked.get_or_insert_with(|| match method {
            "POST" => rtype.to_string(),
            _ => format!("{rtype}/{id}"),
        });
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
            (rtype, id),
            Some(&resource),
            current_stored.as_ref(),
            facts,
        );
        let mut decided = self.access.decided_write(
            rtype,
            id,
            Some(&resource),
            current_stored.as_ref(),
            decision.as_ref().err(),
        );
        self.label_as_document(conn, ctx, rtype, Some(&resource), &mut decided)?;
        facts.trail.push(decided);
        let receipt = decision?;
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
                        resource: receipt.admit(cur.clone())?,
                    });
                }
            }
        }
        let current_value = current_stored
            .as_ref()
            .filter(|c| !c.deleted)
            .map(StoredResource::json)
            .transpose()?;
        let mut resource = resource;
        for hook in self.hooks.all() {
            let mut tx = Tx { repo: self, conn };
            resource = hook.preparing(&mut tx, ctx, rtype, resource, current_value.as_ref())?;
        }
        let written = self.put_checked_opt(
            conn,
            Some(ctx),
            interaction,
            rtype,
            id,
            resource,
            current.as_ref(),
            method,
        )?;
        let Some(written) = written else {
            return Err(lost_race(rtype, id, if_match));
        };
        Ok(WriteOutcome {
            status: if interaction == Interaction::Update {
                WriteStatus::Updated
            } else {
                WriteStatus::Created
            },
            resource: receipt.admit(written)?,
        })
    }

    /// A Binary filed with a document is traced in that document's record, with its
    /// visibility labels (an INVISIBLE_PATIENT document's content is as hidden in the trail
    /// as the document).
    fn label_as_document(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        binary: Option<&Value>,
        decided: &mut crate::access::Decided,
    ) -> Result<(), FhirError> {
        let Some(doc) = binary
            .filter(|_| rtype == "Binary")
            .and_then(|b| b.pointer("/securityContext/reference"))
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit_once("DocumentReference/"))
            .map(|(_, id)| id.to_string())
        else {
            return Ok(());
        };
        let Some(row) = storage::current(conn, "DocumentReference", &doc)? else {
            return Ok(());
        };
        if row.deleted {
            return Ok(());
        }
        // Only a document the writer may see: the write's trace, which its writer sees,
        // must not tell whose record some other document is in. Decided aside (not traced).
        let mut scratch = Facts::new();
        let doc_row = from_current(row.clone());
        if self
            .decide_read(conn, ctx, Interaction::Read, doc_row, &mut scratch)?
            .is_err()
        {
            return Ok(());
        }
        let value: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
        // And it is in that document's record.
        decided
            .patients
            .extend(self.access.patients_of("DocumentReference", &value));
        decided.patients.sort();
        decided.patients.dedup();
        decided.labels.extend(
            crate::consent::Subject::of("DocumentReference", &value)
                .labels
                .into_iter()
                .filter(|(s, _)| s == crate::consent::TRE_A07)
                .map(|(_, c)| c),
        );
        decided.labels.sort();
        decided.labels.dedup();
        Ok(())
    }

    /// Writes `resource` as the next version after `current` (a decided write).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_checked(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        interaction: Interaction,
        rtype: &str,
        id: &str,
        resource: Value,
        current: &storage::CurrentRow,
        method: &str,
    ) -> Result<StoredResource, FhirError> {
        self.put_checked_opt(
            conn,
            Some(ctx),
            interaction,
            rtype,
            id,
            resource,
            Some(current),
            method,
        )?
        .ok_or_else(|| lost_race(rtype, id, None))
    }

    /// Writes `resource` as the next version after `current`, then runs the write hooks in
    /// the same transaction; None when a concurrent writer got there first. `ctx` is None
    /// for Carnet's own writes (its notices). The caller admits what was written.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_checked_opt(
        &self,
        conn: &mut AnyConnection,
        ctx: Option<&RequestContext>,
        interaction: Interaction,
        rtype: &str,
        id: &str,
        mut resource: Value,
        current: Option<&storage::CurrentRow>,
        method: &str,
    ) -> Result<Option<StoredResource>, FhirError> {
        let version_id = current.map_or(1, |r| r.version_id + 1);
        let now = instant::now_us();
        let writer = ctx.map(RequestContext::subject);
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
                writer: writer.as_deref(),
            },
            current.map(|r| r.version_id),
        )?;
        if !written {
            return Ok(None);
        }
        let stored = StoredResource {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id,
            last_updated_us: now,
            deleted: false,
            content,
            method: Some(method.to_string()),
        };
        let previous = current.filter(|c| !c.deleted).map(|c| c.content.as_str());
        self.run_hooks(conn, ctx, interaction, &stored, Some(&resource), previous)?;
        Ok(Some(stored))
    }

    /// Runs every registered write hook on a version just stored.
    pub(super) fn run_hooks(
        &self,
        conn: &mut AnyConnection,
        ctx: Option<&RequestContext>,
        interaction: Interaction,
        stored: &StoredResource,
        value: Option<&Value>,
        previous: Option<&str>,
    ) -> Result<(), FhirError> {
        let written = Written {
            ctx,
            interaction,
            resource: stored,
            value,
            previous,
        };
        for hook in self.hooks.all() {
            hook.written(&mut Tx { repo: self, conn }, &written)?;
        }
        Ok(())
    }

    pub(super) fn delete_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
        if_match: Option<i64>,
        facts: &mut Facts,
    ) -> Result<WriteOutcome, FhirError> {
        self.access.check_type(ctx, rtype, Permission::Delete)?;
        facts.asked.get_or_insert_with(|| format!("{rtype}/{id}"));
        let current = storage::current(conn, rtype, id)?.ok_or_else(|| not_found(rtype, id))?;
        let current_stored = from_current(current.clone());
        let decision = self.decide_write(
            conn,
            ctx,
            Interaction::Delete,
            (rtype, id),
            None,
            Some(&current_stored),
            facts,
        );
        let mut decided = self.access.decided_write(
            rtype,
            id,
            None,
            Some(&current_stored),
            decision.as_ref().err(),
        );
        let old = current_stored.json().ok();
        self.label_as_document(conn, ctx, rtype, old.as_ref(), &mut decided)?;
        facts.trail.push(decided);
        let receipt = decision?;
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
                return Ok(WriteOutcome {
                    status: WriteStatus::AlreadyDeleted,
                    resource: receipt.admit(current_stored)?,
                });
            }
            doc["status"] = json!("entered-in-error");
            let written = self.put_checked(
                conn,
                ctx,
                Interaction::Delete,
                rtype,
                id,
                doc,
                &current,
                "PUT",
            )?;
            return Ok(WriteOutcome {
                status: WriteStatus::Deleted,
                resource: receipt.admit(written)?,
            });
        }
        if let Some(expected) = if_match {
            if current.deleted || current.version_id != expected {
                return Err(FhirError::PreconditionFailed(format!(
                    "If-Match W/\"{expected}\" does not match the current version of {rtype}/{id}"
                )));
            }
        }
        if current.deleted {
            return Ok(WriteOutcome {
                status: WriteStatus::AlreadyDeleted,
                resource: receipt.admit(current_stored)?,
            });
        }
        let version_id = current.version_id + 1;
        let now = instant::now_us();
        let writer = Some(ctx.subject());
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
                writer: writer.as_deref(),
            },
            Some(current.version_id),
        )?;
        if !written {
            return Err(lost_race(rtype, id, if_match));
        }
        let stored = StoredResource {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id,
            last_updated_us: now,
            deleted: true,
            content: String::new(),
            method: Some("DELETE".into()),
        };
        let previous = (!current.deleted).then_some(current.content.as_str());
        self.run_hooks(
            conn,
            Some(ctx),
            Interaction::Delete,
            &stored,
            None,
            previous,
        )?;
        let resource = receipt.admit(stored)?;
        Ok(WriteOutcome {
            status: WriteStatus::Deleted,
            resource,
        })
    }
}

/// The repository's operations offered to write hooks, on the write's connection.
struct Tx<'a> {
    repo: &'a Repository,
    conn: &'a mut AnyConnection,
}

impl HookTx for Tx<'_> {
    fn search_restriction(
        &mut self,
        ctx: &RequestContext,
        search: &SearchRequest,
    ) -> Result<Option<String>, FhirError> {
        self.repo.access.search_restriction(ctx, search)
    }

    fn notify(&mut self, notices: Vec<Notice>) -> Result<(), FhirError> {
        self.repo
            .write_notices(self.conn, notices, instant::now_us())
            .map(|_| ())
    }

    fn patients_of(&self, rtype: &str, resource: &Value) -> Vec<String> {
        self.repo.access.patients_of(rtype, resource)
    }

    fn renew_rules_stamp(&mut self, patient: &str) -> Result<(), FhirError> {
        storage::notifications::renew_rules_stamp(self.conn, patient)
    }

    fn record_subscription(
        &mut self,
        ctx: &RequestContext,
        id: &str,
        watch: Option<(String, String, String)>,
    ) -> Result<(), FhirError> {
        self.repo.record_subscription(self.conn, ctx, id, watch)
    }

    fn match_subscriptions(&mut self, written: &StoredResource) -> Result<(), FhirError> {
        self.repo.match_subscriptions(self.conn, written)
    }
}
