//! history: the history of an instance, a type or the whole server, paged by cursor.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::fhir::format::form_urlencoded;
use crate::fhir::instant;
use crate::http::reply::respond;
use crate::http::response::{Body, FhirResponse};
use crate::http::state::AppState;
use crate::repository::HistoryRequest;

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

pub(crate) fn entries_is_empty(bundle: &Value) -> bool {
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
