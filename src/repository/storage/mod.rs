//! storage: resources, their versions and index rows, on SQLite or PostgreSQL through diesel.
//!
//! This module speaks rows, not FHIR semantics, and never decides access: it is a private
//! child of `repository`, so nothing outside the repository can reach stored data without
//! going through the access-decision point. SQL and backend differences stay in here.

pub mod authorizations;
pub mod clients;
mod connection;
pub mod notifications;
mod schema;
pub mod search;
mod statistics;

pub use connection::{AnyConnection, Conn};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::Path;
use std::time::Duration;

use crate::error::FhirError;
use crate::fhir::index::IndexRows;
use schema::{
    resource_versions, resources, search_date, search_reference, search_string, search_token,
};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The current version of a resource (the `resources` table).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = resources)]
pub struct CurrentRow {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub content: String,
}

/// One version in the history (the `resource_versions` table).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resource_versions)]
pub struct VersionRow {
    pub seq: i64,
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: String,
    pub content: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = resource_versions)]
struct NewVersion<'a> {
    resource_type: &'a str,
    id: &'a str,
    version_id: i64,
    last_updated: i64,
    deleted: bool,
    method: &'a str,
    content: &'a str,
}

/// A token the index holds for a resource (e.g. one identifier).
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = search_token)]
pub struct TokenRow {
    pub resource_type: String,
    pub id: String,
    pub param: String,
    pub system: String,
    pub code: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = search_string)]
struct StringRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    param: &'a str,
    value_norm: &'a str,
    value_exact: &'a str,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = search_date)]
struct DateRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    param: &'a str,
    start_us: i64,
    end_us: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = search_reference)]
struct ReferenceRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    param: &'a str,
    target_type: &'a str,
    target_id: &'a str,
    url: &'a str,
}

/// A version about to be written.
pub struct WriteVersion<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: &'a str,
    pub content: &'a str,
    pub index: &'a IndexRows,
}

/// Which slice of the history to list, newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub since_us: Option<i64>,
    /// Only versions with `seq` below this (keyset paging).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Postgresql(c) = conn {
            // The server's messages in English, whatever its locale: the few failures diesel
            // names no kind for are recognised by them (see `Classify`). Setting it needs
            // a superuser; without one the server's own locale stays (then say lc_messages
            // = 'C' in postgresql.conf).
            let _ = c.batch_execute(
                "DO $$ BEGIN SET lc_messages = 'C'; EXCEPTION WHEN insufficient_privilege THEN NULL; END $$;",
            );
        }
        if let AnyConnection::Sqlite(c) = conn {
            // busy_timeout first: the other pragmas may wait for a lock. WAL mode itself is
            // set once, before the pool opens (it is persistent).
            c.batch_execute(
                "PRAGMA busy_timeout = 15000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// The connection pool and the backend it talks to.
#[derive(Clone)]
pub struct Storage {
    pool: Pool<ConnectionManager<AnyConnection>>,
    backend: Backend,
    statistics: std::sync::Arc<statistics::Statistics>,
}

/// How a database failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A deadlock or a serialisation failure: the client retries (409).
    Conflict,
    /// A lock or pool timeout, a lost connection, a server shutting down or starting up:
    /// the database is away for now (503 with Retry-After).
    Unavailable,
    /// Anything else is a bug (500, the cause in the log).
    Bug,
}

/// What a database failure is, by the driver's error kind; where the driver names no
/// kind (diesel reports PostgreSQL's 40P01 deadlock, 57P01/57P03 shutdown and start-up,
/// and SQLite's SQLITE_BUSY as `Unknown`), by the server's own message for those few.
pub(crate) trait Classify: std::fmt::Display {
    fn failure(&self) -> Failure;
}

fn failure_of_message(text: &str) -> Failure {
    const CONFLICT: [&str; 2] = ["deadlock detected", "could not serialize access"];
    const AWAY: [&str; 9] = [
        "database is locked",
        "terminating connection due to administrator command",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "server closed the connection unexpectedly",
        "no connection to the server",
        "could not connect to server",
        "connection to server",
    ];
    if CONFLICT.iter().any(|m| text.contains(m)) {
        Failure::Conflict
    } else if AWAY.iter().any(|m| text.contains(m)) {
        Failure::Unavailable
    } else {
        Failure::Bug
    }
}

impl Classify for diesel::result::Error {
    fn failure(&self) -> Failure {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match self {
            // A unique violation the code did not expect is a concurrent insert of the
            // same row (two creates of one id): the loser retries.
            E::DatabaseError(K::SerializationFailure | K::UniqueViolation, _) => Failure::Conflict,
            E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _)
            | E::DatabaseError(K::ReadOnlyTransaction, _)
            | E::BrokenTransactionManager => Failure::Unavailable,
            E::DatabaseError(_, info) => failure_of_message(info.message()),
            E::RollbackErrorOnCommit {
                commit_error,
                rollback_error,
            } => match commit_error.failure() {
                Failure::Bug => rollback_error.failure(),
                f => f,
            },
            _ => failure_of_message(&self.to_string()),
        }
    }
}

impl Classify for diesel::r2d2::PoolError {
    /// No connection could be had in time (the pool is exhausted or the database cannot
    /// be reached): the database is away for now.
    fn failure(&self) -> Failure {
        Failure::Unavailable
    }
}

impl Classify for diesel::r2d2::Error {
    fn failure(&self) -> Failure {
        match self {
            diesel::r2d2::Error::QueryError(e) => e.failure(),
            diesel::r2d2::Error::ConnectionError(_) => Failure::Unavailable,
        }
    }
}

impl Classify for String {
    fn failure(&self) -> Failure {
        failure_of_message(self)
    }
}

/// Maps a database failure to the client's answer (see [`Failure`]).
pub(crate) fn db_err(e: impl Classify) -> FhirError {
    let text = e.to_string();
    match e.failure() {
        Failure::Conflict => {
            tracing::warn!(cause = %text, "write conflict");
            FhirError::Conflict("the write conflicted with a concurrent one; retry".into())
        }
        Failure::Unavailable => {
            tracing::warn!(cause = %text, "database unavailable");
            FhirError::Unavailable("the database is busy or unreachable; retry shortly".into())
        }
        Failure::Bug => FhirError::Internal(format!("database: {text}")),
    }
}

impl Storage {
    /// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`) and runs the
    /// pending migrations of its backend.
    pub fn open(url: &str, pool_size: u32) -> Result<Storage, String> {
        let (backend, conn_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(dir) = Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
            }
            (Backend::Sqlite, path.to_string())
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(format!(
                "unsupported database URL '{}': use sqlite://PATH or postgres://…",
                redact_url(url)
            ));
        };
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the single writer; set once, it stays.
            let mut c = diesel::SqliteConnection::establish(&conn_url)
                .map_err(|e| format!("cannot open {conn_url}: {e}"))?;
            c.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL;")
                .map_err(|e| format!("cannot set WAL mode on {conn_url}: {e}"))?;
        }
        let manager = ConnectionManager::<AnyConnection>::new(conn_url);
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(15))
            // No ping on every check-out (one statement per request saved): a connection
            // the server closed fails its next statement, is answered 503 (`Classify`) and
            // marked broken, and the pool drops it.
            .test_on_check_out(false)
            .connection_customizer(Box::new(SqlitePragmas))
            .build(manager)
            .map_err(|e| format!("cannot connect to {}: {e}", redact_url(url)))?;
        let storage = Storage {
            pool,
            backend,
            statistics: Default::default(),
        };
        let mut conn = storage.conn().map_err(|e| e.to_string())?;
        match &mut *conn {
            AnyConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|_| ())
                .map_err(|e| format!("migrations failed: {e}"))?,
            AnyConnection::Postgresql(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|_| ())
                .map_err(|e| format!("migrations failed: {e}"))?,
        }
        drop(conn);
        storage.refresh_statistics(true);
        Ok(storage)
    }

    /// Counts versions written, for the planner statistics (see `statistics`).
    pub fn note_written(&self, versions: u64) {
        self.statistics.note_written(versions);
    }

    /// Refreshes the planners' statistics in the background when due (or `force`).
    fn refresh_statistics(&self, force: bool) {
        let pool = self.pool.clone();
        self.statistics
            .refresh_if_due(force, move || pool.get().ok());
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn conn(&self) -> Result<Conn, FhirError> {
        self.pool.get().map_err(db_err)
    }

    /// Runs `f` in one database transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so that writers queue instead of failing on a lock upgrade.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let mut conn = self.conn()?;
        let result = Self::write_on(&mut conn, f);
        drop(conn);
        self.refresh_statistics(false);
        result
    }

    /// [`Storage::write`] on a connection the caller already holds (never take a second
    /// pooled connection while holding one: under load that exhausts the pool).
    pub fn write_on<T>(
        conn: &mut Conn,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        // Through diesel's transaction manager (on the inner connection), so that diesel
        // knows a transaction is open: its own nested ones become savepoints, and a failed
        // COMMIT or ROLLBACK marks the connection broken instead of pooling it mid-transaction.
        match &mut **conn {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
            }
            AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c),
        }
        .map_err(db_err)?;
        let result = f(conn);
        let end = match (&result, &mut **conn) {
            (Ok(_), AnyConnection::Sqlite(c)) => AnsiTransactionManager::commit_transaction(c),
            (Ok(_), AnyConnection::Postgresql(c)) => AnsiTransactionManager::commit_transaction(c),
            (Err(_), AnyConnection::Sqlite(c)) => AnsiTransactionManager::rollback_transaction(c),
            (Err(_), AnyConnection::Postgresql(c)) => {
                AnsiTransactionManager::rollback_transaction(c)
            }
        };
        match (result, end) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(db_err(e)),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(rollback)) => {
                tracing::error!(error = %rollback, "rollback failed");
                Err(e)
            }
        }
    }
}

/// Hides the password of a database URL, so that it can be logged or shown.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The current row of a resource, deleted or not.
pub fn current(
    conn: &mut AnyConnection,
    rtype: &str,
    rid: &str,
) -> Result<Option<CurrentRow>, FhirError> {
    resources::table
        .filter(resources::resource_type.eq(rtype))
        .filter(resources::id.eq(rid))
        .select(CurrentRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_err)
}

/// One version of a resource.
pub fn version(
    conn: &mut AnyConnection,
    rtype: &str,
    rid: &str,
    vid: i64,
) -> Result<Option<VersionRow>, FhirError> {
    resource_versions::table
        .filter(resource_versions::resource_type.eq(rtype))
        .filter(resource_versions::id.eq(rid))
        .filter(resource_versions::version_id.eq(vid))
        .select(VersionRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_err)
}

/// Writes one new version: the history row, the current row (insert or compare-and-swap
/// on the previous version) and the index rows. Must run inside [`Storage::write`].
///
/// Returns `false` when the current version is no longer `expected_previous` (a concurrent
/// writer won): the caller then fails the whole transaction.
pub fn put_version(
    conn: &mut AnyConnection,
    v: &WriteVersion<'_>,
    expected_previous: Option<i64>,
) -> Result<bool, FhirError> {
    let swapped = match expected_previous {
        None => {
            let row = CurrentRow {
                resource_type: v.resource_type.to_string(),
                id: v.id.to_string(),
                version_id: v.version_id,
                last_updated: v.last_updated,
                deleted: v.deleted,
                content: v.content.to_string(),
            };
            match diesel::insert_into(resources::table)
                .values(&row)
                .execute(conn)
            {
                Ok(n) => n == 1,
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => false,
                Err(e) => return Err(db_err(e)),
            }
        }
        Some(prev) => {
            diesel::update(
                resources::table
                    .filter(resources::resource_type.eq(v.resource_type))
                    .filter(resources::id.eq(v.id))
                    .filter(resources::version_id.eq(prev)),
            )
            .set((
                resources::version_id.eq(v.version_id),
                resources::last_updated.eq(v.last_updated),
                resources::deleted.eq(v.deleted),
                resources::content.eq(v.content),
            ))
            .execute(conn)
            .map_err(db_err)?
                == 1
        }
    };
    if !swapped {
        return Ok(false);
    }
    diesel::insert_into(resource_versions::table)
        .values(&NewVersion {
            resource_type: v.resource_type,
            id: v.id,
            version_id: v.version_id,
            last_updated: v.last_updated,
            deleted: v.deleted,
            method: v.method,
            content: v.content,
        })
        .execute(conn)
        .map_err(db_err)?;
    // A resource created just now has no index rows to clear.
    let created = expected_previous.is_none();
    replace_index(conn, v.resource_type, v.id, v.index, created)?;
    Ok(true)
}

/// Rows per multi-row INSERT (SQLite allows 32766 bound values per statement).
const INSERT_CHUNK: usize = 500;

/// Runs a multi-row insert on the inner connection: diesel's MultiConnection does not
/// compile batch inserts, each backend does.
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {
        for chunk in $rows.chunks(INSERT_CHUNK) {
            match $conn {
                AnyConnection::Sqlite(c) => diesel::insert_into($table).values(chunk).execute(c),
                AnyConnection::Postgresql(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)
                }
            }
            .map_err(db_err)?;
        }
    };
}

/// Replaces the index rows of `rtype/id` by `index` (empty for a tombstone); `created`:
/// the resource row was inserted in this transaction, so there are no old rows.
fn replace_index(
    conn: &mut AnyConnection,
    rtype: &str,
    id: &str,
    index: &IndexRows,
    created: bool,
) -> Result<(), FhirError> {
    macro_rules! clear {
        ($t:ident) => {
            diesel::delete(
                $t::table
                    .filter($t::resource_type.eq(rtype))
                    .filter($t::id.eq(id)),
            )
            .execute(conn)
            .map_err(db_err)?;
        };
    }
    if !created {
        clear!(search_token);
        clear!(search_string);
        clear!(search_date);
        clear!(search_reference);
    }
    let tokens: Vec<TokenRow> = index
        .tokens
        .iter()
        .map(|(param, system, code)| TokenRow {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            param: param.clone(),
            system: system.clone(),
            code: code.clone(),
        })
        .collect();
    insert_all!(conn, search_token::table, &tokens);
    let strings: Vec<StringRow> = index
        .strings
        .iter()
        .map(|(param, norm, exact)| StringRow {
            resource_type: rtype,
            id,
            param,
            value_norm: norm,
            value_exact: exact,
        })
        .collect();
    insert_all!(conn, search_string::table, &strings);
    let dates: Vec<DateRow> = index
        .dates
        .iter()
        .map(|(param, start, end)| DateRow {
            resource_type: rtype,
            id,
            param,
            start_us: *start,
            end_us: *end,
        })
        .collect();
    insert_all!(conn, search_date::table, &dates);
    let refs: Vec<ReferenceRow> = index
        .references
        .iter()
        .map(|(param, ty, target, url)| ReferenceRow {
            resource_type: rtype,
            id,
            param,
            target_type: ty,
            target_id: target,
            url,
        })
        .collect();
    insert_all!(conn, search_reference::table, &refs);
    Ok(())
}

/// Takes a lock that serialises conditional creates with the same criteria (PostgreSQL;
/// on SQLite the write transaction already holds the only write lock).
pub fn lock_criteria(conn: &mut AnyConnection, key: &str) -> Result<(), FhirError> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1)::bigint)")
            .bind::<diesel::sql_types::Text, _>(key)
            .execute(pg)
            .map_err(db_err)?;
    }
    Ok(())
}

/// A page of history, newest first.
pub fn history(conn: &mut AnyConnection, q: &HistoryQuery) -> Result<Vec<VersionRow>, FhirError> {
    let mut query = resource_versions::table
        .select(VersionRow::as_select())
        .order(resource_versions::seq.desc())
        .limit(q.limit)
        .into_boxed();
    if let Some(t) = &q.resource_type {
        query = query.filter(resource_versions::resource_type.eq(t.clone()));
    }
    if let Some(id) = &q.id {
        query = query.filter(resource_versions::id.eq(id.clone()));
    }
    if let Some(since) = q.since_us {
        query = query.filter(resource_versions::last_updated.ge(since));
    }
    if let Some(before) = q.before_seq {
        query = query.filter(resource_versions::seq.lt(before));
    }
    query.load(conn).map_err(db_err)
}
