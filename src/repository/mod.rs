//! repository: the FHIR interactions (create, conditional create, read, vread, update,
//! delete, history, search, batch and transaction) over storage, independent of HTTP.
//!
//! Every resource leaves this module as a [`Visible`](crate::access::Visible), which only
//! the access-decision point can make; storage is a private child module, so nothing else
//! can read the database. Features (documents, subscriptions, notices…) do not live here:
//! they register [`WriteHook`]s, and the repository never names one.
//!
//! Must never: serialise for the wire, decide access itself, or import a feature.

mod audit;
mod caches;
mod consent_facts;
mod group_commit;
mod hooks;
pub mod notices;
mod notify;
mod oauth_store;
mod read;
mod repo;
mod rows;
mod search;
mod storage;
pub mod subscriptions;
mod trace;
pub mod transaction;
mod write;

pub use crate::resource::StoredResource;
pub use consent_facts::professions_stamp_key;
pub use group_commit::WAIT_LIMIT as TRACE_WAIT_LIMIT;
pub use hooks::{HookTx, WriteHook, Written};
pub use oauth_store::{AuthorizationRow, GrantRow, OAuthStore, RefreshRow};
pub use repo::{HistoryPage, HistoryRequest, Repository, SearchPage, WriteOutcome, WriteStatus};
pub use rows::check_type;
pub use storage::clients::{ClientRow, ESTABLISHMENT, REGISTRY};
pub use storage::{redact_url, Backend};
pub use subscriptions::Outgoing;
