//! reply: the answer of a FHIR handler, in the format the request negotiated (`respond`),
//! and the answer every write shares (`write_response`: status, Location, ETag, `Prefer`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::extract::{negotiated, prefer, Prefer};
use super::response::{render, Body, FhirResponse};
use super::state::AppState;
use crate::error::{information, FhirError};
use crate::fhir::format::Negotiated;
use crate::repository::{WriteOutcome, WriteStatus};

/// Runs `f` with the negotiated format and renders what it returns.
pub(crate) async fn respond<F, Fut>(req: &HttpRequest, f: F) -> HttpResponse
where
    F: FnOnce(Negotiated) -> Fut,
    Fut: std::future::Future<Output = Result<FhirResponse, FhirError>>,
{
    match negotiated(req) {
        Ok(neg) => render(neg, f(neg).await),
        Err(e) => render(Negotiated::default(), Err(e)),
    }
}

pub(crate) fn write_response(
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
