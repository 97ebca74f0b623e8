//! Carnet: a FHIR R4 server holding a person's health record (Mon espace santé style).
//!
//! Layers, top to bottom (docs/architecture.md is the map; `tests/api/layers.rs` checks
//! that imports only point down): `http` → `oauth`, `identity` → `jobs` → features
//! (`subscriptions`, `record`), which register write hooks with → `repository` (FHIR
//! interactions; storage is its private child) → `access` (the one access-decision point,
//! one policy per type) → `auth` (the only builder of a request context) → `consent` (the
//! patient's rules, pure) → `config` → `fhir` (FHIR semantics, no HTTP, no SQL) →
//! `resource` → `error`.

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
