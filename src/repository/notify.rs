//! notify: writing Carnet's notices to the patient (once each; those not yet due are kept
//! until they are, see `write_due_notices`).

use serde_json::{json, Value};

use super::notices::Notice;
use super::repo::Repository;
use super::storage::{self, notifications, AnyConnection};
use crate::error::FhirError;
use crate::fhir::instant;

impl Repository {
    /// Records `notices` once each, writing those already due as Communications (in the
    /// caller's transaction). Returns their keys, for [`Self::remember_notices`] once the
    /// transaction is committed.
    pub(super) fn write_notices(
        &self,
        conn: &mut AnyConnection,
        notices: Vec<Notice>,
        now_us: i64,
    ) -> Result<Vec<String>, FhirError> {
        self.record_notices(conn, notices, now_us, false)
    }

    /// Records notices in the `notices` outbox; those due now are written as
    /// Communications at once, or — `defer`, in the access log's commit — left pending for
    /// the notice job (within `jobs::delivery::NOTICE_SWEEP_US`) or the patient's next look at their
    /// notices, whichever comes first: recorded with the trace, so never lost; keyed, so
    /// never twice.
    pub(super) fn record_notices(
        &self,
        conn: &mut AnyConnection,
        notices: Vec<Notice>,
        now_us: i64,
        defer: bool,
    ) -> Result<Vec<String>, FhirError> {
        let mut keys = Vec::new();
        for n in notices {
            if self.notified.seen(&n.key) {
                continue;
            }
            let due = n.due_us.is_none_or(|d| d <= now_us);
            let write_now = due && !defer;
            let content = if write_now {
                String::new()
            } else {
                n.communication.to_string()
            };
            let due_us = n.due_us.unwrap_or(now_us);
            if notifications::put_notice(conn, &n.key, &n.patient, due_us, &content, write_now)?
                && write_now
            {
                self.write_communication(conn, n.communication, now_us)?;
            }
            keys.push(n.key);
        }
        Ok(keys)
    }

    /// Notices known recorded (after their transaction committed).
    pub(super) fn remember_notices(&self, keys: &[String]) {
        for k in keys {
            self.notified.remember(k);
        }
    }

    /// Writes the notices due by `now_us` (of one patient, or everyone's) that are still
    /// pending; returns how many were written.
    pub fn write_due_notices(
        &self,
        patient: Option<&str>,
        now_us: i64,
    ) -> Result<usize, FhirError> {
        let mut conn = self.storage.conn()?;
        let mut written = 0;
        // In small transactions: on SQLite each holds the one write lock, and the access
        // log's commits (which every read waits for) take their turn between them.
        loop {
            if notifications::due_notices(&mut conn, patient, now_us, 1)?.is_empty() {
                return Ok(written);
            }
            written += storage::Storage::write_on(&mut conn, |c| {
                let mut written = 0;
                for (key, content) in notifications::due_notices(c, patient, now_us, 16)? {
                    if !notifications::notice_written(c, &key)? {
                        continue;
                    }
                    let communication: Value = serde_json::from_str(&content)
                        .map_err(|e| FhirError::Internal(format!("a stored notice: {e}")))?;
                    self.write_communication(c, communication, now_us)?;
                    written += 1;
                }
                Ok(written)
            })?;
        }
    }

    pub(super) fn write_communication(
        &self,
        conn: &mut AnyConnection,
        mut communication: Value,
        sent_us: i64,
    ) -> Result<(), FhirError> {
        communication["sent"] = json!(instant::format_us(sent_us));
        let id = super::rows::new_id();
        if self
            .put_checked_opt(
                conn,
                None,
                crate::access::Interaction::Create,
                "Communication",
                &id,
                communication,
                None,
                "POST",
            )?
            .is_none()
        {
            return Err(FhirError::Internal("a new notice's id was taken".into()));
        }
        Ok(())
    }
}
