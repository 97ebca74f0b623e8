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

pub use scopes::{Permission, Scopes};
use serde_json::Value;
use token::{Claims, TokenError, TokenService};

use crate::error::FhirError;

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

/// What a backend service (an [`Actor::System`]) may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemRole {
    /// Carnet's own services and development tokens: everything their scopes allow.
    Full,
    /// A backend service filing data: creates for a patient, finds and reads the Patient
    /// it files for, reads back (and changes) only what it filed itself.
    Filing,
    /// The identity and account registry: Patient, RelatedPerson, guardianship, the
    /// directory; no clinical data.
    Registry,
}

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
    /// Where the request's traces wait to be durable before its response leaves (None:
    /// whoever traces waits for the commit itself).
    pending: Option<PendingTraces>,
    /// What a backend service may reach (Full for everyone else: not asked).
    system_role: SystemRole,
    /// The establishment a professional's token was obtained by (`Organization/ID`), and
    /// its name.
    establishment: Option<(String, Option<String>)>,
    /// The subject's name, when the token carries it.
    name: Option<String>,
}

/// The answer of the access log's group commit for one request's traces: `Ok` once they
/// are on disk.
pub type TraceReceipt = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// The traces of one HTTP request waiting for their commit: the HTTP layer holds the
/// response until every one is durable (and answers 503 if one failed), so that waiting
/// holds neither a pooled connection nor a blocking thread.
#[derive(Clone, Default)]
pub struct PendingTraces(std::sync::Arc<std::sync::Mutex<Vec<TraceReceipt>>>);

impl PendingTraces {
    pub fn push(&self, receipt: TraceReceipt) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(receipt);
    }

    pub fn take(&self) -> Vec<TraceReceipt> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::fmt::Debug for PendingTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingTraces")
    }
}

impl RequestContext {
    /// The same context, its traces awaited by the HTTP layer through `pending`.
    pub fn awaited_by(mut self, pending: PendingTraces) -> RequestContext {
        self.pending = Some(pending);
        self
    }

    /// Where this request's traces wait for their commit, if the HTTP layer awaits them.
    pub fn pending_traces(&self) -> Option<&PendingTraces> {
        self.pending.as_ref()
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// What a backend service may reach.
    pub fn system_role(&self) -> SystemRole {
        self.system_role
    }

    /// The establishment acting for this professional (`Organization/ID`), and its name.
    pub fn establishment(&self) -> Option<(&str, Option<&str>)> {
        self.establishment
            .as_ref()
            .map(|(r, n)| (r.as_str(), n.as_deref()))
    }

    /// The subject's name for people, when known.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The grant the token was issued under (None for development tokens).
    pub fn grant(&self) -> Option<&str> {
        self.grant.as_deref()
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
            "scope": self.scopes.to_string(), "patient": self.patient, "grant": self.grant,
            "client_role": role_claim(self.system_role),
            "establishment": self.establishment.as_ref().map(|e| e.0.trim_start_matches("Organization/")),
            "dev": self.system_role == SystemRole::Full && matches!(self.actor, Actor::System(_))})
    }

    /// The context a Subscription's notifications are judged in: its owner's (as
    /// [`Self::owner`] recorded it when the Subscription was written), at `now_us`. Only the
    /// subscription delivery asks for one; the grant it names is checked by the caller.
    pub(crate) fn of_subscription_owner(
        owner: &Value,
        request_id: &str,
        now_us: i64,
    ) -> Option<RequestContext> {
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
            // A development system token's subscription keeps its full reach (it exists
            // with --dev only); nothing else is carried over but the recorded grants.
            dev: owner.get("dev").and_then(Value::as_bool) == Some(true) && text("grant").is_none(),
            purpose_of_use: None,
            purpose_reason: None,
            regulation: false,
            first_party: false,
            client_role: text("client_role"),
            establishment: text("establishment"),
            establishment_name: None,
            name: None,
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
        let system_role = match (&actor, claims.client_role.as_deref()) {
            (Actor::System(c), _) if claims.dev || c == SERVICE_CLIENT => SystemRole::Full,
            (Actor::System(_), Some("registry")) => SystemRole::Registry,
            (Actor::System(_), _) => SystemRole::Filing,
            _ => SystemRole::Full,
        };
        let establishment = match (&actor, claims.establishment) {
            (Actor::Practitioner(_), Some(org)) if valid(&org) => {
                Some((format!("Organization/{org}"), claims.establishment_name))
            }
            (_, Some(_)) => return Err(invalid()),
            _ => None,
        };
        let name = claims.name;
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
            pending: None,
            system_role,
            establishment,
            name,
        })
    }
}

/// The `client_role` claim of a backend service's role.
fn role_claim(role: SystemRole) -> Option<&'static str> {
    match role {
        SystemRole::Registry => Some("registry"),
        _ => None,
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

/// Carnet's own work that reads or writes the record outside any request (a job, the
/// login linking): each has a fixed, narrow grant, and its accesses are traced as
/// `client/carnet` like any backend service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Finding the Patient or Practitioner a person logging in upstream is (by the
    /// identifier their provider vouches for).
    LoginLinking,
    /// Finding the professional an establishment acts for, and their roles there.
    EstablishmentDirectory,
}

impl Service {
    fn scope(self) -> &'static str {
        match self {
            Service::LoginLinking => "system/Patient.rs system/Practitioner.rs",
            Service::EstablishmentDirectory => "system/Practitioner.rs system/PractitionerRole.rs",
        }
    }
}

impl RequestContext {
    /// The context of one of Carnet's own services, at the current time.
    pub(crate) fn service(service: Service, request_id: &str) -> RequestContext {
        RequestContext {
            actor: Actor::System(SERVICE_CLIENT.to_string()),
            client_id: SERVICE_CLIENT.to_string(),
            scopes: Scopes::parse(service.scope()),
            patient: None,
            purpose: crate::consent::Purpose::Normal,
            now_us: crate::fhir::instant::now_us(),
            request_id: request_id.to_string(),
            first_party: false,
            grant: None,
            pending: None,
            system_role: SystemRole::Full,
            establishment: None,
            name: None,
        }
    }
}

/// The client id Carnet's own services act as.
pub const SERVICE_CLIENT: &str = "carnet";

/// Whether a grant stands: `(grant id, may wait)` → None when it cannot be told at once.
pub type GrantCheck = Box<dyn Fn(&str, bool) -> Option<bool> + Send + Sync>;

/// What checks the bearer token of each request.
pub struct Authenticator {
    pub tokens: TokenService,
    /// Whether a token's grant still stands (not revoked, its client registered and not
    /// suspended): asked on every request, so that revocation and suspension act at once.
    /// Without its second argument (may wait), None when it cannot be told at once.
    pub grant_active: GrantCheck,
}

/// A request without acceptable credentials: 401 with `WWW-Authenticate`, or 403. Rendered
/// as every other error, through [`FhirError`].
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("this request needs an access token (Authorization: Bearer …)")]
    Missing,
    #[error("{0}")]
    Unauthorized(TokenError),
    #[error("{0}")]
    Forbidden(String),
}

impl From<AuthFailure> for FhirError {
    fn from(f: AuthFailure) -> FhirError {
        match f {
            AuthFailure::Missing => FhirError::Unauthorized {
                message: f.to_string(),
                token_given: false,
            },
            AuthFailure::Unauthorized(e) => FhirError::Unauthorized {
                message: e.to_string(),
                token_given: true,
            },
            AuthFailure::Forbidden(why) => FhirError::InsufficientScope(why),
        }
    }
}

/// A bearer token whose signature, issuer, audience and expiry were checked (no database
/// yet): [`Authenticator::context`] makes the request context of it.
pub struct Verified(Claims);

impl Verified {
    /// The grant to look up before the token is accepted (None for development tokens,
    /// which exist only with `--dev`).
    pub fn grant(&self) -> Option<&str> {
        self.0.grant.as_deref()
    }
}

fn revoked() -> AuthFailure {
    AuthFailure::Unauthorized(TokenError::Invalid(
        "the token was revoked, or its client application is suspended".into(),
    ))
}

impl Authenticator {
    /// Checks the `Authorization` header's bearer token itself: no database.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Verified, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::Missing)?;
        // The scheme is case-insensitive (RFC 7235).
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        let claims = self
            .tokens
            .verify(token)
            .map_err(AuthFailure::Unauthorized)?;
        if !claims.dev && claims.grant.is_none() {
            return Err(revoked());
        }
        Ok(Verified(claims))
    }

    /// Whether the token's grant still stands (a database query: call it off the async
    /// workers). Development tokens name no grant.
    pub fn check_grant(&self, verified: &Verified) -> Result<(), AuthFailure> {
        match verified.grant() {
            Some(grant) if (self.grant_active)(grant, true) != Some(true) => Err(revoked()),
            _ => Ok(()),
        }
    }

    /// The same check when it can be made at once on the async worker (an embedded
    /// database with a connection free); None when it must go to the blocking pool.
    pub fn check_grant_now(&self, verified: &Verified) -> Option<Result<(), AuthFailure>> {
        match verified.grant() {
            Some(grant) => match (self.grant_active)(grant, false)? {
                true => Some(Ok(())),
                false => Some(Err(revoked())),
            },
            None => Some(Ok(())),
        }
    }

    /// The request context of a verified token whose grant was checked. `clock` (the
    /// `X-Carnet-Now` header) moves the request's clock for development tokens only (tests
    /// see an INVISIBLE_PATIENT document appear a month after filing); real tokens never can.
    pub fn context(
        &self,
        verified: Verified,
        request_id: String,
        clock: Option<i64>,
    ) -> Result<RequestContext, AuthFailure> {
        let claims = verified.0;
        let now = match clock {
            Some(t) if claims.dev => t,
            _ => crate::fhir::instant::now_us(),
        };
        RequestContext::from_claims(claims, request_id, now)
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
        client_role: None,
        establishment: None,
        establishment_name: None,
        name: None,
    };
    tokens.issue(&claims)
}
