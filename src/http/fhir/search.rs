//! search: type and system searches (GET and POST), compartments, `$everything` and the
//! later pages of a search.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::fhir::bundle::{self, Found, Paging, Shape};
use crate::fhir::format::form_urlencoded;
use crate::fhir::params;
use crate::http::extract::*;
use crate::http::reply::respond;
use crate::http::response::{Body, FhirResponse};
use crate::http::state::AppState;
use crate::repository::{check_type, SearchPage};

fn strict_handling(req: &HttpRequest) -> Result<bool, FhirError> {
    Ok(preferences(req)?.strict)
}

/// The searchset Bundle of a page the repository returned.
fn searchset(
    state: &AppState,
    page: &SearchPage,
    self_url: String,
    shape: &Shape,
) -> Result<Value, FhirError> {
    let paging = Paging {
        snapshot: page.snapshot.as_deref(),
        offset: page.offset,
        count: page.count,
        total: page.total,
    };
    let found = Found {
        matches: page.entries.iter().map(|v| v.get()).collect(),
        included: page.included.iter().map(|v| v.get()).collect(),
        included_cut_at: page
            .included_truncated
            .then_some(state.settings.limits.max_included),
    };
    bundle::searchset(&state.settings.base_url, self_url, &paging, &found, shape)
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
        Some((_, v)) => params::distinct_types(v)
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
        None => Shape::plain(),
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
            return Err(FhirError::hidden(&owner_type, &owner_id));
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
    let asked = params::everything(
        req.query_string(),
        settings.default_page_size,
        settings.max_page_size,
    )?;
    let (count, since, only) = (asked.count, asked.since, asked.types);
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
        let asked = params::later_page(req.query_string())?;
        let (sid, offset, count) = (asked.snapshot, asked.offset, asked.count);
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
