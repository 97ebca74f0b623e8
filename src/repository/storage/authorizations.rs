//! authorizations: rows of the SMART authorization server — requests in progress, grants
//! (with their authorization code) and refresh tokens. Codes and refresh tokens are stored
//! as hashes; the logic (single use, rotation, reuse detection) is in `crate::oauth`, run in
//! one write transaction through `Repository`.

use super::schema::{oauth_authorizations, oauth_clients, oauth_grants, oauth_refresh_tokens};
use super::{db_err, AnyConnection};
use crate::error::FhirError;
use diesel::prelude::*;

/// An authorization request in progress (from `/authorize` to the consent decision).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_authorizations)]
pub struct AuthorizationRow {
    pub id: String,
    pub browser: String,
    pub csrf: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub provider: Option<String>,
    pub upstream_state: Option<String>,
    pub upstream_nonce: Option<String>,
    pub upstream_verifier: Option<String>,
    pub subject: Option<String>,
    pub expires_us: i64,
    /// The provider vouched that the professional who logged in is the SAMU regulating
    /// doctor.
    pub regulation: bool,
}

/// What was granted to a client, and the authorization code that carries it to the app.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_grants)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub subject: String,
    pub patient: Option<String>,
    pub scope: String,
    pub nonce: Option<String>,
    pub redirect_uri: String,
    pub code_hash: Option<String>,
    pub code_challenge: Option<String>,
    pub code_expires_us: i64,
    pub code_used: bool,
    pub revoked: bool,
    pub created_us: i64,
    pub expires_us: i64,
    /// Its tokens may declare SAMU regulation (ETREAT): the login vouched for the role.
    pub regulation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_refresh_tokens)]
pub struct RefreshRow {
    pub hash: String,
    pub grant_id: String,
    pub expires_us: i64,
    pub used: bool,
}

/// Stores a new request (and forgets expired ones).
pub fn insert_authorization(
    conn: &mut AnyConnection,
    row: &AuthorizationRow,
    now_us: i64,
) -> Result<(), FhirError> {
    diesel::delete(oauth_authorizations::table.filter(oauth_authorizations::expires_us.lt(now_us)))
        .execute(conn)
        .map_err(db_err)?;
    diesel::insert_into(oauth_authorizations::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

pub fn authorization(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<AuthorizationRow>, FhirError> {
    oauth_authorizations::table
        .filter(oauth_authorizations::id.eq(id))
        .select(AuthorizationRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

pub fn authorization_by_upstream_state(
    conn: &mut AnyConnection,
    upstream_state: &str,
) -> Result<Option<AuthorizationRow>, FhirError> {
    oauth_authorizations::table
        .filter(oauth_authorizations::upstream_state.eq(upstream_state))
        .select(AuthorizationRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

/// Replaces a request's mutable part (the upstream login and the subject).
pub fn update_authorization(
    conn: &mut AnyConnection,
    row: &AuthorizationRow,
) -> Result<(), FhirError> {
    diesel::update(oauth_authorizations::table.filter(oauth_authorizations::id.eq(&row.id)))
        .set((
            oauth_authorizations::provider.eq(&row.provider),
            oauth_authorizations::upstream_state.eq(&row.upstream_state),
            oauth_authorizations::upstream_nonce.eq(&row.upstream_nonce),
            oauth_authorizations::upstream_verifier.eq(&row.upstream_verifier),
            oauth_authorizations::subject.eq(&row.subject),
            oauth_authorizations::regulation.eq(row.regulation),
        ))
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

/// Deletes a request; true if it was there (so that only one decision is taken on it).
pub fn delete_authorization(conn: &mut AnyConnection, id: &str) -> Result<bool, FhirError> {
    diesel::delete(oauth_authorizations::table.filter(oauth_authorizations::id.eq(id)))
        .execute(conn)
        .map(|n| n == 1)
        .map_err(db_err)
}

/// Stores a new grant (and forgets those nothing valid can come from any more).
pub fn insert_grant(
    conn: &mut AnyConnection,
    row: &GrantRow,
    now_us: i64,
) -> Result<(), FhirError> {
    let expired: Vec<String> = oauth_grants::table
        .filter(oauth_grants::expires_us.lt(now_us))
        .select(oauth_grants::id)
        .limit(100)
        .load(conn)
        .map_err(db_err)?;
    if !expired.is_empty() {
        diesel::delete(
            oauth_refresh_tokens::table.filter(oauth_refresh_tokens::grant_id.eq_any(&expired)),
        )
        .execute(conn)
        .map_err(db_err)?;
        diesel::delete(oauth_grants::table.filter(oauth_grants::id.eq_any(&expired)))
            .execute(conn)
            .map_err(db_err)?;
    }
    diesel::insert_into(oauth_grants::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

pub fn grant(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRow>, FhirError> {
    oauth_grants::table
        .filter(oauth_grants::id.eq(id))
        .select(GrantRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

pub fn grant_by_code(
    conn: &mut AnyConnection,
    code_hash: &str,
) -> Result<Option<GrantRow>, FhirError> {
    oauth_grants::table
        .filter(oauth_grants::code_hash.eq(code_hash))
        .select(GrantRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

/// Marks a grant's code used; false if it already was (a concurrent exchange won).
pub fn use_code(conn: &mut AnyConnection, grant_id: &str) -> Result<bool, FhirError> {
    diesel::update(
        oauth_grants::table
            .filter(oauth_grants::id.eq(grant_id))
            .filter(oauth_grants::code_used.eq(false)),
    )
    .set(oauth_grants::code_used.eq(true))
    .execute(conn)
    .map(|n| n == 1)
    .map_err(db_err)
}

pub fn revoke_grant(conn: &mut AnyConnection, grant_id: &str) -> Result<(), FhirError> {
    diesel::update(oauth_grants::table.filter(oauth_grants::id.eq(grant_id)))
        .set(oauth_grants::revoked.eq(true))
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

pub fn extend_grant(
    conn: &mut AnyConnection,
    grant_id: &str,
    expires_us: i64,
) -> Result<(), FhirError> {
    diesel::update(oauth_grants::table.filter(oauth_grants::id.eq(grant_id)))
        .set(oauth_grants::expires_us.eq(expires_us))
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

/// The live grants of `subject` (not revoked, not expired, their code exchanged), each
/// with its client's name, oldest first.
pub fn live_grants_of(
    conn: &mut AnyConnection,
    subject: &str,
    now_us: i64,
) -> Result<Vec<(GrantRow, String)>, FhirError> {
    oauth_grants::table
        .inner_join(oauth_clients::table.on(oauth_clients::client_id.eq(oauth_grants::client_id)))
        .filter(oauth_grants::subject.eq(subject))
        .filter(oauth_grants::revoked.eq(false))
        .filter(oauth_grants::code_used.eq(true))
        .filter(oauth_grants::expires_us.ge(now_us))
        .order(oauth_grants::created_us.asc())
        .select((GrantRow::as_select(), oauth_clients::name))
        .load(conn)
        .map_err(db_err)
}

/// Revokes every live grant of `subject` to `client_id`; how many there were.
pub fn revoke_grants_of(
    conn: &mut AnyConnection,
    subject: &str,
    client_id: &str,
    now_us: i64,
) -> Result<usize, FhirError> {
    diesel::update(
        oauth_grants::table
            .filter(oauth_grants::subject.eq(subject))
            .filter(oauth_grants::client_id.eq(client_id))
            .filter(oauth_grants::revoked.eq(false))
            .filter(oauth_grants::expires_us.ge(now_us)),
    )
    .set(oauth_grants::revoked.eq(true))
    .execute(conn)
    .map_err(db_err)
}

/// Whether tokens of this grant may still be used: the grant exists, is not revoked, and
/// its client is registered and not suspended. One query, asked on every request.
pub fn grant_active(conn: &mut AnyConnection, grant_id: &str) -> Result<bool, FhirError> {
    let found: Option<(bool, bool)> = oauth_grants::table
        .inner_join(oauth_clients::table.on(oauth_clients::client_id.eq(oauth_grants::client_id)))
        .filter(oauth_grants::id.eq(grant_id))
        .select((oauth_grants::revoked, oauth_clients::suspended))
        .get_result(conn)
        .optional()
        .map_err(db_err)?;
    Ok(matches!(found, Some((false, false))))
}

pub fn insert_refresh(conn: &mut AnyConnection, row: &RefreshRow) -> Result<(), FhirError> {
    diesel::insert_into(oauth_refresh_tokens::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

pub fn refresh(conn: &mut AnyConnection, hash: &str) -> Result<Option<RefreshRow>, FhirError> {
    oauth_refresh_tokens::table
        .filter(oauth_refresh_tokens::hash.eq(hash))
        .select(RefreshRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

/// Marks a refresh token used; false if it already was.
pub fn use_refresh(conn: &mut AnyConnection, hash: &str) -> Result<bool, FhirError> {
    diesel::update(
        oauth_refresh_tokens::table
            .filter(oauth_refresh_tokens::hash.eq(hash))
            .filter(oauth_refresh_tokens::used.eq(false)),
    )
    .set(oauth_refresh_tokens::used.eq(true))
    .execute(conn)
    .map(|n| n == 1)
    .map_err(db_err)
}

/// Deletes the spent refresh tokens of a grant but the `keep` most recent.
pub fn prune_spent_refresh(
    conn: &mut AnyConnection,
    grant_id: &str,
    keep: i64,
) -> Result<(), FhirError> {
    let old: Vec<String> = oauth_refresh_tokens::table
        .filter(oauth_refresh_tokens::grant_id.eq(grant_id))
        .filter(oauth_refresh_tokens::used.eq(true))
        .order(oauth_refresh_tokens::expires_us.desc())
        .offset(keep)
        .select(oauth_refresh_tokens::hash)
        .load(conn)
        .map_err(db_err)?;
    if !old.is_empty() {
        diesel::delete(oauth_refresh_tokens::table.filter(oauth_refresh_tokens::hash.eq_any(&old)))
            .execute(conn)
            .map_err(db_err)?;
    }
    Ok(())
}
