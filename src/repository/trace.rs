//! trace: one row of the access log — who accessed which record, how, for what, with what
//! outcome, and the visibility labels of what it concerns — and the R4 AuditEvent it is
//! served as. Pure data: built by `audit`, stored by `storage::access_log`.

use serde_json::{json, Value};

use crate::consent::{ACT_REASON, TRE_A07};
use crate::fhir::instant;

/// The identifier system of the apps and backend services an AuditEvent names.
pub const CLIENT_SYSTEM: &str = "urn:carnet:client";

/// One access decision group: one request's accesses to one record with one outcome and
/// one set of labels — or, with no `patient`, the requester's own trace of what they asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub id: String,
    pub recorded: i64,
    /// The record concerned; None for a requester's own trace (it names no record).
    pub patient: Option<String>,
    /// `Practitioner/x` or `Patient/x`; None when the agent is a backend service.
    pub agent: Option<String>,
    /// The app the agent used, or the backend service itself.
    pub client: String,
    /// The establishment acting for the professional (`Organization/x`).
    pub establishment: Option<String>,
    /// Names for people of the agent and of the establishment, when known.
    pub agent_name: Option<String>,
    pub establishment_name: Option<String>,
    /// The agent acts for the patient (a legal representative).
    pub guardian: bool,
    /// ActReason code of the purpose of use, and the reason given.
    pub purpose: Option<String>,
    pub reason: Option<String>,
    pub event_type: String,
    /// The restful interaction (the AuditEvent's subtype).
    pub interaction: String,
    pub action: String,
    /// `0` answered, `4` refused.
    pub outcome: String,
    pub description: String,
    /// The request id.
    pub site: String,
    /// The resources concerned besides the patient (`Type/id`).
    pub entities: Vec<String>,
    /// A requester's trace: what they asked (the query as understood).
    pub asked: Option<String>,
    /// TRE_A07 visibility labels of what the trace concerns.
    pub labels: Vec<String>,
    /// An AuditEvent posted by a backend service, kept as posted (materialised as is).
    pub content: Option<String>,
}

impl Trace {
    /// Every reference the trace concerns, the patient's included (for `entity=`).
    pub fn references(&self) -> Vec<String> {
        if let Some(content) = &self.content {
            let v: Value = serde_json::from_str(content).unwrap_or(Value::Null);
            let mut refs = entity_references(&v);
            refs.sort();
            refs.dedup();
            return refs;
        }
        let mut refs: Vec<String> = self
            .patient
            .iter()
            .map(|p| format!("Patient/{p}"))
            .chain(self.entities.iter().cloned())
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }

    /// The trace as an R4 AuditEvent (version 1, last updated when recorded).
    pub fn to_fhir(&self) -> Value {
        if let Some(content) = &self.content {
            return serde_json::from_str(content)
                .unwrap_or_else(|_| json!({"resourceType": "AuditEvent", "id": self.id}));
        }
        let purpose = self.purpose.as_ref().map(|code| {
            let mut cc = json!({"coding": [{"system": ACT_REASON, "code": code}]});
            if let Some(t) = &self.reason {
                cc["text"] = json!(t);
            }
            cc
        });
        let mut who = match &self.agent {
            Some(r) => json!({"reference": r}),
            None => json!({"identifier": {"system": CLIENT_SYSTEM, "value": self.client}}),
        };
        if let Some(n) = &self.agent_name {
            who["display"] = json!(n);
        }
        let mut requestor = json!({"who": who, "requestor": true});
        if let Some(n) = &self.agent_name {
            requestor["name"] = json!(n);
        }
        if let Some(p) = &purpose {
            requestor["purposeOfUse"] = json!([p]);
        }
        if self.guardian {
            requestor["role"] = json!([{"coding": [{"system":
                "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]}]);
        }
        let mut agents = vec![requestor];
        if self.agent.is_some() {
            agents.push(json!({"who": {"identifier": {"system": CLIENT_SYSTEM,
                "value": self.client}}, "requestor": false,
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110150", "display": "Application"}]}}));
        }
        if let Some(e) = &self.establishment {
            let mut agent = json!({"who": {"reference": e}, "requestor": false,
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                    "code": "PROV", "display": "healthcare provider"}]}});
            if let Some(n) = &self.establishment_name {
                agent["who"]["display"] = json!(n);
                agent["name"] = json!(n);
            }
            agents.push(agent);
        }
        let entities: Vec<Value> = match &self.patient {
            None => {
                let mut entity = json!({
                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"}});
                if let Some(a) = &self.asked {
                    entity["name"] = json!(a);
                }
                vec![entity]
            }
            Some(patient) => std::iter::once(json!({"what": {"reference": format!("Patient/{patient}")},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}))
            .chain(self.entities.iter().map(|r| json!({"what": {"reference": r},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}})))
            .collect(),
        };
        let mut meta = json!({"versionId": "1", "lastUpdated": instant::format_us(self.recorded)});
        if !self.labels.is_empty() {
            meta["security"] = self
                .labels
                .iter()
                .map(|c| json!({"system": TRE_A07, "code": c}))
                .collect();
        }
        json!({
            "resourceType": "AuditEvent",
            "id": self.id,
            "meta": meta,
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": self.event_type, "display": "RESTful Operation"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": self.interaction}],
            "action": self.action,
            "recorded": instant::format_us(self.recorded),
            "outcome": self.outcome,
            "outcomeDesc": self.description,
            "purposeOfEvent": purpose.into_iter().collect::<Vec<_>>(),
            "agent": agents,
            "source": {"site": self.site, "observer": {"display": "Carnet"},
                "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4", "display": "Application Server"}]},
            "entity": entities,
        })
    }

    /// An AuditEvent a backend service posts, as a trace: searchable by what it names,
    /// kept and served as posted (`event` already carries its id and meta).
    pub fn external(event: &Value, id: &str, now: i64) -> Trace {
        let text = |p: &str| event.pointer(p).and_then(Value::as_str).map(str::to_string);
        let entity_refs = entity_references(event);
        let patient = entity_refs
            .iter()
            .find_map(|r| r.strip_prefix("Patient/"))
            .map(str::to_string);
        let agents = event.get("agent").and_then(Value::as_array);
        let agent = agents
            .into_iter()
            .flatten()
            .filter(|a| a.get("requestor").and_then(Value::as_bool) == Some(true))
            .find_map(|a| a.pointer("/who/reference").and_then(Value::as_str))
            .map(str::to_string);
        let client = agents
            .into_iter()
            .flatten()
            .filter_map(|a| a.pointer("/who/identifier"))
            .find(|i| i.get("system").and_then(Value::as_str) == Some(CLIENT_SYSTEM))
            .and_then(|i| i.get("value").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string();
        let recorded = text("/recorded")
            .and_then(|r| instant::parse_us(&r))
            .unwrap_or(now);
        Trace {
            id: id.to_string(),
            recorded,
            patient,
            agent,
            client,
            establishment: None,
            agent_name: None,
            establishment_name: None,
            guardian: false,
            purpose: None,
            reason: None,
            event_type: text("/type/code").unwrap_or_default(),
            interaction: text("/subtype/0/code").unwrap_or_default(),
            action: text("/action").unwrap_or_default(),
            outcome: text("/outcome").unwrap_or_default(),
            description: String::new(),
            site: String::new(),
            entities: Vec::new(),
            asked: None,
            labels: Vec::new(),
            content: Some(event.to_string()),
        }
    }
}

/// The `entity.what` references of an AuditEvent, in order.
fn entity_references(event: &Value) -> Vec<String> {
    event
        .get("entity")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/what/reference").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}
