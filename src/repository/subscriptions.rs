//! subscriptions: FHIR R4 `Subscription`s with the rest-hook channel. A Subscription is
//! checked when written and recorded as active; every resource written afterwards is
//! matched against the active ones of its type (its criteria, plus `_id`, run as a search in
//! the write's transaction), and a match that the subscription's owner may see — judged by
//! the access point in the owner's context, the patient's rules included — queues a
//! delivery in that same transaction. The [`crate::delivery`] worker sends them and retries
//! with backoff until the subscriber answers: a queued notification is never lost.

use super::repo::Repository;
use super::storage::{self, notifications, AnyConnection};
use crate::access::{Facts, Interaction};
use crate::auth::RequestContext;
use crate::error::FhirError;
use crate::fhir::{instant, search_query};
use crate::resource::StoredResource;
use serde_json::{json, Value};

/// Types that cannot be subscribed to: traces (every read writes one) and subscriptions.
pub const NOT_SUBSCRIBABLE: &[&str] = &["AuditEvent", "Subscription"];

/// `channel.header` as (name, value) pairs; None for an entry that is not `Name: value`.
pub fn header_pairs(channel: &Value) -> Vec<Option<(String, String)>> {
    channel
        .get("header")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|h| {
            let (n, v) = h.as_str()?.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

impl Repository {
    /// Records what the matcher needs of a Subscription just written (or forgets it).
    pub(super) fn record_subscription(
        &self,
        conn: &mut AnyConnection,
        ctx: &RequestContext,
        id: &str,
        active: Option<(String, String, String)>,
    ) -> Result<(), FhirError> {
        let previous = notifications::subscription(conn, id)?;
        let row = match active {
            None => None,
            Some((resource_type, criteria, tagged_owner)) => {
                // The owner's context is the creator's; an update by someone else (a backend
                // service) keeps it.
                let me = ctx.subject();
                let owner = match previous {
                    Some(p) if p.owner_sub().as_deref() != Some(me.as_str()) => p.owner,
                    // The owner is someone else and their context is not known here (a
                    // backend service turning someone's Subscription back on): it stays
                    // silent rather than notify with the backend's rights.
                    None if tagged_owner != me => json!({"sub": tagged_owner}).to_string(),
                    _ => ctx.owner().to_string(),
                };
                Some((resource_type, criteria, owner))
            }
        };
        notifications::put_subscription(
            conn,
            id,
            row.as_ref()
                .map(|(t, c, o)| (t.as_str(), c.as_str(), o.as_str())),
        )
    }

    /// Queues a notification for every active Subscription that `written` matches and whose
    /// owner may see it (in the write's transaction).
    pub(super) fn match_subscriptions(
        &self,
        conn: &mut AnyConnection,
        written: &StoredResource,
    ) -> Result<(), FhirError> {
        let rtype = written.resource_type.as_str();
        if NOT_SUBSCRIBABLE.contains(&rtype) || written.deleted {
            return Ok(());
        }
        let subscriptions = notifications::subscriptions_on(conn, rtype)?;
        for sub in subscriptions {
            let now = instant::now_us();
            let Some(owner_ctx) = self.owner_context(conn, &sub, now)? else {
                tracing::debug!(subscription = %sub.id, "owner unknown or grant revoked: not notified");
                continue;
            };
            let (_, query) = sub.criteria.split_once('?').unwrap_or((&sub.criteria, ""));
            let query = if query.is_empty() {
                format!("_id={}", written.id)
            } else {
                format!("{query}&_id={}", written.id)
            };
            let Ok(mut search) = search_query::parse(rtype, &query, 1, 1, &self.base_url, true)
            else {
                continue;
            };
            match self.access.search_restriction(&owner_ctx, &search) {
                Ok(Some(patient)) => search
                    .clauses
                    .push(search_query::patient_restriction(rtype, &patient)?),
                Ok(None) => {}
                Err(_) => continue,
            }
            if storage::search::matching_ids(conn, &search)?.is_empty() {
                continue;
            }
            // What the owner may not read, they do not hear of either; what they may is
            // an access to the record like any other, traced.
            let mut facts = Facts::new();
            let seen = self.decide_read(
                conn,
                &owner_ctx,
                Interaction::Read,
                written.clone(),
                &mut facts,
            )?;
            if seen.is_ok() {
                // Only what the owner hears of is traced (a refusal here is no request of
                // theirs: tracing it would tell a blocked professional of the write).
                super::audit::write_traces(
                    conn,
                    &super::audit::record_traces(&owner_ctx, "read", &facts),
                )?;
                notifications::queue_delivery(
                    conn,
                    &sub.id,
                    rtype,
                    &written.id,
                    written.version_id,
                    now,
                )?;
            }
        }
        Ok(())
    }
}

/// A notification ready to send.
pub struct Outgoing {
    pub seq: i64,
    pub attempts: i32,
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    /// The payload type and body (None: an empty POST).
    pub body: Option<(String, String)>,
}

impl Repository {
    /// Claims the deliveries due (for `lease_us`) and makes them ready to send; those whose
    /// subscription is gone or off are dropped.
    pub fn claim_deliveries(&self, lease_us: i64, limit: i64) -> Result<Vec<Outgoing>, FhirError> {
        let mut conn = self.storage.conn()?;
        let now = instant::now_us();
        let claim = uuid::Uuid::new_v4().to_string();
        let rows = storage::Storage::write_on(&mut conn, |c| {
            notifications::claim_deliveries(c, &claim, now, lease_us, limit)
        })?;
        let mut out = Vec::new();
        for row in rows {
            let sub = storage::current(&mut conn, "Subscription", &row.subscription_id)?
                .filter(|s| !s.deleted)
                .and_then(|s| serde_json::from_str::<Value>(&s.content).ok())
                .filter(|s| s.get("status").and_then(Value::as_str) == Some("active"));
            let Some(sub) = sub else {
                notifications::delivered(&mut conn, row.seq)?;
                continue;
            };
            // Judged again now, in the owner's name: a document masked or a professional
            // blocked since the write is not sent.
            let Some(version) = self.still_visible(&mut conn, &row)? else {
                notifications::delivered(&mut conn, row.seq)?;
                continue;
            };
            let channel = &sub["channel"];
            let headers = header_pairs(channel).into_iter().flatten().collect();
            let body = channel
                .get("payload")
                .and_then(Value::as_str)
                .map(|mime| (mime.to_string(), version.content));
            out.push(Outgoing {
                seq: row.seq,
                attempts: row.attempts,
                endpoint: channel["endpoint"].as_str().unwrap_or_default().to_string(),
                headers,
                body,
            });
        }
        Ok(out)
    }

    /// The context a Subscription's notifications are judged in: its owner's, while the
    /// grant they created it under stands (a revoked grant or a suspended app silences it).
    pub(super) fn owner_context(
        &self,
        conn: &mut AnyConnection,
        sub: &notifications::SubscriptionRow,
        now: i64,
    ) -> Result<Option<RequestContext>, FhirError> {
        let owner: Value = serde_json::from_str(&sub.owner).unwrap_or(Value::Null);
        if let Some(grant) = owner.get("grant").and_then(Value::as_str) {
            if !storage::authorizations::grant_active(conn, grant)? {
                return Ok(None);
            }
        }
        Ok(RequestContext::of_subscription_owner(
            &owner,
            &format!("subscription-{}", sub.id),
            now,
        ))
    }

    /// The version a delivery tells of, if the owner of its subscription may still see it.
    pub(super) fn still_visible(
        &self,
        conn: &mut AnyConnection,
        row: &notifications::DeliveryRow,
    ) -> Result<Option<StoredResource>, FhirError> {
        let Some(sub) = notifications::subscription(conn, &row.subscription_id)? else {
            return Ok(None);
        };
        let Some(owner_ctx) = self.owner_context(conn, &sub, instant::now_us())? else {
            return Ok(None);
        };
        let Some(version) =
            storage::version(conn, &row.resource_type, &row.resource_id, row.version_id)?
                .filter(|v| !v.deleted)
        else {
            return Ok(None);
        };
        let mut facts = Facts::new();
        Ok(self
            .decide_read(
                conn,
                &owner_ctx,
                Interaction::Vread,
                super::rows::from_version(version),
                &mut facts,
            )?
            .ok()
            .map(|v| v.get().clone()))
    }

    /// The subscriber took the notification.
    pub fn delivered(&self, seq: i64) -> Result<(), FhirError> {
        notifications::delivered(&mut *self.storage.conn()?, seq)
    }

    /// The attempt failed: tried again at `next_us`.
    pub fn retry_delivery(
        &self,
        seq: i64,
        attempts: i32,
        next_us: i64,
        error: &str,
    ) -> Result<(), FhirError> {
        notifications::retry_later(&mut *self.storage.conn()?, seq, attempts, next_us, error)
    }
}
