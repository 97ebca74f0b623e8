//! subscriptions: FHIR R4 Subscriptions (rest-hook). A Subscription is checked and kept
//! as Carnet serves it (its owner tagged, `status` active or off) when it is written, and
//! every other write is matched against the active ones; the repository queues what the
//! owner may see, and the delivery job (`crate::jobs::delivery`) sends it.

use serde_json::{json, Value};

use crate::access::{subscription_owner as owner_of, SUBSCRIPTION_OWNER as OWNER_TAG};
use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::fhir::{instant, search_query};
use crate::repository::subscriptions::{header_pairs, NOT_SUBSCRIBABLE};
use crate::repository::{HookTx, WriteHook, Written};

/// The payload types Carnet sends (none: an empty POST that says "look again").
const PAYLOADS: &[&str] = &["application/fhir+json", "application/json"];

fn unprocessable(why: impl Into<String>) -> FhirError {
    FhirError::Unprocessable(why.into())
}

/// What the matcher keeps of an active Subscription: the type and the criteria.
pub struct Active {
    pub resource_type: String,
    pub criteria: String,
    /// Its owner, as tagged (`Patient/X`, `Practitioner/X`, `client/C`).
    pub owner: String,
}

/// Checks a Subscription written by `ctx` and returns it as Carnet keeps it: its owner
/// tagged (the first writer's, kept on updates), `status` active (or off), and what the
/// matcher needs when active. A channel Carnet cannot serve is 422.
pub fn prepare(
    tx: &mut dyn HookTx,
    ctx: &RequestContext,
    mut resource: Value,
    current: Option<&Value>,
    base_url: &str,
) -> Result<(Value, Option<Active>), FhirError> {
    let channel = resource.get("channel").cloned().unwrap_or(Value::Null);
    match channel.get("type").and_then(Value::as_str) {
        Some("rest-hook") => {}
        other => {
            return Err(unprocessable(format!(
                "Subscription.channel.type {}: Carnet offers the rest-hook channel only",
                other.unwrap_or("(absent)")
            )))
        }
    }
    let endpoint = channel
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| unprocessable("Subscription.channel.endpoint is required for rest-hook"))?;
    let url = url::Url::parse(endpoint)
        .map_err(|e| unprocessable(format!("Subscription.channel.endpoint is not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(unprocessable(
            "Subscription.channel.endpoint must be an https URL (plain http only on a loopback address)",
        ));
    }
    if let Some(p) = channel.get("payload").and_then(Value::as_str) {
        if !PAYLOADS.contains(&p) {
            return Err(unprocessable(format!(
                "Subscription.channel.payload {p}: Carnet sends application/fhir+json, or nothing (no payload)"
            )));
        }
    }
    for h in header_pairs(&channel) {
        let ok = h.is_some_and(|(n, v)| {
            reqwest::header::HeaderName::from_bytes(n.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(&v).is_ok()
        });
        if !ok {
            return Err(unprocessable(
                "Subscription.channel.header: each must read 'Name: value'",
            ));
        }
    }
    let criteria = resource
        .get("criteria")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let (rtype, query) = criteria.split_once('?').unwrap_or((&criteria, ""));
    if !crate::fhir::resource_types::is_supported(rtype) || NOT_SUBSCRIBABLE.contains(&rtype) {
        return Err(unprocessable(format!(
            "Subscription.criteria '{criteria}': not a search of a type Carnet notifies (Type?parameters)"
        )));
    }
    let search = search_query::parse(rtype, query, 1, 1, base_url, true)
        .map_err(|e| unprocessable(format!("Subscription.criteria '{criteria}': {e}")))?;
    if !search.includes.is_empty() || !search.revincludes.is_empty() || !search.sort.is_empty() {
        return Err(unprocessable(
            "Subscription.criteria: _include, _revinclude and _sort mean nothing for a notification",
        ));
    }
    // Criteria that reach beyond what the owner may search are refused now, not silently
    // matched later.
    tx.search_restriction(ctx, &search)?;

    // The owner: the first writer (a backend service changing someone's subscription does
    // not take it over).
    let owner = current
        .and_then(owner_of)
        .map(str::to_string)
        .unwrap_or_else(|| ctx.subject());
    let mut tags: Vec<Value> = resource
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    tags.retain(|t| t.get("system").and_then(Value::as_str) != Some(OWNER_TAG));
    tags.push(json!({"system": OWNER_TAG, "code": owner.clone()}));
    if !resource.get("meta").is_some_and(Value::is_object) {
        resource["meta"] = json!({});
    }
    resource["meta"]["tag"] = Value::Array(tags);

    let ended = resource
        .get("end")
        .and_then(Value::as_str)
        .and_then(instant::parse_us)
        .is_some_and(|end| end <= instant::now_us());
    let off = ended || resource.get("status").and_then(Value::as_str) == Some("off");
    if let Some(o) = resource.as_object_mut() {
        o.remove("error");
    }
    resource["status"] = json!(if off { "off" } else { "active" });
    let active = (!off).then(|| Active {
        resource_type: rtype.to_string(),
        criteria: format!("{rtype}?{}", search.canonical_query),
        owner,
    });
    Ok((resource, active))
}

/// The Subscription feature's write hook.
pub struct Subscriptions {
    base_url: String,
}

impl Subscriptions {
    pub fn new(base_url: &str) -> Subscriptions {
        Subscriptions {
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }
}

impl WriteHook for Subscriptions {
    fn preparing(
        &self,
        tx: &mut dyn HookTx,
        ctx: &RequestContext,
        rtype: &str,
        resource: Value,
        current: Option<&Value>,
    ) -> Result<Value, FhirError> {
        if rtype != "Subscription" {
            return Ok(resource);
        }
        Ok(prepare(tx, ctx, resource, current, &self.base_url)?.0)
    }

    fn written(&self, tx: &mut dyn HookTx, w: &Written<'_>) -> Result<(), FhirError> {
        if w.resource.resource_type != "Subscription" {
            return tx.match_subscriptions(w.resource);
        }
        let Some(ctx) = w.ctx else {
            return Ok(());
        };
        // What `prepare` kept: active (its criteria, normalised) or off.
        let watch = w.value.and_then(|v| watched(v, &self.base_url));
        tx.record_subscription(ctx, &w.resource.id, watch)
    }
}

/// The (type, criteria, owner) an active Subscription as kept by [`prepare`] watches.
fn watched(v: &Value, base_url: &str) -> Option<(String, String, String)> {
    if v.get("status").and_then(Value::as_str) != Some("active") {
        return None;
    }
    let criteria = v.get("criteria").and_then(Value::as_str)?.trim();
    let (rtype, query) = criteria.split_once('?').unwrap_or((criteria, ""));
    let search = search_query::parse(rtype, query, 1, 1, base_url, true).ok()?;
    Some((
        rtype.to_string(),
        format!("{rtype}?{}", search.canonical_query),
        owner_of(v)?.to_string(),
    ))
}
