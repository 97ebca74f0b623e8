//! state: what every handler can reach (registered as app data).

use crate::config::Settings;
use crate::repository::Repository;

/// What every handler can reach.
pub struct AppState {
    pub repo: Repository,
    pub settings: Settings,
    /// When this process started (the CapabilityStatement's date).
    pub started_at: String,
    /// Where the authorization server's endpoints are (discovery documents, the
    /// CapabilityStatement's security section, token audiences).
    pub endpoints: crate::oauth::Endpoints,
}
