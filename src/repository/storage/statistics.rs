//! statistics: keeps the query planners' statistics current as data grows.
//!
//! Both planners choose between the search indexes from table statistics. Without them,
//! SQLite picks a covering index that scans every row of a parameter instead of the
//! primary key (an `_include` of 5 resources read 50,000 index rows), and PostgreSQL
//! plans a freshly bulk-loaded table as empty (a patient's documents took 338 ms instead of
//! 26 ms). So Carnet refreshes them itself: once at start-up, and again in the background
//! whenever the versions written since the last refresh reach a fifth of the data (at
//! least 1,000), one refresh at a time, never on a request's path.

use super::connection::{AnyConnection, Conn};
use diesel::connection::SimpleConnection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The tables the search SQL reads.
const TABLES: &str = "resources, search_token, search_string, search_date, search_reference";

#[derive(Default)]
pub struct Statistics {
    /// Versions written since the last refresh began.
    written: AtomicU64,
    /// Versions known when the last refresh began (start-up count plus writes since).
    known: AtomicU64,
    running: AtomicBool,
}

impl Statistics {
    pub fn note_written(&self, versions: u64) {
        self.written.fetch_add(versions, Ordering::Relaxed);
    }

    /// Whether enough was written since the last refresh for the next one.
    fn due(&self) -> bool {
        let written = self.written.load(Ordering::Relaxed);
        written >= (self.known.load(Ordering::Relaxed) / 5).max(1_000)
    }

    /// Starts a refresh on its own thread when one is due (or `force`) and none runs.
    pub fn refresh_if_due(
        self: &Arc<Self>,
        force: bool,
        conn: impl FnOnce() -> Option<Conn> + Send + 'static,
    ) {
        if !(force || self.due()) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let written = self.written.swap(0, Ordering::AcqRel);
        self.known.fetch_add(written, Ordering::Relaxed);
        let this = Arc::clone(self);
        std::thread::Builder::new()
            .name("carnet-statistics".into())
            .spawn(move || {
                if let Some(mut c) = conn() {
                    let started = std::time::Instant::now();
                    if let Ok(n) = count_versions(&mut c) {
                        this.known.store(n, Ordering::Relaxed);
                    }
                    match refresh(&mut c) {
                        Ok(()) => tracing::debug!(
                            ms = started.elapsed().as_millis() as u64,
                            "planner statistics refreshed"
                        ),
                        Err(e) => tracing::warn!(error = %e, "planner statistics not refreshed"),
                    }
                }
                this.running.store(false, Ordering::Release);
            })
            .map(|_| ())
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot start the statistics thread");
                self.running.store(false, Ordering::Release);
            });
    }
}

fn count_versions(conn: &mut AnyConnection) -> Result<u64, diesel::result::Error> {
    use super::schema::resources;
    use diesel::prelude::*;
    resources::table
        .count()
        .get_result::<i64>(conn)
        .map(|n| n.max(0) as u64)
}

fn refresh(conn: &mut AnyConnection) -> Result<(), diesel::result::Error> {
    match conn {
        // analysis_limit: an approximate ANALYZE that reads a bounded number of rows per
        // index, so that the write lock it takes lasts milliseconds, not seconds.
        AnyConnection::Sqlite(c) => c.batch_execute("PRAGMA analysis_limit = 1000; ANALYZE;"),
        AnyConnection::Postgresql(c) => c.batch_execute(&format!("ANALYZE {TABLES}")),
    }
}
