//! auth: who is asking. The only module that can build a [`RequestContext`].
//!
//! Every FHIR request but `metadata` carries a bearer token (`Authorization: Bearer …`),
//! signed by this server ([`token`]); its claims become the request context: the actor
//! (patient, practitioner or backend client), the SMART scopes granted ([`scopes`]) and the
//! patient in context. What the context may then see is decided by the access point
//! (`crate::access`), not here.
//!
//! `carnet serve --dev` also accepts the tokens `carnet dev-token` prints (signed with the
//! same key from the data directory, marked `dev`); a server without `--dev` refuses them.

pub mod keys;
pub mod scopes;
pub mod token;

use actix_web::{dev::Payload, http::StatusCode, FromRequest, HttpMessage, HttpRequest};
use actix_web::{HttpResponse, ResponseError};

pub use scopes::{Permission, Scopes};
use serde_json::Value;
use token::{Claims, TokenError, TokenService};

/// Who is behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A patient (FranceConnect identity), by Patient id.
    Patient(String),
    /// A health professional (Pro Santé Connect identity), by Practitioner id.
    Practitioner(String),
    /// A backend service (hospital information system), by client id.
    System(String),
}

/// The request id given to every request (echoed as `X-Request-Id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is asking, with which grants: built here, and only here, for every request.
/// There is deliberately no `Default` and no public constructor.
#[derive(Debug, Clone)]
pub struct RequestContext {
    actor: Actor,
    client_id: String,
    scopes: Scopes,
    /// The patient in context: the launch patient of an app's token, or the patient
    /// themself. `patient/` scopes reach this patient's compartment only.
    patient: Option<String>,
    /// Why a professional asks (an emergency opens a record), from the token.
    purpose: crate::consent::Purpose,
    /// The request's clock, in microseconds since the epoch (the time the consent rules are
    /// evaluated at). Only development tokens may move it (`X-Carnet-Now`), for tests.
    now_us: i64,
    request_id: String,
    /// Carnet's own patient portal (see `Claims::first_party`).
    first_party: bool,
    /// The grant the token was issued under (None for development tokens).
    grant: Option<String>,
}

impl RequestContext {
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// The patient in context, if any (what `patient/` scopes are bounded to).
    pub fn launch_patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// A stable name for whoever is asking (what a search snapshot is bound to).
    pub fn principal(&self) -> String {
        let who = self.subject();
        // Bound to the grants too: a new launch (another patient, other scopes) by the same
        // user and app must not open the previous search's pages.
        format!(
            "{who} via {} for {} with {}",
            self.client_id,
            self.patient.as_deref().unwrap_or("-"),
            self.scopes
        )
    }

    pub fn purpose(&self) -> &crate::consent::Purpose {
        &self.purpose
    }

    /// A patient acting for another patient (a parent for their child): the patient in
    /// context is not themself.
    pub fn acting_for(&self) -> Option<&str> {
        match (&self.actor, self.patient.as_deref()) {
            (Actor::Patient(own), Some(p)) if p != own => Some(p),
            _ => None,
        }
    }

    pub fn now_us(&self) -> i64 {
        self.now_us
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Whether the request comes through Carnet's own patient portal (not a third-party
    /// app): only then may a patient lift a block or unmask a document.
    pub fn first_party(&self) -> bool {
        self.first_party
    }

    /// Who is asking: `Patient/X`, `Practitioner/X`, or `client/C` for a backend service.
    pub fn subject(&self) -> String {
        match &self.actor {
            Actor::Patient(id) => format!("Patient/{id}"),
            Actor::Practitioner(id) => format!("Practitioner/{id}"),
            Actor::System(client) => format!("client/{client}"),
        }
    }

    /// Who this request is, as a Subscription records its owner: the token's subject,
    /// client, scopes and patient in context (no purpose of use: an emergency is declared
    /// per request, never for a standing subscription).
    pub fn owner(&self) -> Value {
        serde_json::json!({"sub": self.subject(), "client_id": self.client_id,
            "scope": self.scopes.to_string(), "patient": self.patient, "grant": self.grant})
    }

    /// The context a Subscription's notifications are judged in: its owner's, at `now_us`.
    pub fn of_owner(owner: &Value, request_id: &str, now_us: i64) -> Option<RequestContext> {
        let text = |k: &str| owner.get(k).and_then(Value::as_str).map(str::to_string);
        let claims = Claims {
            iss: String::new(),
            aud: String::new(),
            sub: text("sub")?,
            client_id: text("client_id")?,
            scope: text("scope")?,
            patient: text("patient"),
            iat: 0,
            exp: 0,
            jti: String::new(),
            grant: text("grant"),
            dev: false,
            purpose_of_use: None,
            purpose_reason: None,
            regulation: false,
            first_party: false,
        };
        RequestContext::from_claims(claims, request_id.to_string(), now_us).ok()
    }

    fn from_claims(
        claims: Claims,
        request_id: String,
        now_us: i64,
    ) -> Result<RequestContext, AuthFailure> {
        let scopes = Scopes::parse(&claims.scope);
        let valid = |id: &str| crate::fhir::resource_types::is_valid_id(id);
        let invalid = || AuthFailure::Unauthorized(TokenError::Invalid("unknown subject".into()));
        let actor = if let Some(id) = claims.sub.strip_prefix("Patient/") {
            Actor::Patient(id.to_string())
        } else if let Some(id) = claims.sub.strip_prefix("Practitioner/") {
            Actor::Practitioner(id.to_string())
        } else if let Some(id) = claims.sub.strip_prefix("client/") {
            Actor::System(id.to_string())
        } else {
            return Err(invalid());
        };
        if let Actor::Patient(id) | Actor::Practitioner(id) = &actor {
            if !valid(id) {
                return Err(invalid());
            }
        }
        // A patient sees their own record, or the record of the child they act for (the
        // guardianship is checked by the consent rules on every access); `patient/` scopes
        // need a patient.
        let purpose = purpose_of(&claims);
        let first_party = claims.first_party;
        let grant = claims.grant.clone();
        let patient = match (&actor, claims.patient) {
            (Actor::Patient(_), Some(child)) if valid(&child) => Some(child),
            (Actor::Patient(own), _) => Some(own.clone()),
            (_, Some(launch)) if valid(&launch) => Some(launch),
            (_, Some(_)) => return Err(invalid()),
            (_, None) if scopes.has_patient_scopes() => {
                return Err(AuthFailure::Forbidden(
                    "patient/ scopes need a patient in context (launch/patient)".into(),
                ))
            }
            (_, None) => None,
        };
        Ok(RequestContext {
            actor,
            client_id: claims.client_id,
            scopes,
            patient,
            purpose,
            now_us,
            request_id,
            first_party,
            grant,
        })
    }
}

/// The purpose of use a token declares, as the consent rules read it.
fn purpose_of(claims: &Claims) -> crate::consent::Purpose {
    use crate::consent::Purpose;
    let declared_at = claims.iat.saturating_mul(1_000_000);
    let reason = claims
        .purpose_reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    match claims.purpose_of_use.as_deref() {
        Some("BTG") => match reason {
            Some(r) => Purpose::Emergency {
                reason: r.to_string(),
                declared_at,
                patient: claims.patient.clone(),
            },
            None => Purpose::Invalid("an emergency access (BTG) needs a written reason".into()),
        },
        Some("ETREAT") if claims.regulation => Purpose::Regulation {
            declared_at,
            patient: claims.patient.clone(),
        },
        Some("ETREAT") => Purpose::Invalid(
            "emergency treatment (ETREAT) is for the SAMU regulating doctor only".into(),
        ),
        _ => Purpose::Normal,
    }
}

/// What checks the bearer token of each request (registered as app data).
pub struct Authenticator {
    pub tokens: TokenService,
    /// Where the authorization server's endpoints are.
    pub endpoints: crate::oauth::Endpoints,
    /// Whether a token's grant still stands (not revoked, its client registered and not
    /// suspended): asked on every request, so that revocation and suspension act at once.
    pub grant_active: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

/// A request without acceptable credentials: 401 with `WWW-Authenticate`, or 403.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("this request needs an access token (Authorization: Bearer …)")]
    Missing,
    #[error("{0}")]
    Unauthorized(TokenError),
    #[error("{0}")]
    Forbidden(String),
}

impl ResponseError for AuthFailure {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthFailure::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let challenge = match self {
            AuthFailure::Missing => r#"Bearer realm="carnet""#.to_string(),
            AuthFailure::Unauthorized(e) => format!(
                r#"Bearer realm="carnet", error="invalid_token", error_description="{}""#,
                e.to_string().replace('"', "'")
            ),
            AuthFailure::Forbidden(_) => {
                r#"Bearer realm="carnet", error="insufficient_scope""#.to_string()
            }
        };
        let code = match self {
            AuthFailure::Forbidden(_) => "forbidden",
            _ => "login",
        };
        let outcome = serde_json::json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": code, "diagnostics": self.to_string()}]});
        HttpResponse::build(self.status_code())
            .insert_header(("WWW-Authenticate", challenge))
            .content_type("application/fhir+json")
            .body(outcome.to_string())
    }
}

/// Checks the bearer token itself (signature, issuer, audience, expiry): no database.
/// Returns the claims and the authenticator (for the grant check that follows).
fn verify_bearer(
    req: &HttpRequest,
) -> Result<(Claims, actix_web::web::Data<Authenticator>), AuthFailure> {
    let auth = req
        .app_data::<actix_web::web::Data<Authenticator>>()
        .expect("Authenticator is registered with the app")
        .clone();
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthFailure::Missing)?;
    // The scheme is case-insensitive (RFC 7235).
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or(AuthFailure::Missing)?;
    let claims = auth
        .tokens
        .verify(token)
        .map_err(AuthFailure::Unauthorized)?;
    Ok((claims, auth))
}

fn revoked() -> AuthFailure {
    AuthFailure::Unauthorized(TokenError::Invalid(
        "the token was revoked, or its client application is suspended".into(),
    ))
}

impl FromRequest for RequestContext {
    type Error = AuthFailure;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let verified = verify_bearer(req);
        // Tests move the clock with a development token (an INVISIBLE_PATIENT document
        // appears a month after filing); real tokens never can.
        let clock = req
            .headers()
            .get("X-Carnet-Now")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::fhir::instant::parse_us);
        Box::pin(async move {
            let (claims, auth) = verified?;
            // Development tokens name no grant (and exist only with --dev). Any other token's
            // grant is looked up on every request (revocation and suspension act at once),
            // on the blocking pool: it is a database query.
            if !claims.dev {
                let grant = claims.grant.clone().ok_or_else(revoked)?;
                let active = actix_web::web::block(move || (auth.grant_active)(&grant))
                    .await
                    .unwrap_or(false);
                if !active {
                    return Err(revoked());
                }
            }
            let now = match clock {
                Some(t) if claims.dev => t,
                _ => crate::fhir::instant::now_us(),
            };
            RequestContext::from_claims(claims, request_id, now)
        })
    }
}

/// What `carnet dev-token` signs for.
#[derive(Debug, Clone)]
pub enum DevSubject {
    Patient(String),
    Practitioner(String),
    System,
}

/// The optional parts of a development token.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// For a patient: the child they act for; for a professional: the patient an emergency
    /// is declared for (the patient in context).
    pub acting_for: Option<String>,
    /// For a professional: `BTG` or `ETREAT`, with the written reason.
    pub purpose: Option<String>,
    pub reason: Option<String>,
    /// For a professional: acting as the SAMU regulating doctor.
    pub regulation: bool,
    /// As a third-party app (a development token otherwise stands for Carnet's own
    /// portal): cannot lift a block or unmask.
    pub third_party_app: bool,
}

/// A development token (accepted by `carnet serve --dev` only) for `subject`, with `scope`
/// (default: everything the subject's kind may have), valid `lifetime_s` seconds.
pub fn dev_token(
    tokens: &TokenService,
    subject: &DevSubject,
    scope: Option<&str>,
    lifetime_s: i64,
) -> Result<String, String> {
    dev_token_with(tokens, subject, scope, lifetime_s, &DevOptions::default())
}

/// [`dev_token`] with a purpose of use or a child in context.
pub fn dev_token_with(
    tokens: &TokenService,
    subject: &DevSubject,
    scope: Option<&str>,
    lifetime_s: i64,
    options: &DevOptions,
) -> Result<String, String> {
    let (sub, default_scope, patient) = match subject {
        DevSubject::Patient(id) => (
            format!("Patient/{id}"),
            "openid fhirUser patient/*.cruds",
            Some(options.acting_for.clone().unwrap_or_else(|| id.clone())),
        ),
        DevSubject::Practitioner(id) => (
            format!("Practitioner/{id}"),
            "openid fhirUser user/*.cruds",
            options.acting_for.clone(),
        ),
        DevSubject::System => ("client/carnet-dev".to_string(), "system/*.cruds", None),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        iss: token::ISSUER.into(),
        aud: token::AUDIENCE.into(),
        sub,
        client_id: "carnet-dev".into(),
        scope: scope.unwrap_or(default_scope).to_string(),
        patient,
        iat: now,
        exp: now + lifetime_s,
        jti: uuid::Uuid::new_v4().to_string(),
        grant: None,
        dev: true,
        purpose_of_use: options.purpose.clone(),
        purpose_reason: options.reason.clone(),
        regulation: options.regulation,
        first_party: !options.third_party_app,
    };
    tokens.issue(&claims)
}
