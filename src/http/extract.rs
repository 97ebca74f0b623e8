//! extract: what a FHIR request says beyond its path, read strictly (a header that cannot be
//! read is refused, never ignored): the requester's context from the bearer token, the
//! negotiated format, `Prefer`, `If-Match`/`If-None-Match`, and the body (bounded).

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use super::response::error_response;
use super::state::AppState;
use crate::auth::{Authenticator, PendingTraces, RequestContext};
use crate::error::FhirError;
use crate::fhir::format::{body_format, negotiate, parse_body, Negotiated};

/// The request id given to every request (echoed as `X-Request-Id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The request context, from the bearer token (`auth` builds it; this only carries the
/// header there). A refusal is an OperationOutcome like every other error.
impl FromRequest for RequestContext {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let auth = req
            .app_data::<web::Data<Authenticator>>()
            .expect("Authenticator is registered with the app")
            .clone();
        let pending = req.extensions().get::<PendingTraces>().cloned();
        let neg = negotiated(req).unwrap_or_default();
        let refuse = move |e: FhirError| -> actix_web::Error {
            actix_web::error::InternalError::from_response(e.to_string(), error_response(neg, &e))
                .into()
        };
        // Whatever is wrong with the header (absent, not text) is a missing token: 401 with
        // the Bearer challenge, as RFC 6750 has it.
        let authorization = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let verified = auth.verify(authorization).map_err(FhirError::from);
        let clock = req
            .headers()
            .get("X-Carnet-Now")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::fhir::instant::parse_us);
        Box::pin(async move {
            let verified = verified.map_err(&refuse)?;
            // A grant is looked up on every request (revocation and suspension act at
            // once): at once on an embedded database, else on the blocking pool.
            let verified = if let Some(checked) = auth.check_grant_now(&verified) {
                checked.map_err(|e| refuse(e.into()))?;
                verified
            } else {
                let auth = auth.clone();
                web::block(move || auth.check_grant(&verified).map(|()| verified))
                    .await
                    .map_err(|e| refuse(FhirError::from(e)))?
                    .map_err(|e| refuse(e.into()))?
            };
            let ctx = auth
                .context(verified, request_id, clock)
                .map_err(|e| refuse(e.into()))?;
            // The response waits for the request's traces (`routes::app`), not the
            // blocking thread that wrote them.
            Ok(match pending {
                Some(p) => ctx.awaited_by(p),
                None => ctx,
            })
        })
    }
}

/// Headers whose repeated lines mean one comma-separated list (RFC 9110 §5.3).
const LIST_HEADERS: [&str; 4] = ["Prefer", "If-None-Match", "If-Match", "Accept"];

/// A request header Carnet reads, as text: understood, or refused (400) when it is not
/// UTF-8, longer than the limit, or repeated when it is not a list; never ignored.
/// Repeated lines of a list header are joined with commas.
pub(crate) fn header(req: &HttpRequest, name: &str) -> Result<Option<String>, FhirError> {
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

pub(crate) fn negotiated(req: &HttpRequest) -> Result<Negotiated, FhirError> {
    // Accept is negotiation: what Carnet cannot produce falls back to JSON (browsers and
    // curl send `*/*` or `text/html`), but an unreadable one is refused like any header.
    negotiate(req.query_string(), header(req, "Accept")?.as_deref())
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
pub(crate) async fn read_body(
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
pub(crate) async fn fhir_body(
    req: &HttpRequest,
    bytes: BodyBytes,
    state: &AppState,
) -> Result<Value, FhirError> {
    let format = body_format(header(req, "Content-Type")?.as_deref())?;
    // Parsing is CPU work proportional to the body: off the async workers.
    let limits = state.settings.limits;
    web::block(move || parse_body(format, &bytes, &limits)).await?
}

pub(crate) fn parse_if_match(req: &HttpRequest) -> Result<Option<i64>, FhirError> {
    match header(req, "If-Match")? {
        None => Ok(None),
        Some(tag) => crate::repository::transaction::parse_version_tag(&tag).map(Some),
    }
}

/// The entity tags of an `If-None-Match` (`*`, `W/"3"`, `"3"`, comma-separated), or 400.
pub(crate) fn if_none_match(req: &HttpRequest) -> Result<Option<Vec<String>>, FhirError> {
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
pub(crate) enum Prefer {
    Minimal,
    Representation,
    OperationOutcome,
}

/// What a `Prefer` header asks: FHIR's `return=` and `handling=`. A value of those that
/// Carnet does not know is refused (400); other preferences (`respond-async`, `wait`…)
/// are not honoured and, as RFC 7240 §2 has it, do not fail the request.
pub(crate) struct Preferences {
    pub ret: Prefer,
    pub strict: bool,
}

pub(crate) fn preferences(req: &HttpRequest) -> Result<Preferences, FhirError> {
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

pub(crate) fn prefer(req: &HttpRequest) -> Result<Prefer, FhirError> {
    Ok(preferences(req)?.ret)
}
