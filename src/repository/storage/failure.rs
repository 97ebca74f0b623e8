//! failure: what a database failure is and how it is answered (one place for both backends).

use crate::error::FhirError;

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
