//! metadata: the CapabilityStatement.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::reply::respond;
use crate::http::response::{Body, FhirResponse};
use crate::http::state::AppState;

pub async fn metadata(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    respond(&req, |_| async move {
        Ok(FhirResponse::new(
            StatusCode::OK,
            Body::Value(super::capability::capability_statement(
                &state.settings.base_url,
                &state.endpoints,
                env!("CARGO_PKG_VERSION"),
                &state.started_at,
            )),
        ))
    })
    .await
}
