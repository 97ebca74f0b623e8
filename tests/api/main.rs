//! Carnet's API test suite: one binary, the real server on a random port, each behaviour
//! case run on SQLite and on PostgreSQL.

mod helpers;
mod oidc;

mod auth;
mod backend_services;
mod bad_input;
mod bundles;
mod capability;
mod concurrency;
mod consent;
mod consent_oracle;
mod consent_oracle_control;
mod consent_property;
mod everything;
mod fuzz;
mod hostile;
mod layers;
mod notifications;
mod patient_control;
mod pg_restart;
mod rest;
mod round_trip;
mod search;
mod shutdown;
mod smart_launch;
mod trail;
