//! storage: resources, their versions and index rows, on SQLite or PostgreSQL through diesel.
//!
//! This module speaks rows, not FHIR semantics, and never decides access: it is a private
//! child of `repository`, so nothing outside the repository can reach stored data without
//! going through the access-decision point. SQL and backend differences stay in here.
//!
//! Lookups by key use `get_result`, never `first`: `first` binds its `LIMIT` as a
//! parameter, and SQLite (3.50) re-prepares a statement whose `LIMIT` parameter is bound
//! again — every cached point read was parsed and planned anew (11 % of a read's CPU).

pub mod access_log;
pub mod authorizations;
pub mod clients;
mod connection;
mod failure;
pub mod notifications;
mod rows;
mod schema;
pub mod search;
mod sql;
mod statistics;
mod write_lock;
pub use write_lock::held as in_write;

pub use connection::{AnyConnection, Conn};
pub(crate) use failure::db_err;
pub use rows::{CurrentRow, HistoryQuery, VersionRow};

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
    writer: Option<&'a str>,
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
    /// Who writes it (`RequestContext::subject`); None for Carnet's own maintenance.
    pub writer: Option<&'a str>,
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
    /// What the pool connects to (for the access log's writer, which keeps its own).
    conn_url: String,
    backend: Backend,
    statistics: std::sync::Arc<statistics::Statistics>,
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
        let manager = ConnectionManager::<AnyConnection>::new(conn_url.clone());
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
            conn_url,
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
        // Checked on every write, whichever path it takes (transactions and the write
        // paths run on a connection they hold, not through `write`): on PostgreSQL without
        // autovacuum, a table bulk-loaded after start-up was planned as empty (reads at
        // 100,000 resources fell to 68/s on plans made for an empty database).
        self.refresh_statistics(false);
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

    /// A pooled SQLite connection when one is free at once; None on PostgreSQL (a
    /// statement there is a network round trip) or when all are taken. A point read runs
    /// on the async worker with it, without the hop to the blocking pool and back: the
    /// statements it runs take microseconds and never wait for a lock (WAL).
    /// Two connections stay for the requests queued on the blocking pool (writes,
    /// searches), which the workers would otherwise overtake.
    pub fn conn_now(&self) -> Option<Conn> {
        match self.backend {
            Backend::Sqlite if self.pool.state().idle_connections > 2 => self.pool.try_get(),
            _ => None,
        }
    }

    /// A connection of its own, outside the pool (the access log's writer keeps one).
    pub fn dedicated(&self) -> Result<AnyConnection, FhirError> {
        let mut conn = AnyConnection::establish(&self.conn_url).map_err(|e| {
            tracing::warn!(error = %e, "cannot open the access log's connection");
            FhirError::Unavailable("the database is unreachable; retry shortly".into())
        })?;
        SqlitePragmas
            .on_acquire(&mut conn)
            .map_err(|e| FhirError::Unavailable(format!("the database: {e}")))?;
        if let AnyConnection::Sqlite(c) = &mut conn {
            // The statement journal of the log's multi-row inserts stays in memory.
            c.batch_execute("PRAGMA temp_store = MEMORY;")
                .map_err(db_err)?;
        }
        if let AnyConnection::Postgresql(c) = &mut conn {
            // A commit that hangs fails (and is retried on a new connection) instead of
            // holding every read behind it.
            c.batch_execute("SET statement_timeout = '20s'; SET synchronous_commit = on;")
                .map_err(db_err)?;
        }
        Ok(conn)
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
        Self::write_in(conn, f)
    }

    /// [`Storage::write_on`] on any connection (the access log's writer has its own). On
    /// SQLite, Carnet's writers take turns in arrival order (`write_lock`) before asking
    /// for the database's write lock, so that none of them ever sleeps in SQLite's busy
    /// handler waiting for another of this process.
    pub fn write_in<T>(
        conn: &mut AnyConnection,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let _turn = match conn {
            AnyConnection::Sqlite(_) => Some(write_lock::turn()),
            AnyConnection::Postgresql(_) => None,
        };
        // Through diesel's transaction manager (on the inner connection), so that diesel
        // knows a transaction is open: its own nested ones become savepoints, and a failed
        // COMMIT or ROLLBACK marks the connection broken instead of pooling it mid-transaction.
        match conn {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
            }
            AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c),
        }
        .map_err(db_err)?;
        let result = f(conn);
        let end = match (&result, conn) {
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
    if rtype == access_log::TYPE {
        return access_log::current(conn, rid);
    }
    resources::table
        .filter(resources::resource_type.eq(rtype))
        .filter(resources::id.eq(rid))
        .select(CurrentRow::as_select())
        .get_result(conn)
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
    if rtype == access_log::TYPE {
        return access_log::version(conn, rid, vid);
    }
    resource_versions::table
        .filter(resource_versions::resource_type.eq(rtype))
        .filter(resource_versions::id.eq(rid))
        .filter(resource_versions::version_id.eq(vid))
        .select(VersionRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

/// When a resource's first version was written, and by whom (None: no such version).
pub fn first_version(
    conn: &mut AnyConnection,
    rtype: &str,
    rid: &str,
) -> Result<Option<(i64, Option<String>)>, FhirError> {
    if rtype == access_log::TYPE {
        return Ok(access_log::version(conn, rid, 1)?.map(|r| (r.last_updated, None)));
    }
    resource_versions::table
        .filter(resource_versions::resource_type.eq(rtype))
        .filter(resource_versions::id.eq(rid))
        .filter(resource_versions::version_id.eq(1))
        .select((resource_versions::last_updated, resource_versions::writer))
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

/// The contents of every version of a resource, oldest first (deletions left out; at
/// most [`MAX_VERSIONS_JUDGED`], the newest).
pub fn all_versions(
    conn: &mut AnyConnection,
    rtype: &str,
    rid: &str,
) -> Result<Vec<String>, FhirError> {
    if rtype == access_log::TYPE {
        return Ok(Vec::new());
    }
    let mut contents: Vec<String> = resource_versions::table
        .filter(resource_versions::resource_type.eq(rtype))
        .filter(resource_versions::id.eq(rid))
        .filter(resource_versions::deleted.eq(false))
        .order(resource_versions::version_id.desc())
        .limit(MAX_VERSIONS_JUDGED)
        .select(resource_versions::content)
        .load(conn)
        .map_err(db_err)?;
    contents.reverse();
    Ok(contents)
}

/// The DocumentReferences whose content points to `Binary/{binary}` (at most 101: the
/// access point judges a Binary with more as hidden).
pub fn documents_of_binary(
    conn: &mut AnyConnection,
    binary: &str,
) -> Result<Vec<String>, FhirError> {
    search_reference::table
        .filter(search_reference::resource_type.eq("DocumentReference"))
        .filter(search_reference::param.eq(crate::fhir::index::CONTENT_BINARY))
        .filter(search_reference::target_type.eq("Binary"))
        .filter(search_reference::target_id.eq(binary))
        .select(search_reference::id)
        .distinct()
        .order(search_reference::id.asc())
        .limit(101)
        .load(conn)
        .map_err(db_err)
}

/// Most versions read to judge a deleted resource's history (its strictest labels).
pub const MAX_VERSIONS_JUDGED: i64 = 1000;

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
    // An AuditEvent a backend service posts joins the access log (append-only: the access
    // point refuses updates and deletes on every path).
    if v.resource_type == access_log::TYPE {
        if expected_previous.is_some() || v.deleted {
            return Err(FhirError::MethodNotAllowed(
                "AuditEvents are append-only: they cannot be changed or deleted".into(),
            ));
        }
        let event: serde_json::Value = serde_json::from_str(v.content)
            .map_err(|e| FhirError::Internal(format!("an AuditEvent to log: {e}")))?;
        let trace = crate::repository::trace::Trace::external(&event, v.id, v.last_updated);
        access_log::insert(conn, &[trace])?;
        return Ok(true);
    }
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
            writer: v.writer,
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
    // The access log is its own history (AuditEvents have one version each); the history
    // of the whole server is the resources' (traces are no resources of a record).
    if q.resource_type.as_deref() == Some(access_log::TYPE) {
        return access_log::history(conn, q);
    }
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
