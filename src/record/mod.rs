//! record: the dossier's features, each a room of its own that registers what it does
//! when resources are written ([`crate::repository::WriteHook`]). Documents and the
//! patient's rules today; vaccination, agenda and messaging land here as they come
//! (docs/architecture.md). `app::write_hooks` registers them, in order.
//!
//! Must never: reach storage except through the repository, or decide access.

pub mod documents;
pub mod rules;
