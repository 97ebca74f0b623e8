//! history: the history of an instance, a type or the whole server, paged by cursor.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::RequestContext;
use crate::fhir::{bundle, params};
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
        let settings = &state.settings;
        let params = params::history(
            req.query_string(),
            settings.default_page_size,
            settings.max_page_size,
        )?;
        let request = HistoryRequest {
            resource_type: rtype.clone(),
            id: id.clone(),
            since_us: params.since_us,
            cursor: params.cursor,
            count: params.count,
        };
        let repo = state.repo.clone();
        let page = web::block(move || repo.history(&ctx, &request)).await??;
        let base = &settings.base_url;
        let path = match (&rtype, &id) {
            (Some(t), Some(i)) => format!("{base}/{t}/{i}/_history"),
            (Some(t), None) => format!("{base}/{t}/_history"),
            _ => format!("{base}/_history"),
        };
        let links = bundle::history_links(&path, &params, page.next_cursor);
        let bundle = bundle::history(base, links, page.entries.iter().map(|v| v.get()))?;
        Ok(FhirResponse::new(StatusCode::OK, Body::Value(bundle)))
    })
    .await
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
