//! notifications: rows of the notices to the patient, of the active Subscriptions and of
//! the deliveries still to send.

use super::schema::{deliveries, notices, subscriptions};
use super::{db_err, AnyConnection};
use crate::error::FhirError;
use diesel::prelude::*;

/// Records a notice once: false when a notice with this key exists already.
pub fn put_notice(
    conn: &mut AnyConnection,
    key: &str,
    patient: &str,
    due_us: i64,
    content: &str,
    written: bool,
) -> Result<bool, FhirError> {
    let row = (
        notices::notice_key.eq(key),
        notices::patient.eq(patient),
        notices::due_us.eq(due_us),
        notices::content.eq(content),
        notices::written.eq(written),
    );
    // ON CONFLICT DO NOTHING: a unique violation would abort a PostgreSQL transaction.
    let n = match conn {
        AnyConnection::Postgresql(c) => diesel::insert_into(notices::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c),
        AnyConnection::Sqlite(c) => diesel::insert_into(notices::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c),
    }
    .map_err(db_err)?;
    Ok(n == 1)
}

/// Notices due by `now_us` and not yet written (of one patient, or everyone's), oldest
/// first: (key, content).
pub fn due_notices(
    conn: &mut AnyConnection,
    patient: Option<&str>,
    now_us: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, FhirError> {
    let mut q = notices::table
        .filter(notices::written.eq(false))
        .filter(notices::due_us.le(now_us))
        .order(notices::due_us.asc())
        .limit(limit)
        .select((notices::notice_key, notices::content))
        .into_boxed();
    if let Some(p) = patient {
        q = q.filter(notices::patient.eq(p.to_string()));
    }
    q.load(conn).map_err(db_err)
}

/// Marks a due notice written; false when another request wrote it first.
pub fn notice_written(conn: &mut AnyConnection, key: &str) -> Result<bool, FhirError> {
    diesel::update(
        notices::table
            .filter(notices::notice_key.eq(key))
            .filter(notices::written.eq(false)),
    )
    .set((notices::written.eq(true), notices::content.eq("")))
    .execute(conn)
    .map(|n| n == 1)
    .map_err(db_err)
}

/// An active Subscription, as the matcher needs it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub struct SubscriptionRow {
    pub id: String,
    pub criteria: String,
    pub owner: String,
}

impl SubscriptionRow {
    /// The owner's subject (`Patient/X`, `Practitioner/X`, `client/C`).
    pub fn owner_sub(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.owner)
            .ok()?
            .get("sub")?
            .as_str()
            .map(str::to_string)
    }
}

pub fn subscription(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<SubscriptionRow>, FhirError> {
    subscriptions::table
        .filter(subscriptions::id.eq(id))
        .select(SubscriptionRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)
}

/// Records (or replaces) an active Subscription, or forgets it (`row` None).
pub fn put_subscription(
    conn: &mut AnyConnection,
    id: &str,
    row: Option<(&str, &str, &str)>,
) -> Result<(), FhirError> {
    diesel::delete(subscriptions::table.filter(subscriptions::id.eq(id)))
        .execute(conn)
        .map_err(db_err)?;
    if let Some((rtype, criteria, owner)) = row {
        diesel::insert_into(subscriptions::table)
            .values((
                subscriptions::id.eq(id),
                subscriptions::resource_type.eq(rtype),
                subscriptions::criteria.eq(criteria),
                subscriptions::owner.eq(owner),
            ))
            .execute(conn)
            .map_err(db_err)?;
    }
    Ok(())
}

pub fn subscriptions_on(
    conn: &mut AnyConnection,
    rtype: &str,
) -> Result<Vec<SubscriptionRow>, FhirError> {
    subscriptions::table
        .filter(subscriptions::resource_type.eq(rtype))
        .select(SubscriptionRow::as_select())
        .load(conn)
        .map_err(db_err)
}

/// Queues a notification of `rtype/id` version `vid` for a subscription.
pub fn queue_delivery(
    conn: &mut AnyConnection,
    subscription: &str,
    rtype: &str,
    id: &str,
    vid: i64,
    now_us: i64,
) -> Result<(), FhirError> {
    diesel::insert_into(deliveries::table)
        .values((
            deliveries::subscription_id.eq(subscription),
            deliveries::resource_type.eq(rtype),
            deliveries::resource_id.eq(id),
            deliveries::version_id.eq(vid),
            deliveries::attempts.eq(0),
            deliveries::next_attempt_us.eq(now_us),
            deliveries::lease_until_us.eq(0i64),
            deliveries::claim.eq(""),
            deliveries::last_error.eq(""),
            deliveries::created_us.eq(now_us),
        ))
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

/// A notification to send.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub seq: i64,
    pub subscription_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub version_id: i64,
    pub attempts: i32,
}

/// Claims up to `limit` due deliveries for `lease_us` (another node skips them meanwhile;
/// a node that dies leaves them to be claimed again once the lease ends).
pub fn claim_deliveries(
    conn: &mut AnyConnection,
    claim: &str,
    now_us: i64,
    lease_us: i64,
    limit: i64,
) -> Result<Vec<DeliveryRow>, FhirError> {
    let due: Vec<i64> = deliveries::table
        .filter(deliveries::next_attempt_us.le(now_us))
        .filter(deliveries::lease_until_us.lt(now_us))
        .order(deliveries::seq.asc())
        .limit(limit)
        .select(deliveries::seq)
        .load(conn)
        .map_err(db_err)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    // The lease is tested again by the UPDATE itself: of two nodes that read the same
    // rows, only the first to update them holds them.
    diesel::update(
        deliveries::table
            .filter(deliveries::seq.eq_any(&due))
            .filter(deliveries::lease_until_us.lt(now_us)),
    )
    .set((
        deliveries::lease_until_us.eq(now_us + lease_us),
        deliveries::claim.eq(claim),
    ))
    .execute(conn)
    .map_err(db_err)?;
    deliveries::table
        .filter(deliveries::seq.eq_any(&due))
        .filter(deliveries::claim.eq(claim))
        .order(deliveries::seq.asc())
        .select(DeliveryRow::as_select())
        .load(conn)
        .map_err(db_err)
}

/// A delivery the subscriber took (or that has nothing left to send).
pub fn delivered(conn: &mut AnyConnection, seq: i64) -> Result<(), FhirError> {
    diesel::delete(deliveries::table.filter(deliveries::seq.eq(seq)))
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

/// A failed attempt: tried again at `next_us`.
pub fn retry_later(
    conn: &mut AnyConnection,
    seq: i64,
    attempts: i32,
    next_us: i64,
    error: &str,
) -> Result<(), FhirError> {
    diesel::update(deliveries::table.filter(deliveries::seq.eq(seq)))
        .set((
            deliveries::attempts.eq(attempts),
            deliveries::next_attempt_us.eq(next_us),
            deliveries::lease_until_us.eq(0i64),
            deliveries::claim.eq(""),
            deliveries::last_error.eq(error),
        ))
        .execute(conn)
        .map(|_| ())
        .map_err(db_err)
}

/// The stamp of a patient's rules ('' when never renewed).
pub fn rules_stamp(conn: &mut AnyConnection, patient: &str) -> Result<String, FhirError> {
    use super::schema::rules_versions;
    rules_versions::table
        .filter(rules_versions::patient.eq(patient))
        .select(rules_versions::stamp)
        .get_result(conn)
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(db_err)
}

/// The stamps of two keys in one statement (a patient's rules and the requester's
/// professions on a read; '' for a key never renewed).
pub fn stamps_of_two(
    conn: &mut AnyConnection,
    a: &str,
    b: &str,
) -> Result<(String, String), FhirError> {
    use super::schema::rules_versions;
    let rows: Vec<(String, String)> = rules_versions::table
        .filter(
            rules_versions::patient
                .eq(a)
                .or(rules_versions::patient.eq(b)),
        )
        .select((rules_versions::patient, rules_versions::stamp))
        .load(conn)
        .map_err(db_err)?;
    let of = |k: &str| {
        rows.iter()
            .find(|(p, _)| p == k)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    Ok((of(a), of(b)))
}

/// Renews the stamp of a patient's rules (a fresh value: a rolled-back renewal is never
/// confused with a later one).
pub fn renew_rules_stamp(conn: &mut AnyConnection, patient: &str) -> Result<(), FhirError> {
    use super::schema::rules_versions;
    let stamp = uuid::Uuid::new_v4().to_string();
    let row = (
        rules_versions::patient.eq(patient),
        rules_versions::stamp.eq(&stamp),
    );
    match conn {
        AnyConnection::Postgresql(c) => diesel::insert_into(rules_versions::table)
            .values(row)
            .on_conflict(rules_versions::patient)
            .do_update()
            .set(rules_versions::stamp.eq(&stamp))
            .execute(c),
        AnyConnection::Sqlite(c) => diesel::insert_into(rules_versions::table)
            .values(row)
            .on_conflict(rules_versions::patient)
            .do_update()
            .set(rules_versions::stamp.eq(&stamp))
            .execute(c),
    }
    .map(|_| ())
    .map_err(db_err)
}
