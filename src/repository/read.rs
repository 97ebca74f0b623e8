//! read: read, vread and history, each entry through the access point and traced.

use super::repo::{HistoryPage, HistoryRequest, Repository};
use super::rows::{check_id, check_type, from_current, from_version, not_found};
use super::storage::{self, AnyConnection, HistoryQuery};
use crate::access::{Facts, Interaction, Visible};
use crate::auth::{Permission, RequestContext};
use crate::error::FhirError;
use crate::resource::StoredResource;

/// Versions read at once while filling a history page.
const HISTORY_BATCH: i64 = 100;
/// Most versions looked at for one history page (hidden ones included).
const MAX_HISTORY_SCAN: i64 = 2_000;

impl Repository {
    pub fn read(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
    ) -> Result<Visible<StoredResource>, FhirError> {
        self.audited_read(ctx, "read", |conn, facts| {
            facts.asked = Some(format!("{rtype}/{id}"));
            self.read_in(conn, ctx, rtype, id, facts)
        })
    }

    /// A read answered at once on the calling (async) thread when the database allows it
    /// ([`Storage::conn_now`](super::storage::Storage::conn_now)); None: call
    /// [`read`](Self::read) on the blocking pool.
    pub fn read_now(
        &self,
        ctx: &RequestContext,
        rtype: &str,
        id: &str,
    ) -> Option<Result<Visible<StoredResource>, FhirError>> {
        // Only under an HTTP request, whose response awaits the trace: never waiting for
        // the log's writer on the worker.
        ctx.pending_traces()?;
        let conn = self.storage.conn_now()?;
        // A panic here fails this request, as on the blocking pool, never the worker.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.audited_read_on(conn, ctx, "read", |conn, facts| {
                facts.asked = Some(format!("{rtype}/{id}"));
                self.read_in(conn, ctx, rtype, id, facts)
            })
        }));
        Some(read.unwrap_or_else(|_| Err(FhirError::Internal("the read failed".into()))))
    }

    pub(super) fn read_in(
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
            facts.asked = Some(format!("{rtype}/{id}/_history/{vid}"));
            self.vread_in(conn, ctx, rtype, id, vid, facts)
        })
    }

    pub(super) fn vread_in(
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
        let missing = || FhirError::hidden(rtype, &format!("{id}/_history/{vid}"));
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
            facts.asked = Some(match (&req.resource_type, &req.id) {
                (Some(t), Some(i)) => format!("{t}/{i}/_history"),
                (Some(t), None) => format!("{t}/_history"),
                _ => "_history".to_string(),
            });
            self.history_in(conn, ctx, req, facts)
        })
    }

    pub(super) fn history_in(
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
        // Hidden versions are skipped, not counted: a page holds `count` visible entries
        // (fewer only on the last page), so that paging over what a requester may not see
        // never serves an empty page with a `next` link. At most `MAX_HISTORY_SCAN` versions
        // are looked at per page.
        let mut entries = Vec::new();
        let mut cursor = req.cursor;
        let mut scanned: i64 = 0;
        let mut next_cursor = None;
        'pages: loop {
            let batch = (req.count + 1).max(HISTORY_BATCH);
            let rows = storage::history(
                conn,
                &HistoryQuery {
                    resource_type: req.resource_type.clone(),
                    id: req.id.clone(),
                    since_us: req.since_us,
                    before_seq: cursor,
                    limit: batch,
                },
            )?;
            let exhausted = (rows.len() as i64) < batch;
            for row in rows {
                if entries.len() as i64 == req.count || scanned == MAX_HISTORY_SCAN {
                    // Something is left after what this page holds.
                    next_cursor = cursor;
                    break 'pages;
                }
                scanned += 1;
                cursor = Some(row.seq);
                let seen = self.decide_reads(
                    conn,
                    ctx,
                    Interaction::History,
                    vec![from_version(row)],
                    facts,
                )?;
                entries.extend(seen);
            }
            if exhausted {
                break;
            }
        }
        Ok(HistoryPage {
            entries,
            next_cursor,
        })
    }
}
