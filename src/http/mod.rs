//! http: the actix-web layer, on top of everything. Handlers are thin: they turn a request
//! into a typed call and the result into a response (`fhir/` for the FHIR REST API,
//! `oauth` for the authorization server's endpoints); `extract` reads what a request says,
//! `response` renders results and errors, `routes` builds the application.
//!
//! Must never: decide access, touch the database, or build FHIR content beyond wrapping
//! what `crate::fhir` and the repository return.

pub mod extract;
pub mod fhir;
pub mod oauth;
pub mod reply;
pub mod response;
pub mod routes;
pub mod state;

pub use routes::app;
pub use state::AppState;
