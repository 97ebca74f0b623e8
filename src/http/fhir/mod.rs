//! fhir: the FHIR REST handlers, one file per interaction family. Each turns the HTTP
//! request into a typed call on the repository and the result into a response, nothing
//! else: parameters are parsed and Bundles built by `crate::fhir`, access is decided
//! inside the repository.

pub mod bundle;
pub mod capability;
pub mod history;
pub mod instance;
pub mod metadata;
pub mod search;
