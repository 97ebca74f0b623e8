//! bundle: batch and transaction Bundles posted to the base.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::auth::RequestContext;
use crate::fhir::instant;
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
        if super::history::entries_is_empty(&bundle) {
            bundle.as_object_mut().map(|o| o.remove("entry"));
        }
        Ok(FhirResponse::new(StatusCode::OK, Body::Value(bundle)))
    })
    .await
}
