//! instance: create, read, vread, update, patch and delete of one resource.

use actix_web::http::header::HttpDate;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use std::str::FromStr;

use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::fhir::instant;
use crate::http::extract::*;
use crate::http::reply::{respond, write_response};
use crate::http::response::{Body, FhirResponse};
use crate::http::state::AppState;
use crate::repository::{check_type, WriteStatus};

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
        let resource = match state.repo.read_now(&ctx, &rtype, &id) {
            Some(read) => read?,
            None => {
                let repo = state.repo.clone();
                web::block(move || repo.read(&ctx, &rtype, &id)).await??
            }
        };
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
