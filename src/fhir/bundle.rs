//! bundle: the Bundles Carnet answers with — searchset (paging links, `search.mode`, the
//! outcome of ignored parameters, `total` as asked), history, and batch/transaction
//! responses — built from stored resources and plain values, with no HTTP and no SQL.
//! What goes in was decided by the access point before it reached here.

use serde_json::{json, Value};

use super::instant;
use super::search_query::{SearchRequest, Total};
use super::subset::{self, Subset};
use crate::error::FhirError;
use crate::resource::StoredResource;

/// How a searchset is rendered: the parameters it ignored, whether it carries `total`,
/// and what is kept of each match (`_summary`, `_elements`).
pub struct Shape<'a> {
    pub ignored: &'a [String],
    pub with_total: bool,
    pub subset: Option<&'a Subset>,
}

impl<'a> Shape<'a> {
    /// As `search` asks, listing `ignored` parameters in the Bundle's outcome.
    pub fn of(search: &'a SearchRequest, ignored: &'a [String]) -> Self {
        Shape {
            ignored,
            with_total: search.total != Total::None || search.count_only,
            subset: search.subset.as_ref(),
        }
    }

    /// Every match whole, with its total (a search over several types not shaped by one).
    pub fn plain() -> Shape<'static> {
        Shape {
            ignored: &[],
            with_total: true,
            subset: None,
        }
    }
}

/// Where a page sits in its search: the snapshot later pages are read from (if any), the
/// page's offset and size, and the total after the access point.
pub struct Paging<'a> {
    pub snapshot: Option<&'a str>,
    pub offset: i64,
    pub count: i64,
    pub total: i64,
}

/// A page's resources: the matches, what `_include`/`_revinclude` brought in, and — when
/// the includes were cut at the limit — that limit (said in a warning).
pub struct Found<'a> {
    pub matches: Vec<&'a StoredResource>,
    pub included: Vec<&'a StoredResource>,
    pub included_cut_at: Option<usize>,
}

/// A searchset Bundle with paging links (`base` is the server's FHIR base URL).
pub fn searchset(
    base: &str,
    self_url: String,
    paging: &Paging,
    found: &Found,
    shape: &Shape,
) -> Result<Value, FhirError> {
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(sid) = paging.snapshot {
        let at = |offset: i64| {
            format!(
                "{base}?_getpages={sid}&_getpagesoffset={offset}&_count={}",
                paging.count
            )
        };
        links.push(json!({"relation": "first", "url": at(0)}));
        if paging.offset + paging.count < paging.total {
            links.push(json!({"relation": "next", "url": at(paging.offset + paging.count)}));
        }
        if paging.offset > 0 {
            links.push(json!({"relation": "previous",
                "url": at((paging.offset - paging.count).max(0))}));
        }
    }
    let mut entries = Vec::with_capacity(found.matches.len() + found.included.len() + 1);
    for r in &found.matches {
        let resource = match shape.subset {
            Some(s) => subset::apply(r.json()?, s),
            None => r.json()?,
        };
        entries.push(json!({
            "fullUrl": format!("{base}/{}/{}", r.resource_type, r.id),
            "resource": resource,
            "search": {"mode": "match"},
        }));
    }
    for r in &found.included {
        entries.push(json!({
            "fullUrl": format!("{base}/{}/{}", r.resource_type, r.id),
            "resource": r.json()?,
            "search": {"mode": "include"},
        }));
    }
    let mut warnings: Vec<Value> = shape
        .ignored
        .iter()
        .map(|m| json!({"severity": "warning", "code": "not-supported", "diagnostics": format!("ignored: {m}")}))
        .collect();
    if let Some(max) = found.included_cut_at {
        warnings.push(json!({"severity": "warning", "code": "too-costly",
            "diagnostics": format!("_include/_revinclude brought in at most {max} resources for this page (limit max-included); narrow the search or page with a smaller _count")}));
    }
    if !warnings.is_empty() {
        entries.push(json!({
            "resource": {"resourceType": "OperationOutcome", "issue": warnings},
            "search": {"mode": "outcome"},
        }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant::format_us(instant::now_us())},
        "type": "searchset",
        "total": paging.total,
        "link": links,
    });
    if !shape.with_total {
        bundle.as_object_mut().map(|o| o.remove("total"));
    }
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(bundle)
}

/// A history Bundle: `entries` newest first, each with the request that wrote it.
pub fn history<'a>(
    base: &str,
    links: Vec<Value>,
    entries: impl Iterator<Item = &'a StoredResource>,
) -> Result<Value, FhirError> {
    let mut out = Vec::new();
    for r in entries {
        let method = r.method.clone().unwrap_or_else(|| "PUT".into());
        let (url, status) = match method.as_str() {
            "POST" => (r.resource_type.clone(), "201 Created"),
            "DELETE" => (format!("{}/{}", r.resource_type, r.id), "204 No Content"),
            _ => (format!("{}/{}", r.resource_type, r.id), "200 OK"),
        };
        let mut entry = json!({
            "fullUrl": format!("{base}/{}/{}", r.resource_type, r.id),
            "request": {"method": method, "url": url},
            "response": {"status": status, "etag": r.etag(),
                "lastModified": instant::format_us(r.last_updated_us)},
        });
        if !r.deleted {
            entry["resource"] = r.json()?;
        }
        out.push(entry);
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant::format_us(instant::now_us())},
        "type": "history",
        "link": links,
    });
    if !out.is_empty() {
        bundle["entry"] = json!(out);
    }
    Ok(bundle)
}

/// The links of a history page: itself, and the next page's when there is one.
pub fn history_links(path: &str, params: &super::params::History, next: Option<i64>) -> Vec<Value> {
    let mut query = format!("_count={}", params.count);
    if let Some(s) = params.since_us {
        query.push_str(&format!("&_since={}", instant::format_us(s)));
    }
    let this = params
        .cursor
        .map(|c| format!("&_cursor={c}"))
        .unwrap_or_default();
    let mut links = vec![json!({"relation": "self", "url": format!("{path}?{query}{this}")})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": format!("{path}?{query}&_cursor={next}")}));
    }
    links
}

/// One entry of a batch or transaction response.
pub enum Answered<'a> {
    /// A write: its status line, and the version it wrote or found (None for a delete).
    Written(&'a str, Option<&'a StoredResource>),
    /// A GET: the version read.
    Read(&'a str, &'a StoredResource),
    Failed(&'a str, Value),
}

/// A batch or transaction response Bundle (`kind`: `batch-response`, `transaction-response`).
/// With `representation`, written resources are returned whole.
pub fn response(
    base: &str,
    kind: &str,
    answers: &[Answered],
    representation: bool,
) -> Result<Value, FhirError> {
    let mut entries = Vec::with_capacity(answers.len());
    for a in answers {
        let mut entry = json!({});
        let (status, version, with_resource) = match a {
            Answered::Written(s, r) => (*s, *r, representation),
            Answered::Read(s, r) => (*s, Some(*r), true),
            Answered::Failed(s, outcome) => {
                entry["response"] = json!({"status": s, "outcome": outcome});
                entries.push(entry);
                continue;
            }
        };
        let mut response = json!({"status": status});
        if let Some(r) = version {
            if matches!(a, Answered::Written(..)) {
                response["location"] = json!(r.location());
            }
            response["etag"] = json!(r.etag());
            response["lastModified"] = json!(instant::format_us(r.last_updated_us));
            entry["fullUrl"] = json!(format!("{base}/{}/{}", r.resource_type, r.id));
            if with_resource {
                entry["resource"] = r.json()?;
            }
        }
        entry["response"] = response;
        entries.push(entry);
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": kind,
    });
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(bundle)
}
