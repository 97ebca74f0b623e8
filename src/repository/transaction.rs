//! transaction: batch and transaction Bundles.
//!
//! A transaction runs in one database transaction: all of it or none of it. Its
//! `urn:uuid:` fullUrls are given their server ids first and every reference to them is
//! rewritten. Entries run in the order the specification gives (DELETE, POST, PUT, GET)
//! and are answered in the order they came. A batch runs each entry on its own.

use crate::access::Facts;
use serde_json::{json, Value};
use std::collections::HashMap;

use super::repo::{Repository, WriteOutcome, WriteStatus};
use super::rows::{check_type, validate_as, validate_for_update};
use crate::access::Visible;
use crate::auth::RequestContext;
use crate::error::{FhirError, Issue};
use crate::fhir::references;
use crate::repository::storage::AnyConnection;
use crate::repository::StoredResource;

/// What an entry asks for.
#[derive(Debug, Clone)]
enum Action {
    Create {
        rtype: String,
        resource: Value,
        if_none_exist: Option<String>,
    },
    Update {
        rtype: String,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    Delete {
        rtype: String,
        id: String,
        if_match: Option<i64>,
    },
    Read {
        rtype: String,
        id: String,
    },
    Vread {
        rtype: String,
        id: String,
        vid: String,
    },
    /// A conditional create whose criteria matched `rtype/id` when the transaction
    /// resolved its ids: nothing to write.
    Existing {
        rtype: String,
        id: String,
    },
}

impl Action {
    pub(super) fn order(&self) -> u8 {
        match self {
            Action::Delete { .. } => 0,
            Action::Create { .. } => 1,
            Action::Update { .. } => 2,
            Action::Read { .. } | Action::Vread { .. } | Action::Existing { .. } => 3,
        }
    }

    /// The resource a write targets, for ordering and duplicate detection.
    pub(super) fn target(&self) -> Option<(&str, &str)> {
        match self {
            Action::Update { rtype, id, .. } | Action::Delete { rtype, id, .. } => {
                Some((rtype, id))
            }
            Action::Create {
                rtype, resource, ..
            } => resource
                .get("id")
                .and_then(Value::as_str)
                .map(|id| (rtype.as_str(), id)),
            _ => None,
        }
    }
}

/// The result of one entry, for the response Bundle.
pub enum EntryResult {
    Written(WriteOutcome),
    Read(Visible<StoredResource>),
    Failed(FhirError),
}

pub enum BundleKind {
    Batch,
    Transaction,
}

/// Reads `Bundle.type` and checks it is a batch or transaction.
pub fn bundle_kind(bundle: &Value) -> Result<BundleKind, FhirError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::Invalid(vec![Issue::invalid(
            "resourceType",
            "only a Bundle of type batch or transaction can be posted to the base URL",
        )]));
    }
    match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => Ok(BundleKind::Transaction),
        Some("batch") => Ok(BundleKind::Batch),
        other => Err(FhirError::Invalid(vec![Issue::invalid(
            "Bundle.type",
            format!(
                "Bundle.type must be batch or transaction, not {}",
                other.unwrap_or("(missing)")
            ),
        )])),
    }
}

fn entry_error(i: usize, e: FhirError) -> FhirError {
    let prefix = format!("Bundle.entry[{i}]");
    match e {
        FhirError::Invalid(issues) => FhirError::Invalid(
            issues
                .into_iter()
                .map(|mut issue| {
                    issue.expression = Some(match issue.expression {
                        // `Patient.gender` → `Bundle.entry[3].resource.gender`
                        Some(expr) => match expr.split_once('.') {
                            Some((_, rest)) => format!("{prefix}.resource.{rest}"),
                            None => format!("{prefix}.resource"),
                        },
                        None => prefix.clone(),
                    });
                    issue
                })
                .collect(),
        ),
        FhirError::NotFound(m) => FhirError::NotFound(format!("{prefix}: {m}")),
        FhirError::Gone(m) => FhirError::Gone(format!("{prefix}: {m}")),
        FhirError::BadRequest(m) => FhirError::BadRequest(format!("{prefix}: {m}")),
        FhirError::Conflict(m) => FhirError::Conflict(format!("{prefix}: {m}")),
        FhirError::PreconditionFailed(m) => FhirError::PreconditionFailed(format!("{prefix}: {m}")),
        FhirError::Forbidden(m) => FhirError::Forbidden(format!("{prefix}: {m}")),
        FhirError::InsufficientScope(m) => FhirError::InsufficientScope(format!("{prefix}: {m}")),
        FhirError::UnsupportedType(t) => FhirError::NotFound(format!(
            "{prefix}: resource type '{t}' is not supported by this server"
        )),
        other => other,
    }
}

/// The version number of an ETag such as `W/"3"` (If-Match, Bundle `request.ifMatch`).
pub fn parse_version_tag(tag: &str) -> Result<i64, FhirError> {
    let t = tag.trim().trim_start_matches("W/").trim_matches('"');
    t.parse().map_err(|_| {
        FhirError::BadRequest(format!(
            "If-Match '{tag}' is not a version ETag such as W/\"3\""
        ))
    })
}

/// Holds a batch or transaction to the limits before any entry runs: its entries, its
/// reads and searches, and each entry's resource as if it had been posted alone.
fn check_bundle_limits(
    entries: &[Value],
    limits: &crate::fhir::limits::Limits,
) -> Result<(), FhirError> {
    if entries.len() > limits.max_bundle_entries {
        return Err(FhirError::TooCostly(format!(
            "the Bundle has {} entries; at most {} are accepted (limit max-bundle-entries)",
            entries.len(),
            limits.max_bundle_entries
        )));
    }
    let reads = entries
        .iter()
        .filter(|e| {
            e.pointer("/request/method").and_then(Value::as_str) == Some("GET")
                || e.pointer("/request/method").and_then(Value::as_str) == Some("HEAD")
        })
        .count();
    if reads > limits.max_bundle_reads {
        return Err(FhirError::TooCostly(format!(
            "the Bundle has {reads} reads and searches; at most {} are accepted (limit max-bundle-reads)",
            limits.max_bundle_reads
        )));
    }
    for (i, entry) in entries.iter().enumerate() {
        if let Some(resource) = entry.get("resource") {
            crate::fhir::limits::check_value(resource, limits).map_err(|e| entry_error(i, e))?;
        }
    }
    Ok(())
}

/// Turns `entry` into an action, relative to the server's `base_url`.
fn parse_entry(entry: &Value, base_url: &str) -> Result<Action, FhirError> {
    let request = entry
        .get("request")
        .ok_or_else(|| FhirError::BadRequest("the entry has no request".into()))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::BadRequest("the entry has no request.url".into()))?;
    let url = url
        .strip_prefix(base_url)
        .unwrap_or(url)
        .trim_start_matches('/');
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let resource = entry.get("resource").cloned();
    let if_match = request
        .get("ifMatch")
        .and_then(Value::as_str)
        .map(parse_version_tag)
        .transpose()?;
    let need_resource = || {
        resource
            .clone()
            .ok_or_else(|| FhirError::BadRequest(format!("a {method} entry needs a resource")))
    };
    match (method, segments.as_slice()) {
        ("POST", [rtype]) if query.is_empty() => Ok(Action::Create {
            rtype: rtype.to_string(),
            resource: need_resource()?,
            if_none_exist: request
                .get("ifNoneExist")
                .and_then(Value::as_str)
                .map(str::to_string),
        }),
        ("PUT", [rtype, id]) if query.is_empty() => Ok(Action::Update {
            rtype: rtype.to_string(),
            id: id.to_string(),
            resource: need_resource()?,
            if_match,
        }),
        ("DELETE", [rtype, id]) if query.is_empty() => Ok(Action::Delete {
            rtype: rtype.to_string(),
            id: id.to_string(),
            if_match,
        }),
        ("GET", [rtype, id]) if query.is_empty() => Ok(Action::Read {
            rtype: rtype.to_string(),
            id: id.to_string(),
        }),
        ("GET", [rtype, id, "_history", vid]) if query.is_empty() => Ok(Action::Vread {
            rtype: rtype.to_string(),
            id: id.to_string(),
            vid: vid.to_string(),
        }),
        ("GET" | "POST" | "PUT" | "DELETE", _) => Err(FhirError::BadRequest(format!(
            "{method} {url} is not supported inside a Bundle (supported: POST Type, PUT Type/id, DELETE Type/id, GET Type/id[/_history/vid])"
        ))),
        _ => Err(FhirError::BadRequest(format!(
            "request.method '{method}' is not supported inside a Bundle"
        ))),
    }
}

/// Validates the resource of a write action (types and ids included).
fn validate_action(action: Action) -> Result<Action, FhirError> {
    Ok(match action {
        Action::Create {
            rtype,
            resource,
            if_none_exist,
        } => {
            check_type(&rtype)?;
            let mut resource = validate_as(&rtype, resource)?;
            // A created resource gets a server id: whatever id the client sent is ignored.
            if let Some(obj) = resource.as_object_mut() {
                obj.remove("id");
            }
            Action::Create {
                rtype,
                resource,
                if_none_exist,
            }
        }
        Action::Update {
            rtype,
            id,
            resource,
            if_match,
        } => {
            check_type(&rtype)?;
            let resource = validate_for_update(&rtype, &id, resource)?;
            Action::Update {
                rtype,
                id,
                resource,
                if_match,
            }
        }
        Action::Delete { ref rtype, .. }
        | Action::Read { ref rtype, .. }
        | Action::Vread { ref rtype, .. }
        | Action::Existing { ref rtype, .. } => {
            check_type(rtype)?;
            action
        }
    })
}

impl Repository {
    fn run_action(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        action: Action,
        facts: &mut Facts,
    ) -> Result<EntryResult, FhirError> {
        match action {
            Action::Create {
                rtype,
                resource,
                if_none_exist,
            } => {
                if let Some(criteria) = if_none_exist {
                    if let Some(existing) =
                        self.conditional_match(conn, ctx, &rtype, &criteria, facts)?
                    {
                        return Ok(EntryResult::Written(existing));
                    }
                }
                let id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(super::rows::new_id);
                self.write_in(conn, ctx, &rtype, &id, resource, None, "POST", facts)
                    .map(EntryResult::Written)
            }
            Action::Update {
                rtype,
                id,
                resource,
                if_match,
            } => self
                .write_in(conn, ctx, &rtype, &id, resource, if_match, "PUT", facts)
                .map(EntryResult::Written),
            Action::Delete {
                rtype,
                id,
                if_match,
            } => self
                .delete_in(conn, ctx, &rtype, &id, if_match, facts)
                .map(EntryResult::Written),
            Action::Read { rtype, id } => self
                .read_in(conn, ctx, &rtype, &id, facts)
                .map(EntryResult::Read),
            Action::Vread { rtype, id, vid } => self
                .vread_in(conn, ctx, &rtype, &id, &vid, facts)
                .map(EntryResult::Read),
            Action::Existing { rtype, id } => {
                self.read_in(conn, ctx, &rtype, &id, facts).map(|resource| {
                    EntryResult::Written(WriteOutcome {
                        status: WriteStatus::Existing,
                        resource,
                    })
                })
            }
        }
    }

    /// Runs a transaction Bundle: every entry or none.
    pub fn transaction(
        &self,
        ctx: &RequestContext,
        bundle: &Value,
        base_url: &str,
    ) -> Result<Vec<EntryResult>, FhirError> {
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        check_bundle_limits(&entries, &self.limits)?;
        let mut actions = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let action = parse_entry(entry, base_url)
                .and_then(validate_action)
                .map_err(|e| entry_error(i, e))?;
            actions.push(action);
        }
        self.audited_write(ctx, "transaction", |conn, facts| {
            // Give every created resource its id, resolving conditional creates first, so
            // that references between entries can be rewritten before anything is written.
            let mut map: HashMap<String, String> = HashMap::new();
            for (i, (entry, action)) in entries.iter().zip(actions.iter_mut()).enumerate() {
                let full_url = entry.get("fullUrl").and_then(Value::as_str);
                match action {
                    Action::Create {
                        rtype,
                        resource,
                        if_none_exist,
                    } => {
                        // Decided once, here: the entry then either exists or is created.
                        let mut existing_id = None;
                        if let Some(criteria) = if_none_exist.take() {
                            if let Some(existing) = self
                                .conditional_match(conn, ctx, rtype, &criteria, facts)
                                .map_err(|e| entry_error(i, e))?
                            {
                                existing_id = Some(existing.resource.id.clone());
                            }
                        }
                        let target = format!("{rtype}/");
                        let id = match existing_id {
                            Some(id) => {
                                *action = Action::Existing {
                                    rtype: rtype.clone(),
                                    id: id.clone(),
                                };
                                id
                            }
                            None => {
                                let id = super::rows::new_id();
                                resource["id"] = json!(id);
                                id
                            }
                        };
                        if let Some(u) = full_url {
                            map.insert(u.to_string(), format!("{target}{id}"));
                        }
                    }
                    Action::Update { rtype, id, .. } => {
                        if let Some(u) = full_url {
                            if u.starts_with("urn:") {
                                map.insert(u.to_string(), format!("{rtype}/{id}"));
                            }
                        }
                    }
                    _ => {}
                }
            }
            for (i, action) in actions.iter_mut().enumerate() {
                if let Action::Create { resource, .. } | Action::Update { resource, .. } = action {
                    references::rewrite(resource, &map);
                    if let Some(urn) = references::dangling_urn(resource) {
                        return Err(entry_error(
                            i,
                            FhirError::BadRequest(format!(
                                "reference {urn} names no entry of this transaction"
                            )),
                        ));
                    }
                }
            }
            // Two entries may not write the same resource (FHIR transaction rules).
            let mut targets = std::collections::HashSet::new();
            for (i, action) in actions.iter().enumerate() {
                if let Some((t, id)) = action.target() {
                    if !targets.insert((t.to_string(), id.to_string())) {
                        return Err(entry_error(
                            i,
                            FhirError::BadRequest(format!(
                                "{t}/{id} is written by more than one entry of this transaction"
                            )),
                        ));
                    }
                }
            }
            // Phase order (DELETE, POST, PUT, GET), then by resource, so that concurrent
            // transactions take row locks in one order and cannot deadlock each other.
            let mut order: Vec<usize> = (0..actions.len()).collect();
            order.sort_by(|&a, &b| {
                (actions[a].order(), actions[a].target())
                    .cmp(&(actions[b].order(), actions[b].target()))
            });
            let mut results: Vec<Option<EntryResult>> = (0..actions.len()).map(|_| None).collect();
            for i in order {
                let result = self
                    .run_action(conn, ctx, actions[i].clone(), facts)
                    .map_err(|e| entry_error(i, e))?;
                results[i] = Some(result);
            }
            Ok(results.into_iter().flatten().collect())
        })
    }

    /// Runs a batch Bundle: each entry on its own, failures reported per entry.
    pub fn batch(
        &self,
        ctx: &RequestContext,
        bundle: &Value,
        base_url: &str,
    ) -> Result<Vec<EntryResult>, FhirError> {
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        check_bundle_limits(&entries, &self.limits)?;
        Ok(entries
            .iter()
            .map(|entry| {
                let action = match parse_entry(entry, base_url).and_then(validate_action) {
                    Ok(a) => a,
                    Err(e) => return EntryResult::Failed(e),
                };
                let result = match action {
                    Action::Read { .. } | Action::Vread { .. } => {
                        self.audited_read(ctx, "batch", |conn, facts| {
                            self.run_action(conn, ctx, action, facts)
                        })
                    }
                    _ => self.audited_write(ctx, "batch", |conn, facts| {
                        self.run_action(conn, ctx, action, facts)
                    }),
                };
                result.unwrap_or_else(EntryResult::Failed)
            })
            .collect())
    }
}

impl EntryResult {
    /// The HTTP status line of the entry (`201 Created`…).
    pub fn status_line(&self) -> String {
        match self {
            EntryResult::Written(w) => match w.status {
                WriteStatus::Created => "201 Created".into(),
                WriteStatus::Updated | WriteStatus::Existing => "200 OK".into(),
                WriteStatus::Deleted | WriteStatus::AlreadyDeleted => "204 No Content".into(),
            },
            EntryResult::Read(_) => "200 OK".into(),
            EntryResult::Failed(e) => {
                let s = e.status();
                format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
            }
        }
    }
}
