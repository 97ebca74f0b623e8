//! group_commit: many requests' AuditEvents and notices committed in one transaction (one
//! fsync), each request returning once its own records are durable.

use serde_json::Value;
use std::sync::{Condvar, Mutex};

use super::notices::Notice;
use super::storage::{AnyConnection, Conn, Storage};
use crate::error::FhirError;

/// What a request hands to the group commit: its AuditEvents and the notices they call for.
#[derive(Default)]
pub struct Records {
    pub events: Vec<Value>,
    pub notices: Vec<Notice>,
}

impl Records {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.notices.is_empty()
    }

    fn extend(&mut self, other: Records) {
        self.events.extend(other.events);
        self.notices.extend(other.notices);
    }
}

#[derive(Default)]
struct State {
    pending: Records,
    /// The batch the pending events will be committed in.
    next_batch: u64,
    /// Every batch up to this one is finished.
    committed: u64,
    writing: bool,
    /// Batches that failed (pruned once far behind: every waiter of a batch has long read
    /// it by then).
    failed: std::collections::BTreeSet<u64>,
}

/// Clears `writing` and wakes the waiters even if the writer panics (else every later
/// read would wait for ever).
struct Writing<'a>(&'a Queue, Option<(u64, bool)>);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let (number, ok) = self.1.unwrap_or((st.next_batch - 1, false));
        st.committed = st.committed.max(number);
        st.writing = false;
        if !ok {
            st.failed.insert(number);
        }
        let horizon = st.committed.saturating_sub(100_000);
        st.failed = st.failed.split_off(&horizon);
        self.0.done.notify_all();
    }
}

/// The group commit of reads' AuditEvents.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    done: Condvar,
}

impl Queue {
    /// Returns once `records` are committed (or their batch failed). `write` writes a
    /// batch in a transaction (returning what to do once it is committed).
    pub fn submit<T>(
        &self,
        conn: &mut Conn,
        records: Records,
        write: impl Fn(&mut AnyConnection, Records) -> Result<T, FhirError>,
        committed: impl Fn(T),
    ) -> Result<(), FhirError> {
        if records.is_empty() {
            return Ok(());
        }
        let lock = || self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = lock();
        if st.next_batch == 0 {
            st.next_batch = 1;
        }
        st.pending.extend(records);
        let mine = st.next_batch;
        loop {
            if st.committed >= mine {
                return if st.failed.contains(&mine) {
                    Err(FhirError::Unavailable(
                        "the access could not be traced; retry".into(),
                    ))
                } else {
                    Ok(())
                };
            }
            if !st.writing {
                st.writing = true;
                let batch = std::mem::take(&mut st.pending);
                let number = st.next_batch;
                st.next_batch += 1;
                drop(st);
                let mut guard = Writing(self, None);
                let result = Storage::write_on(conn, |c| write(c, batch));
                let ok = result.is_ok();
                match result {
                    Ok(done) => committed(done),
                    Err(e) => tracing::error!(error = %e, "writing AuditEvents failed"),
                }
                guard.1 = Some((number, ok));
                drop(guard);
                st = lock();
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}
