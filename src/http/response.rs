//! response: turning the result of an interaction into an HTTP response in the
//! negotiated format. Only [`Visible`] resources can be put in a body.

use actix_web::http::header::{HeaderName, HeaderValue, HttpDate};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::Value;

use crate::access::Visible;
use crate::error::FhirError;
use crate::fhir::format::{render_stored, render_value, Format, Negotiated};
use crate::fhir::instant;
use crate::resource::StoredResource;

pub enum Body {
    Empty,
    Resource(Visible<StoredResource>),
    /// A Bundle, OperationOutcome or CapabilityStatement built by the server.
    Value(Value),
}

pub struct FhirResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl FhirResponse {
    pub fn new(status: StatusCode, body: Body) -> FhirResponse {
        FhirResponse {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn header(mut self, name: &'static str, value: String) -> FhirResponse {
        self.headers.push((name, value));
        self
    }

    /// ETag and Last-Modified of a resource version.
    pub fn version_headers(self, r: &StoredResource) -> FhirResponse {
        self.header("ETag", r.etag()).header(
            "Last-Modified",
            HttpDate::from(instant::system_time(r.last_updated_us)).to_string(),
        )
    }
}

/// Renders `result` (or the error's OperationOutcome) in the negotiated format.
pub fn render(neg: Negotiated, result: Result<FhirResponse, FhirError>) -> HttpResponse {
    let response = result.and_then(|r| {
        let bytes = match &r.body {
            Body::Empty => None,
            Body::Resource(res) => Some(render_stored(neg, &res.content)?),
            Body::Value(v) => Some(render_value(neg, v)?),
        };
        Ok((r, bytes))
    });
    match response {
        Ok((r, bytes)) => {
            let mut builder = HttpResponse::build(r.status);
            for (name, value) in r.headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    builder.insert_header((n, v));
                }
            }
            match bytes {
                Some(b) => builder.content_type(neg.format.content_type()).body(b),
                None => builder.finish(),
            }
        }
        Err(e) => error_response(neg, &e),
    }
}

/// The OperationOutcome of an error, in the negotiated format (JSON if that fails).
pub fn error_response(neg: Negotiated, e: &FhirError) -> HttpResponse {
    let outcome = e.outcome();
    let (format, bytes) = match render_value(neg, &outcome) {
        Ok(b) => (neg.format, b),
        Err(_) => (
            Format::Json,
            serde_json::to_vec(&outcome).unwrap_or_default(),
        ),
    };
    let mut builder = HttpResponse::build(e.status());
    if e.status() == StatusCode::METHOD_NOT_ALLOWED {
        builder.insert_header(("Allow", "GET, POST, PUT, DELETE"));
    }
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        builder.insert_header(("Retry-After", "1"));
    }
    if let Some(challenge) = e.challenge() {
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            builder.insert_header(("WWW-Authenticate", v));
        }
    }
    builder.content_type(format.content_type()).body(bytes)
}
