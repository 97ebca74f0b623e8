//! bundle: batch and transaction Bundles posted to the base.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::auth::RequestContext;
use crate::fhir::bundle::Answered;
use crate::http::extract::*;
use crate::http::reply::respond;
use crate::http::response::{Body, FhirResponse};
use crate::http::state::AppState;
use crate::repository::transaction::{bundle_kind, BundleKind, EntryResult};
use crate::repository::WriteStatus;

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
        let lines: Vec<String> = results.iter().map(EntryResult::status_line).collect();
        let answers: Vec<Answered> = results
            .iter()
            .zip(&lines)
            .map(|(result, line)| match result {
                EntryResult::Written(w) => Answered::Written(
                    line,
                    matches!(
                        w.status,
                        WriteStatus::Created | WriteStatus::Updated | WriteStatus::Existing
                    )
                    .then(|| w.resource.get()),
                ),
                EntryResult::Read(r) => Answered::Read(line, r.get()),
                EntryResult::Failed(e) => Answered::Failed(line, e.outcome()),
            })
            .collect();
        let bundle = crate::fhir::bundle::response(
            &state.settings.base_url,
            response_type,
            &answers,
            representation,
        )?;
        Ok(FhirResponse::new(StatusCode::OK, Body::Value(bundle)))
    })
    .await
}
