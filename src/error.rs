//! error: everything that can go wrong in a FHIR interaction, and its one mapping to an
//! HTTP status plus an OperationOutcome.
//!
//! Internal causes (SQL, I/O) are logged here and never shown to the client.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

/// One problem found in a resource, with the FHIRPath of the element at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub code: &'static str,
    pub expression: Option<String>,
    pub diagnostics: String,
}

impl Issue {
    pub fn invalid(expression: impl Into<String>, diagnostics: impl Into<String>) -> Issue {
        Issue {
            code: "structure",
            expression: Some(expression.into()),
            diagnostics: diagnostics.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("resource type '{0}' is not supported by this server")]
    UnsupportedType(String),
    #[error("the resource is not valid FHIR R4")]
    Invalid(Vec<Issue>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("the request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The input passes one of the configured limits (`fhir::limits`): the message names it.
    #[error("{0}")]
    TooCostly(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotImplemented(String),
    /// No acceptable credentials (401 with a Bearer challenge; `invalid_token` when a token
    /// was given but refused).
    #[error("{message}")]
    Unauthorized { message: String, token_given: bool },
    #[error("{0}")]
    Forbidden(String),
    /// The access token's scopes do not cover the interaction (403 with a Bearer
    /// `insufficient_scope` challenge).
    #[error("{0}")]
    InsufficientScope(String),
    #[error("{0}")]
    Unprocessable(String),
    /// The database is busy (lock timeout, pool exhausted): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an outage: the cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

impl FhirError {
    pub fn status(&self) -> StatusCode {
        match self {
            FhirError::NotFound(_) | FhirError::UnsupportedType(_) => StatusCode::NOT_FOUND,
            FhirError::Gone(_) => StatusCode::GONE,
            FhirError::Invalid(_) | FhirError::BadRequest(_) | FhirError::TooCostly(_) => {
                StatusCode::BAD_REQUEST
            }
            FhirError::Conflict(_) => StatusCode::CONFLICT,
            FhirError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            FhirError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FhirError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            FhirError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            FhirError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            FhirError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            FhirError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            FhirError::Forbidden(_) | FhirError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            FhirError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            FhirError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FhirError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn issue_code(&self) -> &'static str {
        match self {
            FhirError::NotFound(_) | FhirError::Gone(_) => "not-found",
            FhirError::UnsupportedType(_) | FhirError::NotImplemented(_) => "not-supported",
            FhirError::Invalid(_) => "structure",
            FhirError::BadRequest(_) | FhirError::Unprocessable(_) => "invalid",
            FhirError::Conflict(_) | FhirError::PreconditionFailed(_) => "conflict",
            FhirError::UnsupportedMediaType(_) | FhirError::NotAcceptable(_) => "not-supported",
            FhirError::PayloadTooLarge(_) | FhirError::TooCostly(_) => "too-costly",
            FhirError::MethodNotAllowed(_) => "not-supported",
            FhirError::Unauthorized { .. } => "login",
            FhirError::Forbidden(_) | FhirError::InsufficientScope(_) => "forbidden",
            FhirError::Unavailable(_) => "transient",
            FhirError::Internal(_) => "exception",
        }
    }

    /// The `WWW-Authenticate` challenge that goes with this error, if any (RFC 6750).
    pub fn challenge(&self) -> Option<String> {
        match self {
            FhirError::Unauthorized {
                token_given: false, ..
            } => Some(r#"Bearer realm="carnet""#.to_string()),
            FhirError::Unauthorized { message, .. } => Some(format!(
                r#"Bearer realm="carnet", error="invalid_token", error_description="{}""#,
                message.replace('"', "'")
            )),
            FhirError::InsufficientScope(_) => {
                Some(r#"Bearer realm="carnet", error="insufficient_scope""#.to_string())
            }
            _ => None,
        }
    }

    /// What a resource the requester may not see answers: exactly what an absent one does
    /// (the one place this answer is worded; `id` may be `id/_history/vid`).
    pub fn hidden(resource_type: &str, id: &str) -> FhirError {
        FhirError::NotFound(format!("{resource_type}/{id} is not known"))
    }

    /// The OperationOutcome that tells the client what went wrong.
    pub fn outcome(&self) -> Value {
        let issues: Vec<Value> = match self {
            FhirError::Invalid(issues) => issues
                .iter()
                .map(|i| {
                    let mut v =
                        json!({"severity": "error", "code": i.code, "diagnostics": i.diagnostics});
                    if let Some(e) = &i.expression {
                        v["expression"] = json!([e]);
                    }
                    v
                })
                .collect(),
            FhirError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                vec![json!({"severity": "fatal", "code": "exception",
                    "diagnostics": "internal error; the server log has the details"})]
            }
            other => vec![json!({"severity": "error", "code": other.issue_code(),
                "diagnostics": other.to_string()})],
        };
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

impl From<actix_web::error::BlockingError> for FhirError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        FhirError::Internal(format!("blocking task failed: {e}"))
    }
}

/// An informational OperationOutcome (e.g. for `Prefer: return=OperationOutcome`).
pub fn information(diagnostics: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": diagnostics}
    ]})
}
