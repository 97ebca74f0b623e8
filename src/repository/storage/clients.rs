//! clients: rows of the client registry and of used client assertions.

use super::schema::{oauth_assertions, oauth_clients};
use super::{db_err, AnyConnection};
use crate::error::FhirError;
use diesel::prelude::*;

/// A registered client application.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_clients)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub confidential: bool,
    pub redirect_uris: String,
    pub scopes: String,
    pub jwks: String,
    pub suspended: bool,
    pub created_us: i64,
    /// Carnet's own patient portal: only through it does a patient lift a block or unmask.
    pub first_party: bool,
    /// '' (an app, or a backend service filing data), [`REGISTRY`] or [`ESTABLISHMENT`].
    pub role: String,
    /// An establishment's Organization (an id).
    pub organization: Option<String>,
}

/// The role of the identity and account registry's client.
pub const REGISTRY: &str = "registry";
/// The role of a hospital or practice system acting for its professionals.
pub const ESTABLISHMENT: &str = "establishment";

pub fn get(conn: &mut AnyConnection, client_id: &str) -> Result<Option<ClientRow>, FhirError> {
    oauth_clients::table
        .filter(oauth_clients::client_id.eq(client_id))
        .select(ClientRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<ClientRow>, FhirError> {
    oauth_clients::table
        .order(oauth_clients::client_id.asc())
        .select(ClientRow::as_select())
        .load(conn)
        .map_err(db_err)
}

/// Registers a client, or replaces its registration (keeping its suspension state).
pub fn put(conn: &mut AnyConnection, row: &ClientRow) -> Result<(), FhirError> {
    let existing = get(conn, &row.client_id)?;
    match existing {
        Some(old) => {
            diesel::update(oauth_clients::table.filter(oauth_clients::client_id.eq(&row.client_id)))
                .set((
                    oauth_clients::name.eq(&row.name),
                    oauth_clients::confidential.eq(row.confidential),
                    oauth_clients::redirect_uris.eq(&row.redirect_uris),
                    oauth_clients::scopes.eq(&row.scopes),
                    oauth_clients::jwks.eq(&row.jwks),
                    oauth_clients::suspended.eq(old.suspended),
                    oauth_clients::first_party.eq(row.first_party),
                    oauth_clients::role.eq(&row.role),
                    oauth_clients::organization.eq(&row.organization),
                ))
                .execute(conn)
                .map(|_| ())
                .map_err(db_err)
        }
        None => diesel::insert_into(oauth_clients::table)
            .values(row)
            .execute(conn)
            .map(|_| ())
            .map_err(db_err),
    }
}

/// Suspends or resumes a client; false when there is no such client.
pub fn set_suspended(
    conn: &mut AnyConnection,
    client_id: &str,
    suspended: bool,
) -> Result<bool, FhirError> {
    diesel::update(oauth_clients::table.filter(oauth_clients::client_id.eq(client_id)))
        .set(oauth_clients::suspended.eq(suspended))
        .execute(conn)
        .map(|n| n == 1)
        .map_err(db_err)
}

/// Records a client assertion's `jti`; false when it was already used (a replay). Expired
/// records are dropped on the way.
pub fn use_assertion(
    conn: &mut AnyConnection,
    jti: &str,
    client_id: &str,
    exp_us: i64,
    now_us: i64,
) -> Result<bool, FhirError> {
    diesel::delete(oauth_assertions::table.filter(oauth_assertions::exp_us.lt(now_us)))
        .execute(conn)
        .map_err(db_err)?;
    match diesel::insert_into(oauth_assertions::table)
        .values((
            oauth_assertions::jti.eq(jti),
            oauth_assertions::client_id.eq(client_id),
            oauth_assertions::exp_us.eq(exp_us),
        ))
        .execute(conn)
    {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}
