//! fhir: FHIR R4 semantics that depend on neither HTTP nor the database: which types Carnet
//! serves, validation against the official definitions, wire formats, instants, references,
//! Bundles and interaction parameters.

pub mod bundle;
pub mod compartment;
pub mod definitions;
pub mod fhirpath;
pub mod format;
pub mod index;
pub mod instant;
pub mod limits;
pub mod params;
pub mod patch;
pub mod references;
pub mod resource_types;
pub mod search_params;
pub mod search_query;
pub mod subset;
pub mod validate;
