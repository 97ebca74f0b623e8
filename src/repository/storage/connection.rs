//! connection: one database connection, whichever backend runs.

use diesel::r2d2::{ConnectionManager, PooledConnection};

/// One connection to whichever backend runs; SQLite last, as diesel's MultiConnection wants.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type Conn = PooledConnection<ConnectionManager<AnyConnection>>;
