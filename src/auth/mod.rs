//! auth: who is asking. The only module that can build a [`RequestContext`].
//!
//! Until the identity issue lands there is no authentication: every request is
//! [`Actor::Unauthenticated`], and the access-decision point (which allows everything for
//! now) is still called on every read and write, so that the consent engine can be filled
//! in without touching any read path.

use actix_web::{dev::Payload, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};

/// Who is behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// No credentials were checked (the core server before identity is configured).
    Unauthenticated,
}

/// The request id given to every request (echoed as `X-Request-Id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is asking, for what purpose: built here, and only here, for every request.
/// There is deliberately no `Default` and no public constructor.
#[derive(Debug, Clone)]
pub struct RequestContext {
    actor: Actor,
    /// Purpose of use (e.g. `TREAT`, `BTG`), when the credentials carry one.
    purpose_of_use: Option<String>,
    request_id: String,
}

impl RequestContext {
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// A stable name for whoever is asking (what a search snapshot is bound to).
    pub fn principal(&self) -> String {
        match &self.actor {
            Actor::Unauthenticated => "anonymous".to_string(),
        }
    }

    pub fn purpose_of_use(&self) -> Option<&str> {
        self.purpose_of_use.as_deref()
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn from_http(req: &HttpRequest) -> RequestContext {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        RequestContext {
            actor: Actor::Unauthenticated,
            purpose_of_use: None,
            request_id,
        }
    }
}

impl FromRequest for RequestContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(RequestContext::from_http(req)))
    }
}
