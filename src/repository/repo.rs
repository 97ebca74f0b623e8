//! repo: the repository itself: what it holds (storage, the access point, the trail's
//! group commit, caches, the write hooks features registered) and the pages and outcomes
//! its interactions return. The interactions are in `read`, `write`, `search`,
//! `transaction`.

use std::sync::Arc;

use super::caches::{ProfessionsCache, Recorded, RulesCache};
use super::group_commit::Writer;
use super::hooks::{Hooks, WriteHook};
use super::storage::{Backend, Storage};
use crate::access::{AccessPoint, Visible};
use crate::resource::StoredResource;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Created,
    Updated,
    /// Conditional create found the resource already there: nothing written.
    Existing,
    Deleted,
    /// Delete of a resource already deleted: nothing written.
    AlreadyDeleted,
}

#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub status: WriteStatus,
    pub resource: Visible<StoredResource>,
}

/// A page of history, newest first, and the cursor of the next page.
pub struct HistoryPage {
    pub entries: Vec<Visible<StoredResource>>,
    pub next_cursor: Option<i64>,
}

/// A page of search results: matches that passed the access point, the total after
/// filtering, and the snapshot later pages are read from (when there are any).
pub struct SearchPage {
    pub entries: Vec<Visible<StoredResource>>,
    /// Resources brought in by _include/_revinclude (search.mode include).
    pub included: Vec<Visible<StoredResource>>,
    /// Whether `_include`/`_revinclude` would have brought in more than the limit allows.
    pub included_truncated: bool,
    pub total: i64,
    pub snapshot: Option<String>,
    pub offset: i64,
    pub count: i64,
}

/// Which history to list.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub since_us: Option<i64>,
    pub cursor: Option<i64>,
    pub count: i64,
}

#[derive(Clone)]
pub struct Repository {
    pub(super) storage: Storage,
    pub(super) access: AccessPoint,
    /// The access log's one writer (the group commit of reads' traces), started with the
    /// first trace.
    pub(super) audit: Arc<std::sync::OnceLock<Writer>>,
    /// Notices known recorded (a professional's first access is recorded once).
    pub(super) notified: Arc<Recorded>,
    /// Patients' rules as last read (checked against their stamp on every use).
    pub(super) rules_cache: Arc<RulesCache>,
    /// Professionals' professions as last read (checked against their stamp on every use).
    pub(super) professions_cache: Arc<ProfessionsCache>,
    /// What features do when a resource is written (in the write's transaction).
    pub(super) hooks: Hooks,
    /// This server's FHIR base URL: absolute references under it are local ones.
    pub(super) base_url: String,
    /// Limits on input (Bundle entries and reads, include fan-out).
    pub(super) limits: crate::fhir::limits::Limits,
}

impl Repository {
    /// Opens the database (running its migrations) behind a new repository, with no write
    /// hooks: a repository that writes FHIR resources must register the features' hooks
    /// (`app::write_hooks`), or a patient's new rules would not reach the cached copies.
    pub fn open(
        database_url: &str,
        pool_size: u32,
        access: AccessPoint,
        base_url: &str,
    ) -> Result<Repository, String> {
        Ok(Repository {
            storage: Storage::open(database_url, pool_size)?,
            access,
            audit: Default::default(),
            notified: Default::default(),
            rules_cache: Default::default(),
            professions_cache: Default::default(),
            hooks: Hooks::default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            limits: Default::default(),
        })
    }

    /// The same repository under other input limits.
    pub fn with_limits(mut self, limits: crate::fhir::limits::Limits) -> Repository {
        self.limits = limits;
        self
    }

    pub fn backend(&self) -> Backend {
        self.storage.backend()
    }

    /// Registers what a feature does when resources are written (see [`WriteHook`]).
    pub fn with_hook(mut self, hook: Arc<dyn WriteHook>) -> Repository {
        self.hooks.register(hook);
        self
    }
}
