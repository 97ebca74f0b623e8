//! group_commit: the access log's one writer. Requests hand their traces (and the notices
//! they call for) to a channel and go on; one thread, on a connection of its own (not the
//! pool's), writes everything that is waiting in one transaction — one fsync for however
//! many requests queued while the previous commit ran — and then tells each request that
//! its traces are durable. A request's response waits for that answer without holding a
//! pooled connection or a blocking thread (`auth::PendingTraces`, awaited by the HTTP layer).

use std::sync::mpsc;

use super::notices::Notice;
use super::trace::Trace;
use crate::auth::{PendingTraces, TraceReceipt};
use crate::error::FhirError;

/// How long a request waits for its traces to be durable before it is answered 503.
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// At most this many requests' records per commit.
const MAX_BATCH: usize = 4096;

/// What a request hands to the group commit: its traces and the notices they call for.
#[derive(Default, Clone)]
pub struct Records {
    pub traces: Vec<Trace>,
    pub notices: Vec<Notice>,
}

impl Records {
    pub(super) fn is_empty(&self) -> bool {
        self.traces.is_empty() && self.notices.is_empty()
    }
}

enum Reply {
    /// Awaited by the HTTP layer.
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Waited for by the thread that traced (Carnet's own services, outside HTTP).
    Blocking(mpsc::Sender<Result<(), String>>),
}

struct Job {
    records: Records,
    reply: Reply,
}

/// The handle requests submit to; the writer thread lives as long as the process.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread. `commit` writes one batch in one transaction (it keeps
    /// its own connection between batches).
    pub fn start(
        mut commit: impl FnMut(Records) -> Result<(), FhirError> + Send + 'static,
    ) -> Result<Writer, FhirError> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("carnet-trail".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let mut batch = Records::default();
                    let mut replies = Vec::with_capacity(jobs.len());
                    for j in jobs {
                        batch.traces.extend(j.records.traces);
                        batch.notices.extend(j.records.notices);
                        replies.push(j.reply);
                    }
                    // A panic in what a commit runs (a notice's write hooks) fails this
                    // batch, never the writer: every later request still gets its answer.
                    let result =
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            commit(batch)
                        })) {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(e)) => {
                                tracing::error!(error = %e, "writing the access log failed");
                                Err(e.to_string())
                            }
                            Err(_) => {
                                tracing::error!("writing the access log panicked");
                                Err("the access log's writer failed".to_string())
                            }
                        };
                    for r in replies {
                        match r {
                            Reply::Async(s) => {
                                let _ = s.send(result.clone());
                            }
                            Reply::Blocking(s) => {
                                let _ = s.send(result.clone());
                            }
                        }
                    }
                }
            })
            .map_err(|e| FhirError::Unavailable(format!("cannot start the trail's writer: {e}")))?;
        Ok(Writer { jobs: tx })
    }

    /// Hands `records` to the writer. With `pending`, the HTTP layer awaits the commit
    /// before the response leaves; without, this waits for it.
    pub fn submit(
        &self,
        records: Records,
        pending: Option<&PendingTraces>,
    ) -> Result<(), FhirError> {
        if records.is_empty() {
            return Ok(());
        }
        let lost = || FhirError::Unavailable("the access could not be traced; retry".into());
        match pending {
            Some(p) => {
                let (tx, rx): (_, TraceReceipt) = tokio::sync::oneshot::channel();
                self.jobs
                    .send(Job {
                        records,
                        reply: Reply::Async(tx),
                    })
                    .map_err(|_| lost())?;
                p.push(rx);
                Ok(())
            }
            None => {
                let (tx, rx) = mpsc::channel();
                self.jobs
                    .send(Job {
                        records,
                        reply: Reply::Blocking(tx),
                    })
                    .map_err(|_| lost())?;
                match rx.recv_timeout(WAIT_LIMIT) {
                    Ok(Ok(())) => Ok(()),
                    _ => Err(lost()),
                }
            }
        }
    }
}
