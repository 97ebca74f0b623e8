//! types: what the access point hands out. A [`Visible`] can be made only inside `access`
//! (by a read decision, or by the [`WriteReceipt`] that only a write decision returns), so
//! nothing can be served that did not pass a decision.

use crate::error::FhirError;
use crate::resource::StoredResource;

/// What the requester is doing with the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    Vread,
    History,
    Search,
    Create,
    /// A PUT to an id that does not exist (yet): update-as-create.
    UpdateCreate,
    Update,
    Delete,
}

/// A resource the access-decision point let through for this request.
#[derive(Debug, Clone)]
pub struct Visible<T>(pub(super) T);

impl<T> Visible<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::Deref for Visible<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Proof that a write passed [`AccessPoint::check_write`] (only that check makes one): what
/// the write stored, or found already there, is returned to its requester through it.
#[derive(Debug)]
#[must_use = "a write's receipt is how what it wrote is returned"]
pub struct WriteReceipt {
    pub(super) resource_type: String,
    /// The resource decided on (a create's id is chosen before it is decided).
    pub(super) id: String,
}

impl WriteReceipt {
    /// What the decided write stored (or found): it may be returned to the requester. Any
    /// other resource is refused: a receipt is for the resource it was decided for.
    /// Used once: the receipt is spent when it admits.
    pub fn admit(self, resource: StoredResource) -> Result<Visible<StoredResource>, FhirError> {
        if resource.resource_type != self.resource_type || resource.id != self.id {
            return Err(FhirError::Internal(format!(
                "a write receipt for {}/{} was shown {}/{}",
                self.resource_type, self.id, resource.resource_type, resource.id
            )));
        }
        Ok(Visible(resource))
    }
}

/// Why a read was refused. `Hidden` must look exactly like a resource that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Forbidden(String),
    Hidden,
}

impl Refusal {
    /// The error a refused single read answers with.
    pub fn into_error(self, resource_type: &str, id: &str) -> FhirError {
        match self {
            Refusal::Forbidden(why) => FhirError::Forbidden(why),
            Refusal::Hidden => FhirError::hidden(resource_type, id),
        }
    }
}
