//! routes: the actix-web application: FHIR routes under the base path, the authorization
//! server under `/auth`, per-request logging and request ids.

use actix_web::dev::Service;
use actix_web::{web, HttpMessage};
use std::time::Instant;

use super::extract::RequestId;
use super::reply::{method_not_allowed, not_found};
use super::state::AppState;
use crate::auth::PendingTraces;

/// The FHIR routes, mounted under the configured base path.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use super::fhir::{bundle::*, history::*, instance::*, metadata::*, search::*};
    cfg.service(
        web::resource("/.well-known/smart-configuration")
            .route(web::get().to(super::oauth::smart_configuration)),
    );
    cfg.service(
        web::resource("/metadata")
            .route(web::get().to(metadata))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(["", "/"])
            .route(web::post().to(bundle))
            .route(web::get().to(search_page))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/_history")
            .route(web::get().to(history_system))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}")
            .route(web::get().to(search))
            .route(web::post().to(create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}/_search")
            .route(web::post().to(search_post))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}/_history")
            .route(web::get().to(history_type))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}/{id}")
            .route(web::get().to(read))
            .route(web::put().to(update))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}/{id}/_history")
            .route(web::get().to(history_instance))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}/{id}/{compartment_type}")
            .route(web::get().to(compartment_search))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/{type}/{id}/_history/{vid}")
            .route(web::get().to(vread))
            .default_service(web::to(method_not_allowed)),
    );
}

/// A request id from the client's `X-Request-Id` if it is sane, otherwise a new one.
fn request_id(req: &actix_web::dev::ServiceRequest) -> String {
    req.headers()
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Builds the actix-web `App` for `state` (used by the server and nothing else).
pub fn app(
    state: web::Data<AppState>,
    auth: web::Data<crate::auth::Authenticator>,
    upstreams: web::Data<super::oauth::Upstreams>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let base_path = state.settings.fhir_path.clone();
    actix_web::App::new()
        .app_data(state)
        .app_data(auth)
        .app_data(upstreams)
        .wrap_fn(|req, srv| {
            let start = Instant::now();
            let id = request_id(&req);
            req.extensions_mut().insert(RequestId(id.clone()));
            // Every trace the request leaves is durable before its response leaves.
            let pending = PendingTraces::default();
            req.extensions_mut().insert(pending.clone());
            let method = req.method().to_string();
            // The route template (`/fhir/{type}/{id}`), never the concrete path: ids
            // and query strings can carry health data.
            let route = req.match_pattern().unwrap_or_else(|| "(unmatched)".into());
            let fut = srv.call(req);
            async move {
                let res = fut.await;
                let mut traced = true;
                for receipt in pending.take() {
                    let answer =
                        tokio::time::timeout(crate::repository::TRACE_WAIT_LIMIT, receipt).await;
                    traced &= matches!(answer, Ok(Ok(Ok(()))));
                }
                let mut res = res?;
                if !traced {
                    let e = crate::error::FhirError::Unavailable(
                        "the access could not be traced; retry".into(),
                    );
                    let neg = super::extract::negotiated(res.request()).unwrap_or_default();
                    let (req, _) = res.into_parts();
                    res = actix_web::dev::ServiceResponse::new(
                        req,
                        super::response::error_response(neg, &e),
                    );
                }
                let status = res.status().as_u16();
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
                    res.headers_mut().insert(
                        actix_web::http::header::HeaderName::from_static("x-request-id"),
                        v,
                    );
                }
                tracing::info!(
                    request_id = %id,
                    method = %method,
                    route = %route,
                    status,
                    duration_ms = start.elapsed().as_secs_f64() * 1000.0,
                    "request"
                );
                Ok(res.map_into_boxed_body())
            }
        })
        .service(
            web::scope("/auth")
                .wrap_fn(|req, srv| {
                    // Answered here (still logged, still given its request id).
                    let (call, refused) = match super::oauth::refuse_unreadable(&req) {
                        Some(page) => (None, Some(req.into_response(page))),
                        None => (Some(srv.call(req)), None),
                    };
                    async move {
                        match (call, refused) {
                            (Some(f), _) => f.await.map(|r| r.map_into_boxed_body()),
                            (None, Some(r)) => Ok(r.map_into_boxed_body()),
                            (None, None) => unreachable!(),
                        }
                    }
                })
                .app_data(web::QueryConfig::default().error_handler(super::oauth::query_error))
                .service(
                    web::resource("/token")
                        .route(web::post().to(super::oauth::token))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/jwks")
                        .route(web::get().to(super::oauth::jwks))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/apps")
                        .route(web::get().to(super::oauth::apps))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/apps/{client_id}")
                        .route(web::delete().to(super::oauth::revoke_app))
                        .default_service(web::to(method_not_allowed)),
                )
                .route("/authorize", web::get().to(super::oauth::authorize))
                .route("/login/{provider}", web::get().to(super::oauth::login))
                .route(
                    "/callback/{provider}",
                    web::get().to(super::oauth::callback),
                )
                .route("/consent/{id}", web::get().to(super::oauth::consent_page))
                .route(
                    "/consent/{id}",
                    web::post().to(super::oauth::consent_decision),
                )
                .service(
                    web::resource("/revoke")
                        .route(web::post().to(super::oauth::revoke))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/introspect")
                        .route(web::post().to(super::oauth::introspect))
                        .default_service(web::to(method_not_allowed)),
                )
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(super::oauth::openid_configuration),
                ),
        )
        .service(web::scope(&base_path).configure(routes))
        .default_service(web::to(not_found))
}
