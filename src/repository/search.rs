//! search: searches (one type or several), later pages from a snapshot, and
//! `_include`/`_revinclude`, every match and include through the access point before it is
//! counted.

use super::repo::{Repository, SearchPage};
use super::rows::{check_type, from_current};
use super::storage::{self, AnyConnection, Storage};
use crate::access::{Facts, Interaction, Visible};
use crate::auth::{Actor, RequestContext};
use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::resource::StoredResource;

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
            facts.asked = Some(
                reqs.iter()
                    .map(|r| format!("{}?{}", r.resource_type, r.canonical_query))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            self.search_in(conn, ctx, reqs, count, facts)
        })
    }

    pub(super) fn search_in(
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
    pub(super) fn visible_rows(
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
    pub(super) fn includes(
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
