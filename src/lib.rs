//! Carnet: a FHIR R4 server holding a person's health record (Mon espace santé style).
//!
//! Layers, top to bottom: `http` (actix-web handlers) → `repository` (FHIR interactions,
//! with storage as a private child) → `access` (the one access-decision point). `fhir`
//! holds FHIR semantics independent of both; `consent` the patient's rules (pure), which the
//! access point asks; `auth` builds the request context; `oauth` is
//! the authorization server, `identity` the relying party of the upstream login providers.

pub mod access;
pub mod app;
pub mod auth;
pub mod config;
pub mod consent;
pub mod error;
pub mod fhir;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod oauth;
pub mod record;
pub mod repository;
pub mod resource;
pub mod subscriptions;
