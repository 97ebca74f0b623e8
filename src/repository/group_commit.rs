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

impl Reply {
    fn send(self, result: Result<(), String>) {
        match self {
            Reply::Async(s) => {
                let _ = s.send(result);
            }
            Reply::Blocking(s) => {
                let _ = s.send(result);
            }
        }
    }
}

/// Runs one commit; a panic in what it runs (a notice's write hooks) fails this commit,
/// never the writer: every later request still gets its answer. The error says whether
/// the database was unreachable.
fn commit_caught(
    commit: &mut impl FnMut(&Records) -> Result<(), FhirError>,
    records: &Records,
) -> Result<(), (String, bool)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(records))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "writing the access log failed");
            let unreachable = matches!(e, FhirError::Unavailable(_));
            Err((e.to_string(), unreachable))
        }
        Err(_) => {
            tracing::error!("writing the access log panicked");
            Err(("the access log's writer failed".to_string(), false))
        }
    }
}

/// Answers `group`, whose records failed together (for a reason other than an unreachable
/// database): its two halves are committed apart, and the half that fails is split again,
/// so one request's bad records cost about 2·log2(n) commits and fail that request only.
/// When both halves fail, the failure is not one request's: each half is answered with its
/// own error, without splitting further.
fn split(
    commit: &mut impl FnMut(&Records) -> Result<(), FhirError>,
    mut group: Vec<(Reply, Records)>,
    failure: String,
) {
    if group.len() == 1 {
        for (reply, _) in group {
            reply.send(Err(failure.clone()));
        }
        return;
    }
    let right = group.split_off(group.len() / 2);
    let left = group;
    let merged = |half: &[(Reply, Records)]| Records {
        traces: half.iter().flat_map(|(_, r)| r.traces.clone()).collect(),
        notices: half.iter().flat_map(|(_, r)| r.notices.clone()).collect(),
    };
    let left_result = commit_caught(commit, &merged(&left));
    let right_result = commit_caught(commit, &merged(&right));
    let answer = |half: Vec<(Reply, Records)>, result: Result<(), String>| {
        for (reply, _) in half {
            reply.send(result.clone());
        }
    };
    match (left_result, right_result) {
        (Err((l, _)), Err((r, _))) => {
            answer(left, Err(l));
            answer(right, Err(r));
        }
        (Ok(()), Ok(())) => {
            answer(left, Ok(()));
            answer(right, Ok(()));
        }
        (Ok(()), Err((e, unreachable))) => {
            answer(left, Ok(()));
            if unreachable {
                answer(right, Err(e));
            } else {
                split(commit, right, e);
            }
        }
        (Err((e, unreachable)), Ok(())) => {
            answer(right, Ok(()));
            if unreachable {
                answer(left, Err(e));
            } else {
                split(commit, left, e);
            }
        }
    }
}

/// The handle requests submit to; the writer thread lives as long as the process.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread. `commit` writes one batch in one transaction (it keeps
    /// its own connection between batches).
    pub fn start(
        mut commit: impl FnMut(&Records) -> Result<(), FhirError> + Send + 'static,
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
                    let mut merged = Records::default();
                    let mut sizes = Vec::with_capacity(jobs.len());
                    for j in &mut jobs {
                        sizes.push((j.records.traces.len(), j.records.notices.len()));
                        merged.traces.append(&mut j.records.traces);
                        merged.notices.append(&mut j.records.notices);
                    }
                    let result = commit_caught(&mut commit, &merged);
                    let failure = match result {
                        // An unreachable database fails everyone.
                        Err((e, unreachable)) if !unreachable && jobs.len() > 1 => e,
                        result => {
                            let result = result.map_err(|(e, _)| e);
                            for j in jobs {
                                j.reply.send(result.clone());
                            }
                            continue;
                        }
                    };
                    // One request's records that cannot be written must not fail the
                    // others': the batch is committed again in halves, down to the request
                    // whose records fail.
                    let mut traces = merged.traces.into_iter();
                    let mut notices = merged.notices.into_iter();
                    let group = jobs
                        .into_iter()
                        .zip(sizes)
                        .map(|(j, (t, n))| {
                            let own = Records {
                                traces: traces.by_ref().take(t).collect(),
                                notices: notices.by_ref().take(n).collect(),
                            };
                            (j.reply, own)
                        })
                        .collect();
                    split(&mut commit, group, failure);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn records(id: &str) -> Records {
        Records {
            traces: vec![Trace {
                id: id.to_string(),
                ..Trace::default()
            }],
            notices: Vec::new(),
        }
    }

    /// A record the database refuses fails its own request only, not the requests whose
    /// records were committed in the same batch.
    #[test]
    fn one_bad_record_fails_only_its_own_request() {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let mut first = true;
        let writer = Writer::start(move |batch: &Records| {
            seen.lock().unwrap().push(batch.traces.len());
            if first {
                // Hold the first commit until the others are queued behind it.
                first = false;
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }
            if batch.traces.iter().any(|t| t.id == "bad") {
                return Err(FhirError::BadRequest("refused by the database".into()));
            }
            Ok(())
        })
        .unwrap();
        let writer = std::sync::Arc::new(writer);
        let submit = |id: &'static str| {
            let w = writer.clone();
            std::thread::spawn(move || w.submit(records(id), None).is_ok())
        };
        let opener = submit("first");
        started_rx.recv().unwrap();
        let others: Vec<_> = ["good-1", "bad", "good-2"]
            .map(submit)
            .into_iter()
            .collect();
        // Let the three queue behind the first commit, then release it.
        std::thread::sleep(std::time::Duration::from_millis(200));
        go_tx.send(()).unwrap();
        assert!(opener.join().unwrap());
        let outcomes: Vec<bool> = others.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(outcomes, vec![true, false, true]);
        // The three were committed together first (the case under test), then apart.
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.first(), Some(&1), "{sizes:?}");
        assert_eq!(sizes.get(1), Some(&3), "{sizes:?}");
    }
}
