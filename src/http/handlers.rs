//! handlers: one function per FHIR interaction. Each turns the HTTP request into a typed
//! call on the repository and the result into a response, nothing else.

use actix_web::http::header::HttpDate;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::str::FromStr;

use super::response::{render, Body, FhirResponse};
use super::AppState;
use crate::auth::RequestContext;
use crate::error::{information, FhirError};
use crate::fhir::format::{body_format, form_urlencoded, negotiate, parse_body, Negotiated};
use crate::fhir::{capability, instant};
use crate::repository::transaction::{bundle_kind, BundleKind, EntryResult};
use crate::repository::{check_type, HistoryRequest, WriteOutcome, WriteStatus};

/// Headers whose repeated lines mean one comma-separated list (RFC 9110 §5.3).
const LIST_HEADERS: [&str; 4] = ["Prefer", "If-None-Match", "If-Match", "Accept"];

/// A request header Carnet reads, as text: understood, or refused (400) when it is not
/// UTF-8, longer than the limit, or repeated when it is not a list; never ignored.
/// Repeated lines of a list header are joined with commas.
fn header(req: &HttpRequest, name: &str) -> Result<Option<String>, FhirError> {
    let max = req
        .app_data::<web::Data<AppState>>()
        .map_or(crate::fhir::limits::DEFAULTS.max_header_bytes, |s| {
            s.settings.limits.max_header_bytes
        });
    let mut joined: Option<String> = None;
    for v in req.headers().get_all(name) {
        let text = std::str::from_utf8(v.as_bytes()).map_err(|_| {
            FhirError::BadRequest(format!("the {name} header is not readable (not UTF-8)"))
        })?;
        let all = match joined.take() {
            Some(_) if !LIST_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) => {
                return Err(FhirError::BadRequest(format!(
                    "the {name} header is given more than once"
                )))
            }
            Some(prev) => format!("{prev}, {text}"),
            None => text.to_string(),
        };
        if all.len() > max {
            return Err(FhirError::TooCostly(format!(
                "the {name} header is longer than {max} bytes (limit max-header-bytes)"
            )));
        }
        joined = Some(all);
    }
    Ok(joined)
}

fn negotiated(req: &HttpRequest) -> Result<Negotiated, FhirError> {
    // Accept is negotiation: what Carnet cannot produce falls back to JSON (browsers and
    // curl send `*/*` or `text/html`), but an unreadable one is refused like any header.
    negotiate(req.query_string(), header(req, "Accept")?.as_deref())
}

/// Runs `f` with the negotiated format and renders what it returns.
async fn respond<F, Fut>(req: &HttpRequest, f: F) -> HttpResponse
where
    F: FnOnce(Negotiated) -> Fut,
    Fut: std::future::Future<Output = Result<FhirResponse, FhirError>>,
{
    match negotiated(req) {
        Ok(neg) => render(neg, f(neg).await),
        Err(e) => render(Negotiated::default(), Err(e)),
    }
}

/// Large bodies held at once, in MiB, across all requests: past it a large upload waits
/// for others to be done, so that memory does not grow with the number of clients
/// sending 16 MiB each (bodies under 1 MiB never wait).
const LARGE_BODIES_MIB: u32 = 64;
static LARGE_BODIES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(LARGE_BODIES_MIB as usize);

/// A request body, holding its share of [`LARGE_BODIES`] until it is dropped.
pub struct BodyBytes {
    pub bytes: web::Bytes,
    _share: Option<tokio::sync::SemaphorePermit<'static>>,
}

impl std::ops::Deref for BodyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads the request body, refusing more than `limit` bytes (413).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BodyBytes, FhirError> {
    let length = header(req, "Content-Length")?.and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = length {
        if len > limit {
            return Err(FhirError::PayloadTooLarge(limit));
        }
    }
    // A body of unknown length may grow to the limit.
    let mib = length.unwrap_or(limit).div_ceil(1024 * 1024) as u32;
    let share = if mib > 1 {
        Some(
            LARGE_BODIES
                .acquire_many(mib.min(LARGE_BODIES_MIB))
                .await
                .map_err(|_| FhirError::Unavailable("the server is stopping".into()))?,
        )
    } else {
        None
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| FhirError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(FhirError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(BodyBytes {
        bytes: body.freeze(),
        _share: share,
    })
}

/// The parsed JSON of a FHIR request body (JSON or XML by `Content-Type`), read first
/// (handlers read the body before any other check, so that a client sending one always
/// gets the answer instead of a connection closed under its feet).
async fn fhir_body(
    req: &HttpRequest,
    bytes: BodyBytes,
    state: &AppState,
) -> Result<Value, FhirError> {
    let format = body_format(header(req, "Content-Type")?.as_deref())?;
    // Parsing is CPU work proportional to the body: off the async workers.
    let limits = state.settings.limits;
    web::block(move || parse_body(format, &bytes, &limits)).await?
}

fn parse_if_match(req: &HttpRequest) -> Result<Option<i64>, FhirError> {
    match header(req, "If-Match")? {
        None => Ok(None),
        Some(tag) => crate::repository::transaction::parse_version_tag(&tag).map(Some),
    }
}

/// The entity tags of an `If-None-Match` (`*`, `W/"3"`, `"3"`, comma-separated), or 400.
fn if_none_match(req: &HttpRequest) -> Result<Option<Vec<String>>, FhirError> {
    let Some(value) = header(req, "If-None-Match")? else {
        return Ok(None);
    };
    let tags: Vec<String> = value
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.is_empty() {
        return Err(FhirError::BadRequest(
            "If-None-Match is empty: give an entity tag such as W/\"3\" or *".into(),
        ));
    }
    for t in &tags {
        let opaque = t.strip_prefix("W/").unwrap_or(t);
        let quoted = opaque.len() >= 2
            && opaque.starts_with('"')
            && opaque.ends_with('"')
            && !opaque[1..opaque.len() - 1].contains('"');
        if t != "*" && !quoted {
            return Err(FhirError::BadRequest(format!(
                "If-None-Match '{t}' is not an entity tag such as W/\"3\" or *"
            )));
        }
    }
    Ok(Some(tags))
}

#[derive(Clone, Copy, PartialEq)]
enum Prefer {
    Minimal,
    Representation,
    OperationOutcome,
}

/// What a `Prefer` header asks: FHIR's `return=` and `handling=`. A value of those that
/// Carnet does not know is refused (400); other preferences (`respond-async`, `wait`…)
/// are not honoured and, as RFC 7240 §2 has it, do not fail the request.
struct Preferences {
    ret: Prefer,
    strict: bool,
}

fn preferences(req: &HttpRequest) -> Result<Preferences, FhirError> {
    let mut p = Preferences {
        ret: Prefer::Representation,
        strict: false,
    };
    let Some(value) = header(req, "Prefer")? else {
        return Ok(p);
    };
    for preference in value.split(',') {
        // `name[=value]` then `;` parameters (none of which FHIR defines).
        let head = preference.split(';').next().unwrap_or("").trim();
        if head.is_empty() {
            continue;
        }
        let (name, v) = head.split_once('=').unwrap_or((head, ""));
        let (name, v) = (name.trim(), v.trim().trim_matches('"'));
        if name.eq_ignore_ascii_case("return") {
            p.ret = match v {
                "minimal" => Prefer::Minimal,
                "representation" => Prefer::Representation,
                "OperationOutcome" => Prefer::OperationOutcome,
                other => {
                    return Err(FhirError::BadRequest(format!(
                        "Prefer return={other} is not understood: use minimal, representation or OperationOutcome"
                    )))
                }
            };
        } else if name.eq_ignore_ascii_case("handling") {
            p.strict = match v {
                "strict" => true,
                "lenient" => false,
                other => {
                    return Err(FhirError::BadRequest(format!(
                        "Prefer handling={other} is not understood: use strict or lenient"
                    )))
                }
            };
        }
    }
    Ok(p)
}

fn prefer(req: &HttpRequest) -> Result<Prefer, FhirError> {
    Ok(preferences(req)?.ret)
}

fn write_response(
    req: &HttpRequest,
    state: &AppState,
    outcome: WriteOutcome,
) -> Result<FhirResponse, FhirError> {
    let status = match outcome.status {
        WriteStatus::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let location = format!(
        "{}/{}",
        state.settings.base_url,
        outcome.resource.location()
    );
    let body = match prefer(req)? {
        Prefer::Minimal => Body::Empty,
        Prefer::Representation => Body::Resource(outcome.resource.clone()),
        Prefer::OperationOutcome => Body::Value(information(match outcome.status {
            WriteStatus::Created => "created",
            WriteStatus::Existing => {
                "a resource matching If-None-Exist already exists; nothing was written"
            }
            _ => "updated",
        })),
    };
    Ok(FhirResponse::new(status, body)
        .header("Location", location.clone())
        .header("Content-Location", location)
        .version_headers(&outcome.resource))
}

pub async fn metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: web::Data<crate::auth::Authenticator>,
) -> HttpResponse {
    respond(&req, |_| async move {
        Ok(FhirResponse::new(
            StatusCode::OK,
            Body::Value(capability::capability_statement(
                &state.settings.base_url,
                &auth.endpoints,
                env!("CARGO_PKG_VERSION"),
                &state.started_at,
            )),
        ))
    })
    .await
}

pub async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let rtype = path.into_inner();
    respond(&req, |_| async {
        let body = read_body(&req, payload, state.settings.max_body_bytes).await?;
        check_type(&rtype)?;
        preferences(&req)?;
        let if_none_exist = header(&req, "If-None-Exist")?;
        let value = fhir_body(&req, body, &state).await?;
        let repo = state.repo.clone();
        let outcome =
            web::block(move || repo.create(&ctx, &rtype, value, if_none_exist.as_deref()))
                .await??;
        write_response(&req, &state, outcome)
    })
    .await
}

pub async fn read(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (rtype, id) = path.into_inner();
    respond(&req, |_| async {
        let none_match = if_none_match(&req)?;
        // If-None-Match, when given, decides alone (RFC 9110 §13.1.3).
        let modified_since = match header(&req, "If-Modified-Since")? {
            _ if none_match.is_some() => None,
            None => None,
            Some(v) => Some(HttpDate::from_str(&v).map_err(|_| {
                FhirError::BadRequest(format!(
                    "If-Modified-Since '{v}' is not an HTTP date such as Tue, 01 Dec 2026 10:00:00 GMT"
                ))
            })?),
        };
        let repo = state.repo.clone();
        let resource = web::block(move || repo.read(&ctx, &rtype, &id)).await??;
        if let Some(tags) = none_match {
            let etag = resource.etag();
            // Weak comparison (RFC 9110): W/"3" and "3" name the same version.
            let bare = etag.trim_start_matches("W/");
            if tags
                .iter()
                .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
            {
                return Ok(FhirResponse::new(StatusCode::NOT_MODIFIED, Body::Empty)
                    .version_headers(&resource));
            }
        } else if let Some(since) = modified_since {
            let modified = instant::system_time(resource.last_updated_us);
            let since: std::time::SystemTime = since.into();
            // HTTP dates have whole seconds: modified within the same second is not "since".
            let modified_secs = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let since_secs = since
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if modified_secs <= since_secs {
                return Ok(FhirResponse::new(StatusCode::NOT_MODIFIED, Body::Empty)
                    .version_headers(&resource));
            }
        }
        Ok(
            FhirResponse::new(StatusCode::OK, Body::Resource(resource.clone()))
                .version_headers(&resource),
        )
    })
    .await
}

pub async fn vread(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (rtype, id, vid) = path.into_inner();
    respond(&req, |_| async {
        let repo = state.repo.clone();
        let resource = web::block(move || repo.vread(&ctx, &rtype, &id, &vid)).await??;
        Ok(
            FhirResponse::new(StatusCode::OK, Body::Resource(resource.clone()))
                .version_headers(&resource),
        )
    })
    .await
}

pub async fn update(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (rtype, id) = path.into_inner();
    respond(&req, |_| async {
        let body = read_body(&req, payload, state.settings.max_body_bytes).await?;
        check_type(&rtype)?;
        let if_match = parse_if_match(&req)?;
        preferences(&req)?;
        let value = fhir_body(&req, body, &state).await?;
        let repo = state.repo.clone();
        let outcome = web::block(move || repo.update(&ctx, &rtype, &id, value, if_match)).await??;
        write_response(&req, &state, outcome)
    })
    .await
}

pub async fn patch(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (rtype, id) = path.into_inner();
    respond(&req, |_| async {
        let bytes = read_body(&req, payload, state.settings.max_body_bytes).await?;
        check_type(&rtype)?;
        if rtype != "DocumentReference" {
            return Err(FhirError::MethodNotAllowed(format!(
                "PATCH is offered on DocumentReference only (PDSm); send a PUT to change a {rtype}"
            )));
        }
        let kind = header(&req, "Content-Type")?.unwrap_or_default();
        if !kind.starts_with("application/json-patch+json") {
            return Err(FhirError::UnsupportedMediaType(
                "PATCH takes a JSON Patch (Content-Type: application/json-patch+json)".into(),
            ));
        }
        let if_match = parse_if_match(&req)?;
        preferences(&req)?;
        crate::fhir::limits::check_json_bytes(&bytes, &state.settings.limits)?;
        let patch: Value = serde_json::from_slice(&bytes)
            .map_err(|e| FhirError::BadRequest(format!("the JSON Patch is not JSON: {e}")))?;
        let repo = state.repo.clone();
        let outcome = web::block(move || repo.patch(&ctx, &rtype, &id, &patch, if_match)).await??;
        write_response(&req, &state, outcome)
    })
    .await
}

pub async fn delete(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (rtype, id) = path.into_inner();
    respond(&req, |_| async {
        let if_match = parse_if_match(&req)?;
        let repo = state.repo.clone();
        let outcome = web::block(move || repo.delete(&ctx, &rtype, &id, if_match)).await??;
        let mut response = FhirResponse::new(StatusCode::NO_CONTENT, Body::Empty);
        if outcome.status == WriteStatus::Deleted {
            response = response.header("ETag", outcome.resource.etag());
        }
        Ok(response)
    })
    .await
}

/// History at any level: the path gives the type and id, if any.
async fn history(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    rtype: Option<String>,
    id: Option<String>,
) -> HttpResponse {
    respond(&req, |_| async {
        let mut request = HistoryRequest {
            resource_type: rtype.clone(),
            id: id.clone(),
            since_us: None,
            cursor: None,
            count: state.settings.default_page_size,
        };
        for (k, v) in form_urlencoded(req.query_string())? {
            match k.as_str() {
                "_count" => {
                    let n: i64 = v.parse().map_err(|_| {
                        FhirError::BadRequest(format!("_count '{v}' is not a number"))
                    })?;
                    request.count = n.clamp(1, state.settings.max_page_size);
                }
                "_since" => {
                    request.since_us = Some(instant::parse_us(&v).ok_or_else(|| {
                        FhirError::BadRequest(format!(
                            "_since '{v}' is not an instant such as 2026-01-31T12:00:00Z"
                        ))
                    })?)
                }
                "_cursor" => {
                    request.cursor = Some(v.parse().map_err(|_| {
                        FhirError::BadRequest(format!("_cursor '{v}' is not valid"))
                    })?)
                }
                "_format" | "_pretty" => {}
                other => {
                    return Err(FhirError::BadRequest(format!(
                    "history does not support the parameter '{other}' (supported: _count, _since)"
                )))
                }
            }
        }
        let repo = state.repo.clone();
        let req_clone = request.clone();
        let page = web::block(move || repo.history(&ctx, &req_clone)).await??;
        let base = &state.settings.base_url;
        let path = match (&rtype, &id) {
            (Some(t), Some(i)) => format!("{base}/{t}/{i}/_history"),
            (Some(t), None) => format!("{base}/{t}/_history"),
            _ => format!("{base}/_history"),
        };
        let mut params = format!("_count={}", request.count);
        if let Some(s) = request.since_us {
            params.push_str(&format!("&_since={}", instant::format_us(s)));
        }
        let mut links = vec![
            json!({"relation": "self", "url": format!("{path}?{params}{}",
            request.cursor.map(|c| format!("&_cursor={c}")).unwrap_or_default())}),
        ];
        if let Some(next) = page.next_cursor {
            links.push(
                json!({"relation": "next", "url": format!("{path}?{params}&_cursor={next}")}),
            );
        }
        let mut entries = Vec::with_capacity(page.entries.len());
        for r in &page.entries {
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
            entries.push(entry);
        }
        let bundle = json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "meta": {"lastUpdated": instant::format_us(instant::now_us())},
            "type": "history",
            "link": links,
            "entry": entries,
        });
        let mut bundle = bundle;
        if entries_is_empty(&bundle) {
            bundle.as_object_mut().map(|o| o.remove("entry"));
        }
        Ok(FhirResponse::new(StatusCode::OK, Body::Value(bundle)))
    })
    .await
}

fn entries_is_empty(bundle: &Value) -> bool {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .is_some_and(|a| a.is_empty())
}

pub async fn history_system(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> HttpResponse {
    history(req, ctx, state, None, None).await
}

pub async fn history_type(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    history(req, ctx, state, Some(path.into_inner()), None).await
}

pub async fn history_instance(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (t, i) = path.into_inner();
    history(req, ctx, state, Some(t), Some(i)).await
}

fn strict_handling(req: &HttpRequest) -> Result<bool, FhirError> {
    Ok(preferences(req)?.strict)
}

/// How a searchset is rendered: the parameters it ignored, whether it carries `total`,
/// and what is kept of each match (`_summary`, `_elements`).
struct Shape<'a> {
    ignored: &'a [String],
    with_total: bool,
    subset: Option<&'a crate::fhir::subset::Subset>,
}

impl<'a> Shape<'a> {
    fn of(search: &'a crate::fhir::search_query::SearchRequest, ignored: &'a [String]) -> Self {
        Shape {
            ignored,
            with_total: search.total != crate::fhir::search_query::Total::None || search.count_only,
            subset: search.subset.as_ref(),
        }
    }
}

/// A searchset Bundle for `page`, with paging links.
fn searchset(
    state: &AppState,
    page: &crate::repository::SearchPage,
    self_url: String,
    shape: &Shape,
) -> Result<Value, FhirError> {
    let base = &state.settings.base_url;
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(sid) = &page.snapshot {
        let at = |offset: i64| {
            format!(
                "{base}?_getpages={sid}&_getpagesoffset={offset}&_count={}",
                page.count
            )
        };
        links.push(json!({"relation": "first", "url": at(0)}));
        if page.offset + page.count < page.total {
            links.push(json!({"relation": "next", "url": at(page.offset + page.count)}));
        }
        if page.offset > 0 {
            links.push(
                json!({"relation": "previous", "url": at((page.offset - page.count).max(0))}),
            );
        }
    }
    let mut entries = Vec::with_capacity(page.entries.len() + 1);
    for r in &page.entries {
        let resource = match shape.subset {
            Some(subset) => crate::fhir::subset::apply(r.json()?, subset),
            None => r.json()?,
        };
        entries.push(json!({
            "fullUrl": format!("{base}/{}/{}", r.resource_type, r.id),
            "resource": resource,
            "search": {"mode": "match"},
        }));
    }
    for r in &page.included {
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
    if page.included_truncated {
        warnings.push(json!({"severity": "warning", "code": "too-costly",
            "diagnostics": format!("_include/_revinclude brought in at most {} resources for this page (limit max-included); narrow the search or page with a smaller _count",
                state.settings.limits.max_included)}));
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
        "total": page.total,
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

async fn run_search(
    req: &HttpRequest,
    ctx: RequestContext,
    state: &web::Data<AppState>,
    rtype: String,
    query: String,
) -> Result<FhirResponse, FhirError> {
    check_type(&rtype)?;
    let search = crate::fhir::search_query::parse(
        &rtype,
        &query,
        state.settings.default_page_size,
        state.settings.max_page_size,
        &state.settings.base_url,
        strict_handling(req)?,
    )?;
    let self_url = format!(
        "{}/{}?{}",
        state.settings.base_url, rtype, search.canonical_query
    );
    execute_search(ctx, state, search, self_url).await
}

/// Runs a parsed search and renders its first page (`_summary=count`, `_total`, `_elements`).
async fn execute_search(
    ctx: RequestContext,
    state: &web::Data<AppState>,
    search: crate::fhir::search_query::SearchRequest,
    self_url: String,
) -> Result<FhirResponse, FhirError> {
    let repo = state.repo.clone();
    let mut s = search.clone();
    if s.count_only {
        s.count = 0;
    }
    let page = web::block(move || repo.search(&ctx, &s)).await??;
    let bundle = searchset(state, &page, self_url, &Shape::of(&search, &search.ignored))?;
    Ok(FhirResponse::new(StatusCode::OK, Body::Value(bundle)))
}

/// The types of a `_type` value, each once, in the order first named (a repeated type is
/// searched once, not once per repetition).
fn distinct_types(value: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    value
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// `GET /?_type=A,B&…`: a search over several types (all of them without `_type`); every
/// parameter must be defined for every type searched.
async fn system_search(
    req: &HttpRequest,
    ctx: RequestContext,
    state: &web::Data<AppState>,
) -> Result<FhirResponse, FhirError> {
    let pairs = form_urlencoded(req.query_string())?;
    if pairs.iter().filter(|(k, _)| k == "_type").count() > 1 {
        return Err(FhirError::BadRequest(
            "_type is given more than once: list the types in one _type, comma-separated".into(),
        ));
    }
    let types: Vec<String> = match pairs.iter().find(|(k, _)| k == "_type") {
        Some((_, v)) => distinct_types(v)
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        None => crate::fhir::resource_types::SUPPORTED
            .iter()
            .map(|t| t.to_string())
            .collect(),
    };
    let rest: String = req
        .query_string()
        .split('&')
        .filter(|p| !p.starts_with("_type="))
        .collect::<Vec<_>>()
        .join("&");
    let mut reqs = Vec::new();
    for t in &types {
        check_type(t)?;
        let parsed = crate::fhir::search_query::parse(t, &rest, state.settings.default_page_size, state.settings.max_page_size, &state.settings.base_url, true)
            .map_err(|e| match e {
                FhirError::BadRequest(m) => FhirError::BadRequest(format!("{m} (in a search over several types, every parameter must be defined for each of them)")),
                other => other,
            })?;
        reqs.push(parsed);
    }
    let count = reqs.first().map_or(state.settings.default_page_size, |r| {
        if r.count_only {
            0
        } else {
            r.count
        }
    });
    let canonical = reqs
        .first()
        .map(|r| r.canonical_query.clone())
        .unwrap_or_default();
    let self_url = format!(
        "{}?_type={}&{canonical}",
        state.settings.base_url,
        types.join(",")
    );
    search_types(ctx, state, reqs, count, self_url, true).await
}

/// Runs a search over several types (`reqs`, one per type) and answers its first page,
/// shaped (`_summary`, `_elements`) as the first request asks when `shaped_by_first`.
async fn search_types(
    ctx: RequestContext,
    state: &web::Data<AppState>,
    reqs: Vec<crate::fhir::search_query::SearchRequest>,
    count: i64,
    self_url: String,
    shaped_by_first: bool,
) -> Result<FhirResponse, FhirError> {
    let repo = state.repo.clone();
    let moved = reqs.clone();
    let page = web::block(move || repo.search_types(&ctx, &moved, count)).await??;
    let shape = match reqs.first().filter(|_| shaped_by_first) {
        Some(first) => Shape::of(first, &[]),
        None => Shape {
            ignored: &[],
            with_total: true,
            subset: None,
        },
    };
    Ok(FhirResponse::new(
        StatusCode::OK,
        Body::Value(searchset(state, &page, self_url, &shape)?),
    ))
}

/// `GET /Patient/{id}/{type}?…`: search within a patient's compartment.
pub async fn compartment_search(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (owner_type, owner_id, rtype) = path.into_inner();
    respond(&req, |_| async {
        if !crate::fhir::resource_types::is_valid_id(&owner_id) {
            return Err(FhirError::NotFound(format!(
                "{owner_type}/{owner_id} is not known"
            )));
        }
        if rtype == "$everything" && owner_type == "Patient" {
            return everything(&req, ctx, &state, &owner_id).await;
        }
        check_type(&owner_type)?;
        check_type(&rtype)?;
        let mut search = crate::fhir::search_query::parse(
            &rtype,
            req.query_string(),
            state.settings.default_page_size,
            state.settings.max_page_size,
            &state.settings.base_url,
            strict_handling(&req)?,
        )?;
        search
            .clauses
            .push(crate::fhir::search_query::compartment_clause(
                &owner_type,
                &owner_id,
                &rtype,
            )?);
        let self_url = format!(
            "{}/{owner_type}/{owner_id}/{rtype}?{}",
            state.settings.base_url, search.canonical_query
        );
        execute_search(ctx, &state, search, self_url).await
    })
    .await
}

/// `GET /Patient/{id}/$everything`: the patient's record — the Patient and every resource
/// of their compartment (the access history excepted: it is `AuditEvent?patient=`), as a
/// paged searchset in which every resource passed the access point: all of it for the
/// patient (or their representative, minus what is hidden from them), what the rules open
/// for anyone else. `_count`, `_since` and `_type` narrow it.
async fn everything(
    req: &HttpRequest,
    ctx: RequestContext,
    state: &web::Data<AppState>,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    use crate::fhir::search_query;
    let settings = &state.settings;
    let mut count = settings.default_page_size;
    let mut since = None;
    let mut only: Option<Vec<String>> = None;
    for (k, v) in form_urlencoded(req.query_string())? {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse::<i64>()
                    .ok()
                    .filter(|c| *c >= 0)
                    .ok_or_else(|| {
                        FhirError::BadRequest(format!("_count '{v}' is not a number of entries"))
                    })?
                    .min(settings.max_page_size)
            }
            "_since" => {
                instant::parse_us(&v).ok_or_else(|| {
                    FhirError::BadRequest(format!(
                        "_since '{v}' is not an instant such as 2026-01-31T12:00:00Z"
                    ))
                })?;
                since = Some(v)
            }
            "_type" => only = Some(distinct_types(&v)),
            "_format" | "_pretty" => {}
            other => {
                return Err(FhirError::BadRequest(format!(
                    "$everything does not support the parameter '{other}' (supported: _count, _since, _type)"
                )))
            }
        }
    }
    let types: Vec<&str> = crate::fhir::resource_types::SUPPORTED
        .iter()
        .copied()
        .filter(|t| *t == "Patient" || !crate::fhir::compartment::patient_params(t).is_empty())
        .filter(|t| *t != "AuditEvent")
        .collect();
    if let Some(only) = &only {
        if let Some(bad) = only.iter().find(|t| !types.contains(&t.as_str())) {
            return Err(FhirError::BadRequest(format!(
                "_type {bad}: $everything returns {}",
                types.join(", ")
            )));
        }
    }
    let since_q = since
        .map(|s| {
            format!(
                "_lastUpdated=ge{}",
                percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .unwrap_or_default();
    let mut reqs = Vec::new();
    for t in types
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|x| x == *t)))
    {
        let mut query = since_q.clone();
        if *t == "Patient" {
            query = format!("_id={id}&{query}");
        }
        let mut parsed = search_query::parse(
            t,
            &query,
            count,
            settings.max_page_size,
            &settings.base_url,
            true,
        )?;
        if *t != "Patient" {
            parsed
                .clauses
                .push(search_query::compartment_clause("Patient", id, t)?);
        }
        parsed.count = count;
        reqs.push(parsed);
    }
    let self_url = format!("{}/Patient/{id}/$everything", settings.base_url);
    search_types(ctx, state, reqs, count, self_url, false).await
}

/// `GET /{type}?…`: search.
pub async fn search(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let rtype = path.into_inner();
    let query = req.query_string().to_string();
    respond(&req, |_| async {
        run_search(&req, ctx, &state, rtype, query).await
    })
    .await
}

/// `POST /{type}/_search` with form-encoded parameters (and any in the URL).
pub async fn search_post(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let rtype = path.into_inner();
    respond(&req, |_| async {
        let body = read_body(&req, payload, state.settings.max_body_bytes).await?;
        let ct = header(&req, "Content-Type")?.unwrap_or_default();
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(FhirError::UnsupportedMediaType(
                "POST _search takes application/x-www-form-urlencoded parameters".into(),
            ));
        }
        let body = String::from_utf8(body.to_vec())
            .map_err(|_| FhirError::BadRequest("the form is not UTF-8".into()))?;
        let query = [req.query_string(), body.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("&");
        run_search(&req, ctx, &state, rtype, query).await
    })
    .await
}

/// `GET /?_getpages=…`: a later page of a search.
pub async fn search_page(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> HttpResponse {
    respond(&req, |_| async {
        let mut sid = None;
        let mut offset = 0i64;
        let mut count = None;
        for (k, v) in form_urlencoded(req.query_string())? {
            match k.as_str() {
                "_getpages" => sid = Some(v),
                "_getpagesoffset" => {
                    offset = v.parse().map_err(|_| {
                        FhirError::BadRequest("_getpagesoffset is not a number".into())
                    })?
                }
                "_count" => {
                    count = Some(
                        v.parse::<i64>()
                            .map_err(|_| FhirError::BadRequest("_count is not a number".into()))?,
                    )
                }
                _ => {}
            }
        }
        let Some(sid) = sid else {
            return system_search(&req, ctx, &state).await;
        };
        let repo = state.repo.clone();
        let s = sid.clone();
        let settings = state.settings.clone();
        let (page, search) = web::block(move || {
            repo.search_page(&ctx, &s, offset, count, |rtype, query| {
                crate::fhir::search_query::parse(
                    rtype,
                    query,
                    settings.default_page_size,
                    settings.max_page_size,
                    &settings.base_url,
                    false,
                )
            })
        })
        .await??;
        let self_url = format!(
            "{}?_getpages={sid}&_getpagesoffset={offset}&_count={}",
            state.settings.base_url, page.count
        );
        Ok(FhirResponse::new(
            StatusCode::OK,
            Body::Value(searchset(
                &state,
                &page,
                self_url,
                &Shape::of(&search, &[]),
            )?),
        ))
    })
    .await
}

/// `POST /`: a batch or transaction Bundle.
pub async fn bundle(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    respond(&req, |_| async {
        let body = read_body(&req, payload, state.settings.max_body_bytes).await?;
        preferences(&req)?;
        let value = fhir_body(&req, body, &state).await?;
        let kind = bundle_kind(&value)?;
        // The Bundle's own elements (entry resources are checked one by one later).
        let mut skeleton = value.clone();
        if let Some(entries) = skeleton.get_mut("entry").and_then(Value::as_array_mut) {
            for e in entries {
                if let Some(o) = e.as_object_mut() {
                    o.remove("resource");
                }
            }
        }
        crate::fhir::validate::validate(skeleton)?;
        let repo = state.repo.clone();
        let base_url = state.settings.base_url.clone();
        let (results, response_type) = match kind {
            BundleKind::Transaction => (
                web::block(move || repo.transaction(&ctx, &value, &base_url)).await??,
                "transaction-response",
            ),
            BundleKind::Batch => (
                web::block(move || repo.batch(&ctx, &value, &base_url)).await??,
                "batch-response",
            ),
        };
        let representation = prefer(&req)? != Prefer::Minimal;
        let mut entries = Vec::with_capacity(results.len());
        for result in &results {
            let mut response = json!({"status": result.status_line()});
            let mut entry = json!({});
            match result {
                EntryResult::Written(w) => {
                    let r = &w.resource;
                    if matches!(
                        w.status,
                        WriteStatus::Created | WriteStatus::Updated | WriteStatus::Existing
                    ) {
                        response["location"] = json!(r.location());
                        response["etag"] = json!(r.etag());
                        response["lastModified"] = json!(instant::format_us(r.last_updated_us));
                        entry["fullUrl"] = json!(format!(
                            "{}/{}/{}",
                            state.settings.base_url, r.resource_type, r.id
                        ));
                        if representation {
                            entry["resource"] = r.json()?;
                        }
                    }
                }
                EntryResult::Read(r) => {
                    response["etag"] = json!(r.etag());
                    response["lastModified"] = json!(instant::format_us(r.last_updated_us));
                    entry["fullUrl"] = json!(format!(
                        "{}/{}/{}",
                        state.settings.base_url, r.resource_type, r.id
                    ));
                    entry["resource"] = r.json()?;
                }
                EntryResult::Failed(e) => response["outcome"] = e.outcome(),
            }
            entry["response"] = response;
            entries.push(entry);
        }
        let mut bundle = json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "type": response_type,
            "entry": entries,
        });
        if entries_is_empty(&bundle) {
            bundle.as_object_mut().map(|o| o.remove("entry"));
        }
        Ok(FhirResponse::new(StatusCode::OK, Body::Value(bundle)))
    })
    .await
}

pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let method = req.method().to_string();
    let path = req.path().to_string();
    respond(&req, |_| async move {
        Err(FhirError::MethodNotAllowed(format!(
            "{method} is not allowed on {path}"
        )))
    })
    .await
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let path = req.path().to_string();
    respond(&req, |_| async move {
        Err(FhirError::NotFound(format!("nothing is served at {path}")))
    })
    .await
}
