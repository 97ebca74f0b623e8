//! resource: one stored version of a FHIR resource, as every layer above storage passes it
//! around (the access point decides on it, the repository returns it, HTTP serves it).
//!
//! Below both the access point and the repository; knows nothing of either. Its JSON text
//! is served as stored, never re-serialised.

use serde_json::Value;

use crate::error::FhirError;

/// One version of a resource as stored: its JSON text is served as is.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated_us: i64,
    pub deleted: bool,
    /// The JSON text ('' for a delete).
    pub content: String,
    /// The HTTP method that wrote this version (history entries).
    pub method: Option<String>,
}

impl StoredResource {
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version_id)
    }

    pub fn location(&self) -> String {
        format!(
            "{}/{}/_history/{}",
            self.resource_type, self.id, self.version_id
        )
    }

    /// The resource as a JSON value (for embedding in a Bundle).
    pub fn json(&self) -> Result<Value, FhirError> {
        serde_json::from_str(&self.content)
            .map_err(|e| FhirError::Internal(format!("stored JSON unreadable: {e}")))
    }
}
