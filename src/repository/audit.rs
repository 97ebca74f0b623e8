//! audit: an AuditEvent for every access to patient data, allowed or refused — one per
//! request and patient record touched, naming the agent (and the app), the patient, the
//! resources, the action, the outcome, the purpose of use and its reason.
//!
//! A write's AuditEvents are written in the write's own transaction. A read's are durable
//! before its response leaves: requests hand their records to a [`Queue`], and whichever
//! request finds no commit under way writes everything pending in one transaction on the
//! connection it already holds (group commit: on SQLite's single writer, N concurrent reads
//! cost one commit, not N). AuditEvents are never updated or deleted (the access point
//! refuses it on every path).

use super::group_commit::Records;
use super::repo::Repository;
use super::rows::{new_id, stamp};
use super::storage::{self, AnyConnection, Conn, WriteVersion};
use crate::access::{Decided, Facts};
use crate::auth::{Actor, RequestContext};
use crate::consent::{Basis, Purpose, ACT_REASON};
use crate::error::FhirError;
use crate::fhir::instant;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// At most this many resources are listed in one AuditEvent (the count is in the text).
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

fn purpose_of(ctx: &RequestContext) -> Option<Value> {
    let (code, text) = match (ctx.actor(), ctx.purpose()) {
        (Actor::Practitioner(_), Purpose::Emergency { reason, .. }) => {
            ("BTG", Some(reason.clone()))
        }
        (Actor::Practitioner(_), Purpose::Regulation { .. }) => ("ETREAT", None),
        (Actor::Practitioner(_), Purpose::Invalid(why)) => ("TREAT", Some(why.clone())),
        (Actor::Practitioner(_), Purpose::Normal) => ("TREAT", None),
        (Actor::Patient(_), _) => ("PATRQT", None),
        (Actor::System(_), _) => ("HOPERAT", None),
    };
    let mut cc = json!({"coding": [{"system": ACT_REASON, "code": code}]});
    if let Some(t) = text {
        cc["text"] = json!(t);
    }
    Some(cc)
}

/// The AuditEvent of `ctx` doing `interaction` on `patient`'s record, for `decided`.
pub fn audit_event(
    ctx: &RequestContext,
    interaction: &str,
    patient: &str,
    decided: &[&Decided],
    allowed: bool,
) -> Value {
    let who = match ctx.actor() {
        Actor::Patient(id) => json!({"reference": format!("Patient/{id}")}),
        Actor::Practitioner(id) => json!({"reference": format!("Practitioner/{id}")}),
        Actor::System(client) => {
            json!({"identifier": {"system": "urn:carnet:client", "value": client}})
        }
    };
    let purpose = purpose_of(ctx);
    let mut requestor = json!({"who": who, "requestor": true});
    if let Some(p) = &purpose {
        requestor["purposeOfUse"] = json!([p]);
    }
    if ctx.acting_for().is_some() {
        requestor["role"] = json!([{"coding": [{"system":
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]}]);
    }
    let mut agents = vec![requestor];
    if !matches!(ctx.actor(), Actor::System(_)) {
        agents.push(json!({"who": {"identifier": {"system": "urn:carnet:client",
            "value": ctx.client_id()}}, "requestor": false,
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": "110150", "display": "Application"}]}}));
    }
    let mut entities = vec![json!({"what": {"reference": format!("Patient/{patient}")},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}})];
    let mut listed = 0;
    for d in decided {
        if d.resource_type == "Patient" && d.id == patient {
            continue;
        }
        if listed == MAX_ENTITIES {
            break;
        }
        listed += 1;
        entities.push(json!({"what": {"reference": format!("{}/{}", d.resource_type, d.id)},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}}));
    }
    let mut bases: Vec<Basis> = decided
        .iter()
        .flat_map(|d| d.bases.iter().copied())
        .collect();
    bases.sort();
    bases.dedup();
    let mut desc = if allowed {
        format!("{} resource(s) of this record", decided.len())
    } else {
        let why = decided
            .iter()
            .find_map(|d| d.why.clone())
            .unwrap_or_else(|| "refused".into());
        format!("refused: {why}")
    };
    if !bases.is_empty() {
        desc.push_str(&format!(" (grounds: {bases:?})"));
    }
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": action_of(interaction),
        "recorded": instant::format_us(instant::now_us()),
        "outcome": if allowed { "0" } else { "4" },
        "outcomeDesc": desc,
        "purposeOfEvent": purpose.into_iter().collect::<Vec<_>>(),
        "agent": agents,
        "source": {"site": ctx.request_id(), "observer": {"display": "Carnet"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4", "display": "Application Server"}]},
        "entity": entities,
    })
}

/// The AuditEvents for what `facts` recorded: one per patient and outcome.
/// A trace is as hidden as what it lists: the events are grouped by the visibility labels of
/// their resources and carry them in `meta.security`, so the access point hides a trace
/// from whoever the resource is hidden from (an INVISIBLE_PATIENT document's reads from the
/// patient, a masked document's refusal from the professional refused).
pub fn events_for(ctx: &RequestContext, interaction: &str, facts: &Facts) -> Vec<Value> {
    let mut events = record_events(ctx, interaction, facts);
    // Every request of a professional leaves them a trace of their own: what they asked and
    // whether it was answered — the same whether it matched hidden resources or nothing, so
    // that their trail is no oracle on a record they may not open. The record's own
    // refusal traces (what matched, whose record) are hidden from them
    // (`access::policy::audit_event`).
    if matches!(ctx.actor(), Actor::Practitioner(_)) {
        events.push(requester_event(
            ctx,
            interaction,
            facts.asked.as_deref(),
            facts.answered,
        ));
    }
    events
}

/// The trace a refused request leaves its requester: the interaction and what they sent
/// (`entity.name`, the entity a query: role 24), no reference to any resource or patient.
fn requester_event(
    ctx: &RequestContext,
    interaction: &str,
    asked: Option<&str>,
    answered: bool,
) -> Value {
    let mut event = audit_event(ctx, interaction, "", &[], answered);
    event["outcomeDesc"] = json!(if answered {
        "answered (what it returned is traced in the records concerned)"
    } else {
        "refused"
    });
    let mut entity = json!({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"}});
    if let Some(a) = asked {
        entity["name"] = json!(a);
    }
    event["entity"] = json!([entity]);
    event
}

/// The record-side AuditEvents of `facts`: one per patient, outcome and labels.
pub(super) fn record_events(ctx: &RequestContext, interaction: &str, facts: &Facts) -> Vec<Value> {
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
            let mut event = audit_event(ctx, interaction, &patient, &ds, allowed);
            if !labels.is_empty() {
                let security: Vec<Value> = labels
                    .iter()
                    .map(|c| json!({"system": crate::consent::TRE_A07, "code": c}))
                    .collect();
                event["meta"] = json!({"security": security});
            }
            event
        })
        .collect()
}

/// Writes AuditEvents inside the caller's transaction.
pub fn write_events(
    conn: &mut AnyConnection,
    base_url: &str,
    events: Vec<Value>,
) -> Result<(), FhirError> {
    for mut event in events {
        let id = new_id();
        let now = instant::now_us();
        stamp(&mut event, &id, 1, now);
        let content = serde_json::to_string(&event)
            .map_err(|e| FhirError::Internal(format!("serialising an AuditEvent: {e}")))?;
        let index = crate::fhir::index::index_rows("AuditEvent", &event, base_url);
        storage::put_version(
            conn,
            &WriteVersion {
                resource_type: "AuditEvent",
                id: &id,
                version_id: 1,
                last_updated: now,
                deleted: false,
                method: "POST",
                content: &content,
                index: &index,
            },
            None,
        )?;
    }
    Ok(())
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
        let mut conn = self.storage.conn()?;
        let mut facts = Facts::new();
        let result = f(&mut conn, &mut facts);
        facts.answered = result.is_ok();
        self.trace(&mut conn, ctx, interaction, &facts)?;
        result
    }

    /// Writes the AuditEvents of `facts` durably (group commit), outside any transaction.
    pub(super) fn trace(
        &self,
        conn: &mut Conn,
        ctx: &RequestContext,
        interaction: &str,
        facts: &Facts,
    ) -> Result<(), FhirError> {
        let records = Records {
            events: events_for(ctx, interaction, facts),
            notices: super::notices::for_accesses(ctx, facts, false),
        };
        self.audit.submit(
            conn,
            records,
            |c, batch| {
                self.storage.note_written(batch.events.len() as u64);
                write_events(c, &self.base_url, batch.events)?;
                self.write_notices(c, batch.notices, instant::now_us())
            },
            |keys| self.remember_notices(&keys),
        )
    }

    /// Traces a write inside its transaction.
    pub(super) fn audit_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        interaction: &str,
        facts: &Facts,
    ) -> Result<(), FhirError> {
        let events = events_for(ctx, interaction, facts);
        self.storage.note_written(events.len() as u64);
        write_events(conn, &self.base_url, events)?;
        // An emergency access through a write path (a transaction's GET, a PATCH) is told
        // like any other.
        let notices = super::notices::for_accesses(ctx, facts, true);
        self.write_notices(conn, notices, instant::now_us())?;
        Ok(())
    }
}
