//! oauth_store: the authorization server's rows (requests in progress, grants, refresh
//! tokens), reached through one handle inside a database transaction so that the checks of
//! `crate::oauth` (single-use codes, refresh rotation, reuse detection) are atomic.

use super::repo::Repository;
use super::storage::authorizations as rows;
use super::storage::clients::ClientRow;
use super::storage::{self, AnyConnection};
use crate::error::FhirError;
use crate::fhir::instant;

pub use rows::{AuthorizationRow, GrantRow, RefreshRow};

/// The authorization server's tables, within one transaction (or one connection for reads).
pub struct OAuthStore<'a> {
    conn: &'a mut AnyConnection,
    now_us: i64,
}

impl OAuthStore<'_> {
    pub fn now_us(&self) -> i64 {
        self.now_us
    }

    pub fn insert_authorization(&mut self, row: &AuthorizationRow) -> Result<(), FhirError> {
        rows::insert_authorization(self.conn, row, self.now_us)
    }

    /// A request still in progress (expired ones are absent).
    pub fn authorization(&mut self, id: &str) -> Result<Option<AuthorizationRow>, FhirError> {
        let now = self.now_us;
        Ok(rows::authorization(self.conn, id)?.filter(|r| r.expires_us >= now))
    }

    pub fn authorization_by_upstream_state(
        &mut self,
        state: &str,
    ) -> Result<Option<AuthorizationRow>, FhirError> {
        let now = self.now_us;
        Ok(
            rows::authorization_by_upstream_state(self.conn, state)?
                .filter(|r| r.expires_us >= now),
        )
    }

    pub fn update_authorization(&mut self, row: &AuthorizationRow) -> Result<(), FhirError> {
        rows::update_authorization(self.conn, row)
    }

    /// Ends a request; false if it had already ended.
    pub fn delete_authorization(&mut self, id: &str) -> Result<bool, FhirError> {
        rows::delete_authorization(self.conn, id)
    }

    pub fn insert_grant(&mut self, row: &GrantRow) -> Result<(), FhirError> {
        rows::insert_grant(self.conn, row, self.now_us)
    }

    pub fn grant(&mut self, id: &str) -> Result<Option<GrantRow>, FhirError> {
        rows::grant(self.conn, id)
    }

    pub fn grant_by_code(&mut self, code_hash: &str) -> Result<Option<GrantRow>, FhirError> {
        rows::grant_by_code(self.conn, code_hash)
    }

    pub fn use_code(&mut self, grant_id: &str) -> Result<bool, FhirError> {
        rows::use_code(self.conn, grant_id)
    }

    /// The live grants of `subject`, each with its client's name.
    pub fn live_grants_of(&mut self, subject: &str) -> Result<Vec<(GrantRow, String)>, FhirError> {
        rows::live_grants_of(self.conn, subject, self.now_us)
    }

    /// Revokes every grant of `subject` to `client_id`; how many there were.
    pub fn revoke_grants_of(&mut self, subject: &str, client_id: &str) -> Result<usize, FhirError> {
        rows::revoke_grants_of(self.conn, subject, client_id, self.now_us)
    }

    pub fn revoke_grant(&mut self, grant_id: &str) -> Result<(), FhirError> {
        rows::revoke_grant(self.conn, grant_id)
    }

    pub fn extend_grant(&mut self, grant_id: &str, expires_us: i64) -> Result<(), FhirError> {
        rows::extend_grant(self.conn, grant_id, expires_us)
    }

    pub fn insert_refresh(&mut self, row: &RefreshRow) -> Result<(), FhirError> {
        rows::insert_refresh(self.conn, row)
    }

    pub fn refresh(&mut self, hash: &str) -> Result<Option<RefreshRow>, FhirError> {
        rows::refresh(self.conn, hash)
    }

    pub fn prune_spent_refresh(&mut self, grant_id: &str, keep: i64) -> Result<(), FhirError> {
        rows::prune_spent_refresh(self.conn, grant_id, keep)
    }

    pub fn use_refresh(&mut self, hash: &str) -> Result<bool, FhirError> {
        rows::use_refresh(self.conn, hash)
    }
}

impl Repository {
    /// Runs `f` over the authorization server's tables in one write transaction: committed
    /// when `f` returns `Ok` (even an `Ok` carrying an OAuth refusal, so that a revocation
    /// decided on the way sticks), rolled back otherwise.
    pub fn oauth_write<T>(
        &self,
        f: impl FnOnce(&mut OAuthStore) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let now_us = instant::now_us();
        self.storage
            .write(|conn| f(&mut OAuthStore { conn, now_us }))
    }

    /// Runs `f` over the authorization server's tables on one connection, for reads.
    pub fn oauth_read<T>(
        &self,
        f: impl FnOnce(&mut OAuthStore) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let mut conn = self.storage.conn()?;
        f(&mut OAuthStore {
            conn: &mut conn,
            now_us: instant::now_us(),
        })
    }

    /// Whether tokens of `grant_id` may still be used (grant not revoked, client registered
    /// and not suspended). Fails closed. Without `may_wait`, None when it cannot be told
    /// at once ([`Storage::conn_now`](super::storage::Storage::conn_now)).
    pub fn grant_active(&self, grant_id: &str, may_wait: bool) -> Option<bool> {
        let conn = if may_wait {
            self.storage.conn().ok()
        } else {
            Some(self.storage.conn_now()?)
        };
        Some(
            conn.and_then(|mut c| rows::grant_active(&mut c, grant_id).ok())
                .unwrap_or(false),
        )
    }
}

/// The client registry: the OAuth client applications allowed to obtain tokens. Not FHIR
/// resources (no versions, no search, no access point): only the authorization server and
/// the `carnet client` admin command use it.
impl Repository {
    pub fn client(&self, client_id: &str) -> Result<Option<ClientRow>, FhirError> {
        let mut conn = self.storage.conn()?;
        storage::clients::get(&mut conn, client_id)
    }

    pub fn clients(&self) -> Result<Vec<ClientRow>, FhirError> {
        let mut conn = self.storage.conn()?;
        storage::clients::list(&mut conn)
    }

    pub fn put_client(&self, row: &ClientRow) -> Result<(), FhirError> {
        if row.client_id == crate::auth::SERVICE_CLIENT {
            return Err(FhirError::BadRequest(format!(
                "the client id '{}' is Carnet's own (its services act under it): choose another",
                crate::auth::SERVICE_CLIENT
            )));
        }
        self.storage.write(|c| storage::clients::put(c, row))
    }

    /// Suspends (or resumes) a client; false when it is not registered.
    pub fn suspend_client(&self, client_id: &str, suspended: bool) -> Result<bool, FhirError> {
        self.storage
            .write(|c| storage::clients::set_suspended(c, client_id, suspended))
    }

    /// Records a client assertion's `jti` until `exp_us`; false if it was used before.
    pub fn use_assertion(
        &self,
        jti: &str,
        client_id: &str,
        exp_us: i64,
    ) -> Result<bool, FhirError> {
        let now = instant::now_us();
        self.storage
            .write(|c| storage::clients::use_assertion(c, jti, client_id, exp_us, now))
    }
}
