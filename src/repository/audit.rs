//! audit: a trace in the access log for every access to patient data, allowed or refused —
//! one per request, patient record touched, outcome and visibility labels, naming the agent
//! (and the app), the patient, the resources, the action, the outcome, the purpose of use
//! and its reason. Served as AuditEvents (`trace::Trace::to_fhir`).
//!
//! A write's traces are written in the write's own transaction. A read's are durable
//! before its response leaves: requests hand them to the log's one writer
//! (`group_commit`), which commits whatever is waiting in one transaction (N concurrent
//! reads cost one commit, not N) while the request holds no connection. Traces are never
//! updated or deleted (the access point refuses it on every path, and nothing in Carnet
//! writes to the log but appends).

use super::group_commit::{Records, Writer};
use super::repo::Repository;
use super::rows::new_id;
use super::storage::{access_log, AnyConnection, Conn, Storage};
use super::trace::Trace;
use crate::access::{Decided, Facts};
use crate::auth::{Actor, RequestContext};
use crate::consent::{Basis, Purpose};
use crate::error::FhirError;
use crate::fhir::instant;
use std::collections::BTreeMap;

/// At most this many resources are listed in one trace (the count is in the text).
const MAX_ENTITIES: usize = 50;

/// The FHIR interaction an AuditEvent records (`restful-interaction` code) and its action.
fn action_of(interaction: &str) -> &'static str {
    match interaction {
        "create" => "C",
        "update" | "patch" => "U",
        "delete" => "D",
        "transaction" | "batch" | "operation" => "E",
        _ => "R",
    }
}

fn purpose_of(ctx: &RequestContext) -> (&'static str, Option<String>) {
    match (ctx.actor(), ctx.purpose()) {
        (Actor::Practitioner(_), Purpose::Emergency { reason, .. }) => {
            ("BTG", Some(reason.clone()))
        }
        (Actor::Practitioner(_), Purpose::Regulation { .. }) => ("ETREAT", None),
        (Actor::Practitioner(_), Purpose::Invalid(why)) => ("TREAT", Some(why.clone())),
        (Actor::Practitioner(_), Purpose::Normal) => ("TREAT", None),
        (Actor::Patient(_), _) => ("PATRQT", None),
        (Actor::System(_), _) => ("HOPERAT", None),
    }
}

/// The trace of `ctx` doing `interaction` on `patient`'s record (None: the requester's
/// own trace), for `decided`.
pub fn trace_of(
    ctx: &RequestContext,
    interaction: &str,
    patient: Option<&str>,
    decided: &[&Decided],
    allowed: bool,
) -> Trace {
    let agent = match ctx.actor() {
        Actor::Patient(id) => Some(format!("Patient/{id}")),
        Actor::Practitioner(id) => Some(format!("Practitioner/{id}")),
        Actor::System(_) => None,
    };
    let client = match ctx.actor() {
        Actor::System(client) => client.clone(),
        _ => ctx.client_id().to_string(),
    };
    let (purpose, reason) = purpose_of(ctx);
    let mut entities = Vec::new();
    for d in decided {
        if d.resource_type == "Patient" && Some(d.id.as_str()) == patient {
            continue;
        }
        if entities.len() == MAX_ENTITIES {
            break;
        }
        entities.push(format!("{}/{}", d.resource_type, d.id));
    }
    let mut bases: Vec<Basis> = decided
        .iter()
        .flat_map(|d| d.bases.iter().copied())
        .collect();
    bases.sort();
    bases.dedup();
    let mut description = if allowed {
        format!("{} resource(s) of this record", decided.len())
    } else {
        let why = decided
            .iter()
            .find_map(|d| d.why.clone())
            .unwrap_or_else(|| "refused".into());
        format!("refused: {why}")
    };
    if !bases.is_empty() {
        description.push_str(&format!(" (grounds: {bases:?})"));
    }
    Trace {
        id: new_id(),
        recorded: instant::now_us(),
        patient: patient.map(str::to_string),
        agent,
        client,
        establishment: ctx.establishment().map(|e| e.0.to_string()),
        agent_name: ctx.name().map(str::to_string),
        establishment_name: ctx.establishment().and_then(|e| e.1).map(str::to_string),
        guardian: ctx.acting_for().is_some(),
        purpose: Some(purpose.to_string()),
        reason,
        event_type: "rest".into(),
        interaction: interaction.to_string(),
        action: action_of(interaction).to_string(),
        outcome: if allowed { "0" } else { "4" }.to_string(),
        description,
        site: ctx.request_id().to_string(),
        entities,
        asked: None,
        labels: Vec::new(),
        content: None,
    }
}

/// The traces of what `facts` recorded: one per patient, outcome and labels.
/// A trace is as hidden as what it lists: the traces are grouped by the visibility labels of
/// their resources and carry them (`meta.security` of the AuditEvent), so the access point
/// hides a trace from whoever the resource is hidden from (an INVISIBLE_PATIENT document's
/// reads from the patient, a masked document's refusal from the professional refused).
pub fn traces_for(ctx: &RequestContext, interaction: &str, facts: &Facts) -> Vec<Trace> {
    let mut events = record_traces(ctx, interaction, facts);
    // Every request of a professional leaves them a trace of their own: what they asked and
    // whether it was answered — the same whether it matched hidden resources or nothing, so
    // that their trail is no oracle on a record they may not open. The record's own
    // refusal traces (what matched, whose record) are hidden from them
    // (`access::policy::audit_event`).
    if matches!(ctx.actor(), Actor::Practitioner(_)) {
        events.push(requester_trace(
            ctx,
            interaction,
            facts.asked.as_deref(),
            facts.answered,
        ));
    }
    events
}

/// The trace a request leaves its requester: the interaction and what they sent
/// (`entity.name`, the entity a query: role 24), no reference to any resource or patient.
fn requester_trace(
    ctx: &RequestContext,
    interaction: &str,
    asked: Option<&str>,
    answered: bool,
) -> Trace {
    let mut trace = trace_of(ctx, interaction, None, &[], answered);
    trace.description = if answered {
        "answered (what it returned is traced in the records concerned)"
    } else {
        "refused"
    }
    .to_string();
    trace.asked = asked.map(str::to_string);
    trace
}

/// The record-side traces of `facts`: one per patient, outcome and labels.
pub(super) fn record_traces(ctx: &RequestContext, interaction: &str, facts: &Facts) -> Vec<Trace> {
    type Key = (String, bool, Vec<String>);
    let mut groups: BTreeMap<Key, Vec<&Decided>> = BTreeMap::new();
    for d in &facts.trail {
        let mut labels = d.labels.clone();
        labels.sort();
        labels.dedup();
        for p in &d.patients {
            groups
                .entry((p.clone(), d.allowed, labels.clone()))
                .or_default()
                .push(d);
        }
    }
    groups
        .into_iter()
        .map(|((patient, allowed, labels), ds)| {
            let mut trace = trace_of(ctx, interaction, Some(&patient), &ds, allowed);
            trace.labels = labels;
            trace
        })
        .collect()
}

/// Appends traces inside the caller's transaction.
pub fn write_traces(conn: &mut AnyConnection, traces: &[Trace]) -> Result<(), FhirError> {
    access_log::insert(conn, traces)
}

impl Repository {
    /// Runs a read with a fresh trail and traces it (whatever its outcome) before it is
    /// answered.
    pub(super) fn audited_read<T>(
        &self,
        ctx: &RequestContext,
        interaction: &str,
        f: impl FnOnce(&mut Conn, &mut Facts) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let conn = self.storage.conn()?;
        self.audited_read_on(conn, ctx, interaction, f)
    }

    /// [`audited_read`](Self::audited_read) on a connection already taken.
    pub(super) fn audited_read_on<T>(
        &self,
        mut conn: super::storage::Conn,
        ctx: &RequestContext,
        interaction: &str,
        f: impl FnOnce(&mut Conn, &mut Facts) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        let mut facts = Facts::new();
        let result = f(&mut conn, &mut facts);
        drop(conn);
        facts.answered = result.is_ok();
        self.trace(ctx, interaction, &facts)?;
        result
    }

    /// Hands the traces of `facts` to the log's writer: durable before the response
    /// leaves (the HTTP layer awaits them), or before this returns when no HTTP request
    /// awaits them.
    pub(super) fn trace(
        &self,
        ctx: &RequestContext,
        interaction: &str,
        facts: &Facts,
    ) -> Result<(), FhirError> {
        let records = Records {
            traces: traces_for(ctx, interaction, facts),
            notices: super::notices::for_accesses(ctx, facts, false),
        };
        if records.is_empty() {
            return Ok(());
        }
        let pending = ctx.pending_traces();
        if pending.is_none() && super::storage::in_write() {
            // Waiting here for the writer would wait for this thread's own turn to end.
            tracing::warn!("a read traced inside a write transaction is not awaited");
            let detached = crate::auth::PendingTraces::default();
            return self.writer()?.submit(records, Some(&detached));
        }
        self.writer()?.submit(records, pending)
    }

    /// The log's writer, started with the first trace (by then the features' hooks are
    /// registered: a notice it writes is a resource like any other).
    fn writer(&self) -> Result<&Writer, FhirError> {
        if let Some(w) = self.audit.get() {
            return Ok(w);
        }
        let repo = self.clone();
        let mut conn: Option<AnyConnection> = None;
        let writer = Writer::start(move |batch| repo.commit_trail(&mut conn, batch))?;
        let _ = self.audit.set(writer);
        Ok(self.audit.get().expect("set just now"))
    }

    /// Commits one batch of the log on the writer's own connection (opened again, and
    /// the batch retried once, when the database dropped it). The connection is kept only
    /// after a commit: one that failed or panicked midway (a transaction perhaps still
    /// open) is closed, never reused.
    fn commit_trail(
        &self,
        conn: &mut Option<AnyConnection>,
        batch: &Records,
    ) -> Result<(), FhirError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut c = match conn.take() {
                Some(c) => c,
                None => self.storage.dedicated()?,
            };
            let result = match &mut c {
                // One round trip: the statement is its own transaction.
                AnyConnection::Postgresql(pg) if batch.notices.is_empty() => {
                    access_log::insert_in_one_statement(pg, &batch.traces).map(|()| Vec::new())
                }
                c => Storage::write_in(c, |c| {
                    write_traces(c, &batch.traces)?;
                    self.record_notices(c, batch.notices.clone(), instant::now_us(), true)
                }),
            };
            match result {
                Ok(keys) => {
                    *conn = Some(c);
                    self.remember_notices(&keys);
                    return Ok(());
                }
                Err(e) => {
                    drop(c);
                    if attempt >= 2 || !matches!(e, FhirError::Unavailable(_)) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Traces a write inside its transaction.
    pub(super) fn audit_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        interaction: &str,
        facts: &Facts,
    ) -> Result<(), FhirError> {
        write_traces(conn, &traces_for(ctx, interaction, facts))?;
        // An emergency access through a write path (a transaction's GET, a PATCH) is told
        // like any other.
        let notices = super::notices::for_accesses(ctx, facts, true);
        self.write_notices(conn, notices, instant::now_us())?;
        Ok(())
    }
}
