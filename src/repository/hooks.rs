//! hooks: what features do when a resource is written. A feature (documents, subscriptions,
//! the patient's rules…) implements [`WriteHook`] and is registered with the repository at
//! start-up (`Repository::with_hook`); the repository calls every hook in the write's own
//! transaction, so that what a hook records commits or rolls back with the write. The
//! repository never names a feature: arrows point down, from the feature to here.

use std::sync::Arc;

use serde_json::Value;

use super::notices::Notice;
use crate::access::Interaction;
use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::fhir::search_query::SearchRequest;
use crate::resource::StoredResource;

/// A write just stored (in its transaction, not yet committed).
pub struct Written<'a> {
    /// Who wrote it (None for Carnet's own writes: its notices).
    pub ctx: Option<&'a RequestContext>,
    /// Create, Update, UpdateCreate or Delete.
    pub interaction: Interaction,
    /// The version written (a tombstone for a delete).
    pub resource: &'a StoredResource,
    /// Its JSON (None for a delete, but for a logical delete — a DocumentReference marked
    /// entered-in-error — which is a new version with `Interaction::Delete`).
    pub value: Option<&'a Value>,
    /// The JSON text of the version before (None when there was none, or a deletion).
    pub previous: Option<&'a str>,
}

/// What a hook may do in the write's transaction: the repository's operations offered to
/// features, each under the access point like everything else.
pub trait HookTx {
    /// The patient a search by `ctx` must be limited to; refuses criteria beyond what
    /// `ctx` may search (as the access point decides a search).
    fn search_restriction(
        &mut self,
        ctx: &RequestContext,
        search: &SearchRequest,
    ) -> Result<Option<String>, FhirError>;
    /// Records Carnet's notices to patients (each once; those due now as Communications).
    fn notify(&mut self, notices: Vec<Notice>) -> Result<(), FhirError>;
    /// The patients whose record a resource is in (as the access point places it).
    fn patients_of(&self, rtype: &str, resource: &Value) -> Vec<String>;
    /// Marks a patient's rules as changed (their cached copies are read again).
    fn renew_rules_stamp(&mut self, patient: &str) -> Result<(), FhirError>;
    /// Records (or, with None, forgets) what the matcher needs of a Subscription just
    /// written: the type and criteria it watches and its owner (`Patient/X`…).
    fn record_subscription(
        &mut self,
        ctx: &RequestContext,
        id: &str,
        watch: Option<(String, String, String)>,
    ) -> Result<(), FhirError>;
    /// Queues a notification for every active Subscription that `written` matches and
    /// whose owner may see it (traced as the owner's access).
    fn match_subscriptions(&mut self, written: &StoredResource) -> Result<(), FhirError>;
}

/// What a feature does around writes. Both calls default to nothing.
pub trait WriteHook: Send + Sync {
    /// Before a write of `rtype` is stored (after the access decision): may reshape the
    /// resource as Carnet keeps it, or refuse it (422…). `current` is the version it
    /// replaces.
    fn preparing(
        &self,
        _tx: &mut dyn HookTx,
        _ctx: &RequestContext,
        _rtype: &str,
        resource: Value,
        _current: Option<&Value>,
    ) -> Result<Value, FhirError> {
        Ok(resource)
    }

    /// Once the write is stored, in its transaction.
    fn written(&self, _tx: &mut dyn HookTx, _w: &Written<'_>) -> Result<(), FhirError> {
        Ok(())
    }
}

/// The hooks registered, in the order they run.
#[derive(Clone, Default)]
pub struct Hooks(Arc<Vec<Arc<dyn WriteHook>>>);

impl Hooks {
    pub fn register(&mut self, hook: Arc<dyn WriteHook>) {
        let mut all: Vec<_> = self.0.iter().cloned().collect();
        all.push(hook);
        self.0 = Arc::new(all);
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn WriteHook>> {
        self.0.iter()
    }
}
