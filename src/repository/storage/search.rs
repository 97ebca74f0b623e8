//! storage::search: a search request turned into one SQL query over the index tables,
//! on either backend, and the snapshots that keep multi-page results stable.

use diesel::prelude::*;

use super::schema::{resources, search_snapshot};
use super::sql::{date_condition, Sql};
use super::{db_err, AnyConnection, CurrentRow};
use crate::error::FhirError;
use crate::fhir::search_params::{ParamType, REGISTRY};
use crate::fhir::search_query::{Clause, Kind, SearchRequest, SortKey, Value};

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The index table holding the rows of a parameter.
fn table_of(rtype: &str, param: &str) -> &'static str {
    if param.ends_with(":text") {
        return "search_string";
    }
    match REGISTRY
        .get(rtype, param.split(':').next().unwrap_or(param))
        .map(|p| p.kind)
    {
        Some(ParamType::String) => "search_string",
        Some(ParamType::Date) => "search_date",
        Some(ParamType::Reference) => "search_reference",
        _ => "search_token",
    }
}

/// Whether a clause narrows by equality (a token code, a reference, an id): those drive the
/// query through their index; range clauses (dates, string prefixes) are then checked per
/// candidate, which is far cheaper than materialising every resource in a date range.
fn is_selective(c: &Clause) -> bool {
    match &c.kind {
        Kind::Id | Kind::Reference | Kind::Chain(_) | Kind::AnyOf(_) => true,
        Kind::Token => {
            !c.negate
                && c.values
                    .iter()
                    .all(|v| matches!(v, Value::Token { code: Some(_), .. }))
        }
        _ => false,
    }
}

fn clause_condition(sql: &mut Sql, rtype: &str, c: &Clause, r: &str) -> String {
    clause_condition_as(sql, rtype, c, r, false)
}

/// `correlated`: written as EXISTS on the candidate's own index rows instead of `id IN`.
fn clause_condition_as(
    sql: &mut Sql,
    rtype: &str,
    c: &Clause,
    r: &str,
    correlated: bool,
) -> String {
    match &c.kind {
        Kind::Id => {
            let list: Vec<String> = c
                .values
                .iter()
                .filter_map(|v| {
                    if let Value::Id(id) = v {
                        Some(sql.text(id))
                    } else {
                        None
                    }
                })
                .collect();
            format!("{r}.id IN ({})", list.join(", "))
        }
        Kind::LastUpdated => {
            let (start_col, end_col) = (
                format!("{r}.last_updated"),
                format!("({r}.last_updated + 1)"),
            );
            let alts: Vec<String> = c
                .values
                .iter()
                .filter_map(|v| match v {
                    Value::Date { prefix, start, end } => Some(date_condition(
                        sql, &start_col, &end_col, *prefix, *start, *end,
                    )),
                    _ => None,
                })
                .collect();
            format!("({})", alts.join(" OR "))
        }
        Kind::Missing(missing) => {
            let table = table_of(rtype, &c.param);
            let t = sql.text(rtype);
            let p = sql.text(&c.param);
            format!(
                "{r}.id {}IN (SELECT x.id FROM {table} x WHERE x.resource_type = {t} AND x.param = {p})",
                if *missing { "NOT " } else { "" }
            )
        }
        Kind::AnyOf(clauses) => {
            let alts: Vec<String> = clauses
                .iter()
                .map(|c| clause_condition(sql, rtype, c, r))
                .collect();
            format!("({})", alts.join(" OR "))
        }
        Kind::Chain(chains) => {
            // Each nesting level gets its own aliases (r1, x1…) so inner conditions bind
            // to the referenced resource.
            let depth = r.trim_start_matches('r').parse::<u32>().unwrap_or(0) + 1;
            let (rr, xx) = (format!("r{depth}"), format!("ref{depth}"));
            let p = sql.text(&c.param);
            let alts: Vec<String> = chains
                .iter()
                .map(|(target, inner)| {
                    let t = sql.text(target);
                    let cond = clause_condition(sql, target, inner, &rr);
                    format!(
                        "EXISTS (SELECT 1 FROM resources {rr} WHERE {rr}.resource_type = {t} AND {rr}.id = {xx}.target_id AND ({xx}.target_type = {rr}.resource_type OR {xx}.target_type = '') AND NOT {rr}.deleted AND {cond})"
                    )
                })
                .collect();
            format!(
                "EXISTS (SELECT 1 FROM search_reference {xx} WHERE {xx}.resource_type = {r}.resource_type AND {xx}.id = {r}.id AND {xx}.param = {p} AND ({}))",
                alts.join(" OR ")
            )
        }
        Kind::Has { source_type, inner } => {
            let depth = r.trim_start_matches('r').parse::<u32>().unwrap_or(0) + 1;
            let (rr, hh) = (format!("r{depth}"), format!("has{depth}"));
            let st = sql.text(source_type);
            let p = sql.text(&c.param);
            let cond = clause_condition(sql, source_type, inner, &rr);
            format!(
                "EXISTS (SELECT 1 FROM search_reference {hh} JOIN resources {rr} ON {rr}.resource_type = {hh}.resource_type AND {rr}.id = {hh}.id \
                 WHERE {hh}.resource_type = {st} AND {hh}.param = {p} AND {hh}.target_type = {r}.resource_type AND {hh}.target_id = {r}.id \
                 AND NOT {rr}.deleted AND {cond})"
            )
        }
        Kind::Token | Kind::String | Kind::Date | Kind::Reference => {
            let table = match c.kind {
                Kind::Token => "search_token",
                Kind::String => "search_string",
                Kind::Date => "search_date",
                _ => "search_reference",
            };
            let t = sql.text(rtype);
            let p = sql.text(&c.param);
            let alts: Vec<String> = c
                .values
                .iter()
                .map(|v| match v {
                    Value::Token { system, code } => {
                        let mut parts = Vec::new();
                        if let Some(s) = system {
                            parts.push(format!("x.system = {}", sql.text(s)));
                        }
                        if let Some(cd) = code {
                            parts.push(format!("x.code = {}", sql.text(cd)));
                        }
                        if parts.is_empty() {
                            "1 = 1".to_string()
                        } else {
                            parts.join(" AND ")
                        }
                    }
                    Value::StringPrefix(s) => {
                        if sql.postgres {
                            // text_pattern_ops index: LIKE 'prefix%' uses it.
                            format!(
                                "x.value_norm LIKE {} ESCAPE '\\'",
                                sql.text(&format!("{}%", like_escape(s)))
                            )
                        } else {
                            // SQLite's LIKE cannot use the index; a byte range can.
                            let lo = sql.text(s);
                            let hi = sql.text(&format!("{s}\u{10FFFF}"));
                            format!("(x.value_norm >= {lo} AND x.value_norm < {hi})")
                        }
                    }
                    Value::StringContains(s) => format!(
                        "x.value_norm LIKE {} ESCAPE '\\'",
                        sql.text(&format!("%{}%", like_escape(s)))
                    ),
                    Value::StringExact(s) => format!("x.value_exact = {}", sql.text(s)),
                    Value::Date { prefix, start, end } => {
                        date_condition(sql, "x.start_us", "x.end_us", *prefix, *start, *end)
                    }
                    Value::Reference {
                        target_type,
                        target_id,
                    } => match target_type {
                        Some(t) => {
                            let a = sql.text(t);
                            let b = sql.text(target_id);
                            format!("(x.target_type = {a} AND x.target_id = {b})")
                        }
                        None => format!("x.target_id = {}", sql.text(target_id)),
                    },
                    Value::ReferenceUrl(u) => format!("x.url = {}", sql.text(u)),
                    Value::Id(_) => "1 = 0".to_string(),
                })
                .map(|a| format!("({a})"))
                .collect();
            // `id IN (…)` rather than a correlated EXISTS: the index of the most selective
            // clause then drives the query instead of a scan of every resource of the type.
            if correlated {
                format!(
                    "{}EXISTS (SELECT 1 FROM {table} x WHERE x.resource_type = {t} AND x.id = {r}.id AND x.param = {p} AND ({}))",
                    if c.negate { "NOT " } else { "" },
                    alts.join(" OR ")
                )
            } else {
                format!(
                    "{r}.id {}IN (SELECT x.id FROM {table} x WHERE x.resource_type = {t} AND x.param = {p} AND ({}))",
                    if c.negate { "NOT " } else { "" },
                    alts.join(" OR ")
                )
            }
        }
    }
}

/// The ids of every live resource matching `req`, in the requested order.
pub fn matching_ids(
    conn: &mut AnyConnection,
    req: &SearchRequest,
) -> Result<Vec<String>, FhirError> {
    if req.resource_type == super::access_log::TYPE {
        return super::access_log::matching_ids(conn, req);
    }
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
        postgres: matches!(conn, AnyConnection::Postgresql(_)),
    };
    let t = sql.text(&req.resource_type);
    let mut conditions = vec![
        format!("r.resource_type = {t}"),
        "NOT r.deleted".to_string(),
    ];
    // Selective clauses first, as `IN` (they drive); the others as per-candidate checks. With
    // no selective clause, the first one drives.
    let mut ordered: Vec<&Clause> = req.clauses.iter().filter(|c| is_selective(c)).collect();
    let drivers = ordered.len().max(1);
    ordered.extend(req.clauses.iter().filter(|c| !is_selective(c)));
    for (i, c) in ordered.into_iter().enumerate() {
        conditions.push(clause_condition_as(
            &mut sql,
            &req.resource_type,
            c,
            "r",
            i >= drivers,
        ));
    }
    let mut order: Vec<String> = Vec::new();
    for (k, desc) in &req.sort {
        let dir = if *desc { "DESC" } else { "ASC" };
        match k {
            SortKey::Id => order.push(format!("r.id {dir}")),
            SortKey::LastUpdated => order.push(format!("r.last_updated {dir}")),
            SortKey::Param(param, kind) => {
                // The smallest value ascending, the largest descending; no value sorts last.
                let (table, col) = match kind {
                    ParamType::String => ("search_string", "value_norm"),
                    ParamType::Date => ("search_date", if *desc { "end_us" } else { "start_us" }),
                    ParamType::Reference => ("search_reference", "url"),
                    _ => ("search_token", "code"),
                };
                let agg = if *desc { "MAX" } else { "MIN" };
                let p = sql.text(param);
                let expr = format!("(SELECT {agg}(s.{col}) FROM {table} s WHERE s.resource_type = r.resource_type AND s.id = r.id AND s.param = {p})");
                order.push(format!("CASE WHEN {expr} IS NULL THEN 1 ELSE 0 END ASC"));
                let p2 = sql.text(param);
                order.push(format!("(SELECT {agg}(s.{col}) FROM {table} s WHERE s.resource_type = r.resource_type AND s.id = r.id AND s.param = {p2}) {dir}"));
            }
        }
    }
    order.push("r.id ASC".into());
    sql.text = format!(
        "SELECT r.id AS id FROM resources r WHERE {} ORDER BY {}",
        conditions.join(" AND "),
        order.join(", ")
    );
    sql.load_ids(conn)
}

/// The current rows of `ids` (of one type), in the order given; missing ones skipped.
pub fn current_rows(
    conn: &mut AnyConnection,
    rtype: &str,
    ids: &[String],
) -> Result<Vec<CurrentRow>, FhirError> {
    if rtype == super::access_log::TYPE {
        return super::access_log::current_rows(conn, ids);
    }
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let rows: Vec<CurrentRow> = resources::table
            .filter(resources::resource_type.eq(rtype))
            .filter(resources::id.eq_any(chunk))
            .select(CurrentRow::as_select())
            .load(conn)
            .map_err(db_err)?;
        out.extend(rows);
    }
    let pos: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    out.sort_by_key(|r| pos.get(r.id.as_str()).copied().unwrap_or(usize::MAX));
    Ok(out)
}

/// How long a snapshot stays pageable.
const SNAPSHOT_TTL_US: i64 = 3600 * 1_000_000;

/// Runs `f` with SQLite's `synchronous = NORMAL` on this connection (no fsync at commit in
/// WAL mode; a power loss may drop the latest commits, never corrupt): for search
/// snapshots, which a client can always recreate. Restores FULL afterwards.
pub fn with_relaxed_sync<T>(
    conn: &mut super::Conn,
    f: impl FnOnce(&mut super::Conn) -> Result<T, FhirError>,
) -> Result<T, FhirError> {
    use diesel::connection::SimpleConnection;
    let sqlite = matches!(&**conn, AnyConnection::Sqlite(_));
    if sqlite {
        conn.batch_execute("PRAGMA synchronous = NORMAL")
            .map_err(db_err)?;
    }
    let result = f(conn);
    if sqlite {
        conn.batch_execute("PRAGMA synchronous = FULL")
            .map_err(db_err)?;
    }
    result
}

/// A stored search result: who ran it, and the search as understood (`Type?query`).
pub struct Snapshot<'a> {
    pub search_id: &'a str,
    pub owner: &'a str,
    pub query: &'a str,
    pub refs: &'a [(String, String)],
    pub page_size: i64,
}

/// A page read back from a snapshot.
pub struct SnapshotPage {
    pub refs: Vec<(String, String)>,
    pub total: i64,
    /// The search as understood when it ran (`Type?query`).
    pub query: String,
    pub page_size: i64,
}

/// Keeps the ordered references of a result for its later pages (and drops expired ones).
pub fn save_snapshot(conn: &mut AnyConnection, snapshot: &Snapshot) -> Result<(), FhirError> {
    let refs = snapshot.refs;
    let now = crate::fhir::instant::now_us();
    diesel::delete(
        search_snapshot::table.filter(search_snapshot::created_us.lt(now - SNAPSHOT_TTL_US)),
    )
    .execute(conn)
    .map_err(db_err)?;
    let text: String = refs.iter().map(|(t, id)| format!("{t}/{id}\n")).collect();
    diesel::insert_into(search_snapshot::table)
        .values((
            search_snapshot::search_id.eq(snapshot.search_id),
            search_snapshot::created_us.eq(now),
            search_snapshot::total.eq(refs.len() as i64),
            search_snapshot::refs.eq(text),
            search_snapshot::owner.eq(snapshot.owner),
            search_snapshot::query.eq(snapshot.query),
            search_snapshot::page_size.eq(snapshot.page_size),
        ))
        .execute(conn)
        .map_err(db_err)?;
    Ok(())
}

/// A page of a snapshot, or None when it expired, never existed, or belongs to someone
/// other than `owner` (the three are told apart to nobody). Pages are cut as the first
/// one was: `offset` must fall on a page boundary and `count`, when given, must be the
/// page size the search ran with; anything else is an edited link (400).
pub fn snapshot_page(
    conn: &mut AnyConnection,
    search_id: &str,
    owner: &str,
    offset: i64,
    count: Option<i64>,
) -> Result<Option<SnapshotPage>, FhirError> {
    let now = crate::fhir::instant::now_us();
    let found: Option<(i64, String, String, i64)> = search_snapshot::table
        .filter(search_snapshot::search_id.eq(search_id))
        .filter(search_snapshot::owner.eq(owner))
        .filter(search_snapshot::created_us.ge(now - SNAPSHOT_TTL_US))
        .select((
            search_snapshot::total,
            search_snapshot::refs,
            search_snapshot::query,
            search_snapshot::page_size,
        ))
        .get_result(conn)
        .optional()
        .map_err(db_err)?;
    let Some((total, refs, query, page_size)) = found else {
        return Ok(None);
    };
    let edited = || {
        FhirError::BadRequest(
            "this page link was edited: use the links of the Bundle as given".into(),
        )
    };
    if page_size < 1
        || count.is_some_and(|c| c != page_size)
        || offset < 0
        || offset % page_size != 0
        || offset >= total
    {
        return Err(edited());
    }
    let page = refs
        .lines()
        .skip(offset as usize)
        .take(page_size as usize)
        .filter_map(|l| {
            l.split_once('/')
                .map(|(t, id)| (t.to_string(), id.to_string()))
        })
        .collect();
    Ok(Some(SnapshotPage {
        refs: page,
        total,
        query,
        page_size,
    }))
}

/// The current rows of `refs` (any types), in the order given; missing ones skipped.
pub fn current_rows_of(
    conn: &mut AnyConnection,
    refs: &[(String, String)],
) -> Result<Vec<CurrentRow>, FhirError> {
    let mut types: Vec<&str> = refs.iter().map(|r| r.0.as_str()).collect();
    types.sort();
    types.dedup();
    let mut rows = Vec::with_capacity(refs.len());
    for t in types {
        let ids: Vec<String> = refs
            .iter()
            .filter(|r| r.0 == t)
            .map(|r| r.1.clone())
            .collect();
        rows.extend(current_rows(conn, t, &ids)?);
    }
    let pos: std::collections::HashMap<(&str, &str), usize> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.0.as_str(), r.1.as_str()), i))
        .collect();
    rows.sort_by_key(|r| {
        pos.get(&(r.resource_type.as_str(), r.id.as_str()))
            .copied()
            .unwrap_or(usize::MAX)
    });
    Ok(rows)
}

/// The (type, id) targets of the reference parameter `param` of resources `rtype/ids`.
pub fn reference_targets(
    conn: &mut AnyConnection,
    rtype: &str,
    ids: &[String],
    param: &str,
) -> Result<Vec<(String, String)>, FhirError> {
    use super::schema::search_reference as sr;
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, String)> = sr::table
            .filter(sr::resource_type.eq(rtype))
            .filter(sr::id.eq_any(chunk))
            .filter(sr::param.eq(param))
            .select((sr::target_type, sr::target_id))
            .load(conn)
            .map_err(db_err)?;
        // (Filtered here: a `target_id <> ''` condition steers SQLite away from the primary key.)
        out.extend(rows.into_iter().filter(|(_, id)| !id.is_empty()));
    }
    Ok(out)
}

/// Ids of the `source_type` resources whose reference `param` points at `target_type/ids`.
pub fn referrers(
    conn: &mut AnyConnection,
    source_type: &str,
    param: &str,
    target_type: &str,
    ids: &[String],
) -> Result<Vec<String>, FhirError> {
    use super::schema::search_reference as sr;
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<String> = sr::table
            .filter(sr::resource_type.eq(source_type))
            .filter(sr::param.eq(param))
            .filter(sr::target_type.eq(target_type))
            .filter(sr::target_id.eq_any(chunk))
            .select(sr::id)
            .distinct()
            .load(conn)
            .map_err(db_err)?;
        out.extend(rows);
    }
    Ok(out)
}
