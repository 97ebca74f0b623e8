//! access_log: the access trail's own tables (`access_log`, `access_log_entity`), written
//! in multi-row inserts (one statement per table per batch; on PostgreSQL one statement
//! for both, when a batch has no notices) and read back as AuditEvents.
//! Never through the generic resource store, never with the generic index rows.

use diesel::prelude::*;

use super::connection::AnyConnection;
use super::failure::db_err;
use super::rows::{CurrentRow, HistoryQuery, VersionRow};
use super::schema::{access_log, access_log_entity};
use super::sql::{date_condition, Sql};
use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::fhir::search_query::{Clause, Kind, SearchRequest, SortKey, Value};
use crate::repository::trace::Trace;

/// The resource type served from the log.
pub const TYPE: &str = "AuditEvent";

/// Rows per multi-row insert (SQLite allows 32766 bound values per statement; 20 columns).
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = access_log)]
struct LogRow {
    #[diesel(skip_insertion)]
    seq: i64,
    id: String,
    recorded: i64,
    patient: Option<String>,
    agent: Option<String>,
    client: String,
    establishment: Option<String>,
    event_type: String,
    interaction: String,
    action: String,
    outcome: String,
    entities: String,
    detail: String,
    labels: String,
    content: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = access_log_entity)]
struct EntityRow<'a> {
    reference: &'a str,
    id: &'a str,
}

fn split(s: &str, by: char) -> Vec<String> {
    s.split(by)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a trace says that nothing searches on, in one column (`detail`).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Detail {
    #[serde(default, skip_serializing_if = "std::ops::Not::not", rename = "g")]
    guardian: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "p")]
    purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "r")]
    reason: Option<String>,
    #[serde(default, rename = "d")]
    description: String,
    #[serde(default, rename = "s")]
    site: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "a")]
    asked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "n")]
    agent_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "e")]
    establishment_name: Option<String>,
}

impl Detail {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    fn from_json(text: &str) -> Detail {
        serde_json::from_str(text).unwrap_or_default()
    }
}

impl LogRow {
    fn of(t: &Trace) -> LogRow {
        LogRow {
            seq: 0,
            id: t.id.clone(),
            recorded: t.recorded,
            patient: t.patient.clone(),
            agent: t.agent.clone(),
            client: t.client.clone(),
            establishment: t.establishment.clone(),
            event_type: t.event_type.clone(),
            interaction: t.interaction.clone(),
            action: t.action.clone(),
            outcome: t.outcome.clone(),
            entities: t.entities.join("\n"),
            detail: Detail {
                guardian: t.guardian,
                purpose: t.purpose.clone(),
                reason: t.reason.clone(),
                description: t.description.clone(),
                site: t.site.clone(),
                asked: t.asked.clone(),
                agent_name: t.agent_name.clone(),
                establishment_name: t.establishment_name.clone(),
            }
            .to_json(),
            labels: t.labels.join(","),
            content: t.content.clone(),
        }
    }

    fn trace(self) -> (i64, Trace) {
        let d = Detail::from_json(&self.detail);
        (
            self.seq,
            Trace {
                id: self.id,
                recorded: self.recorded,
                patient: self.patient,
                agent: self.agent,
                client: self.client,
                establishment: self.establishment,
                agent_name: d.agent_name,
                establishment_name: d.establishment_name,
                guardian: d.guardian,
                purpose: d.purpose,
                reason: d.reason,
                event_type: self.event_type,
                interaction: self.interaction,
                action: self.action,
                outcome: self.outcome,
                description: d.description,
                site: d.site,
                entities: split(&self.entities, '\n'),
                asked: d.asked,
                labels: split(&self.labels, ','),
                content: self.content,
            },
        )
    }
}

/// Appends `traces` (inside the caller's transaction): one insert per table per
/// [`CHUNK`] traces.
pub fn insert(conn: &mut AnyConnection, traces: &[Trace]) -> Result<(), FhirError> {
    if traces.is_empty() {
        return Ok(());
    }
    let rows: Vec<LogRow> = traces.iter().map(LogRow::of).collect();
    let refs: Vec<(String, &str)> = traces
        .iter()
        .flat_map(|t| t.references().into_iter().map(move |r| (r, t.id.as_str())))
        .collect();
    let entity_rows: Vec<EntityRow> = refs
        .iter()
        .map(|(r, id)| EntityRow { reference: r, id })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        match conn {
            AnyConnection::Sqlite(c) => diesel::insert_into(access_log::table)
                .values(chunk)
                .execute(c),
            AnyConnection::Postgresql(c) => diesel::insert_into(access_log::table)
                .values(chunk)
                .execute(c),
        }
        .map_err(db_err)?;
    }
    for chunk in entity_rows.chunks(CHUNK * 4) {
        match conn {
            AnyConnection::Sqlite(c) => diesel::insert_into(access_log_entity::table)
                .values(chunk)
                .execute(c),
            AnyConnection::Postgresql(c) => diesel::insert_into(access_log_entity::table)
                .values(chunk)
                .execute(c),
        }
        .map_err(db_err)?;
    }
    Ok(())
}

/// Writes `traces` on PostgreSQL in one statement, so in one round trip: both tables
/// filled from bound arrays (`unnest`) by a data-modifying `WITH`; outside an explicit
/// transaction the statement is its own, durable at its commit (`synchronous_commit` on
/// the writer's connection).
pub fn insert_in_one_statement(
    conn: &mut diesel::PgConnection,
    traces: &[Trace],
) -> Result<(), FhirError> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text};
    let rows: Vec<LogRow> = traces.iter().map(LogRow::of).collect();
    let text = |f: fn(&LogRow) -> &String| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let opt =
        |f: fn(&LogRow) -> &Option<String>| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let (references, ids): (Vec<String>, Vec<String>) = traces
        .iter()
        .flat_map(|t| t.references().into_iter().map(move |r| (r, t.id.clone())))
        .unzip();
    diesel::sql_query(
        "WITH logged AS (INSERT INTO access_log (id, recorded, patient, agent, client, \
         establishment, event_type, interaction, action, outcome, entities, detail, labels, \
         content) SELECT id, recorded, patient, agent, client, establishment, event_type, \
         interaction, action, outcome, entities, detail, labels, content FROM unnest($1::text[], \
         $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[]) WITH \
         ORDINALITY AS u(id, recorded, patient, agent, client, establishment, event_type, \
         interaction, action, outcome, entities, detail, labels, content, n) ORDER BY n) \
         INSERT INTO access_log_entity (reference, id) SELECT * FROM unnest($15::text[], $16::text[])",
    )
    .bind::<Array<Text>, _>(text(|r| &r.id))
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.recorded).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(opt(|r| &r.patient))
    .bind::<Array<Nullable<Text>>, _>(opt(|r| &r.agent))
    .bind::<Array<Text>, _>(text(|r| &r.client))
    .bind::<Array<Nullable<Text>>, _>(opt(|r| &r.establishment))
    .bind::<Array<Text>, _>(text(|r| &r.event_type))
    .bind::<Array<Text>, _>(text(|r| &r.interaction))
    .bind::<Array<Text>, _>(text(|r| &r.action))
    .bind::<Array<Text>, _>(text(|r| &r.outcome))
    .bind::<Array<Text>, _>(text(|r| &r.entities))
    .bind::<Array<Text>, _>(text(|r| &r.detail))
    .bind::<Array<Text>, _>(text(|r| &r.labels))
    .bind::<Array<Nullable<Text>>, _>(opt(|r| &r.content))
    .bind::<Array<Text>, _>(references)
    .bind::<Array<Text>, _>(ids)
    .execute(conn)
    .map(|_| ())
    .map_err(db_err)
}

/// The AuditEvent a trace is served as, as a stored current row.
fn current_row(t: &Trace) -> CurrentRow {
    CurrentRow {
        resource_type: TYPE.into(),
        id: t.id.clone(),
        version_id: 1,
        last_updated: t.recorded,
        deleted: false,
        content: t.to_fhir().to_string(),
    }
}

/// One trace, by id.
pub fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Trace>, FhirError> {
    Ok(access_log::table
        .filter(access_log::id.eq(id))
        .select(LogRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)?
        .map(|r| r.trace().1))
}

/// A trace as the current row of its AuditEvent.
pub fn current(conn: &mut AnyConnection, id: &str) -> Result<Option<CurrentRow>, FhirError> {
    Ok(get(conn, id)?.as_ref().map(current_row))
}

/// A trace as version 1 of its AuditEvent (the only one).
pub fn version(
    conn: &mut AnyConnection,
    id: &str,
    vid: i64,
) -> Result<Option<VersionRow>, FhirError> {
    if vid != 1 {
        return Ok(None);
    }
    let row = access_log::table
        .filter(access_log::id.eq(id))
        .select(LogRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_err)?;
    Ok(row.map(|r| version_row(r.trace())))
}

fn version_row((seq, t): (i64, Trace)) -> VersionRow {
    let c = current_row(&t);
    VersionRow {
        seq,
        resource_type: c.resource_type,
        id: c.id,
        version_id: 1,
        last_updated: c.last_updated,
        deleted: false,
        method: "POST".into(),
        content: c.content,
    }
}

/// The AuditEvents of `ids`, in the order given; missing ones skipped.
pub fn current_rows(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<CurrentRow>, FhirError> {
    let mut found: Vec<Trace> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let rows: Vec<LogRow> = access_log::table
            .filter(access_log::id.eq_any(chunk))
            .select(LogRow::as_select())
            .load(conn)
            .map_err(db_err)?;
        found.extend(rows.into_iter().map(|r| r.trace().1));
    }
    let pos: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    found.sort_by_key(|t| pos.get(t.id.as_str()).copied().unwrap_or(usize::MAX));
    Ok(found.iter().map(current_row).collect())
}

/// A page of the log as history (each trace one creation), newest first.
pub fn history(conn: &mut AnyConnection, q: &HistoryQuery) -> Result<Vec<VersionRow>, FhirError> {
    let mut query = access_log::table
        .select(LogRow::as_select())
        .order(access_log::seq.desc())
        .limit(q.limit)
        .into_boxed();
    if let Some(id) = &q.id {
        query = query.filter(access_log::id.eq(id.clone()));
    }
    if let Some(since) = q.since_us {
        query = query.filter(access_log::recorded.ge(since));
    }
    if let Some(before) = q.before_seq {
        query = query.filter(access_log::seq.lt(before));
    }
    let rows: Vec<LogRow> = query.load(conn).map_err(db_err)?;
    Ok(rows.into_iter().map(|r| version_row(r.trace())).collect())
}

/// The types an agent reference may name without its type.
const AGENT_TYPES: &[&str] = &[
    "Practitioner",
    "Patient",
    "PractitionerRole",
    "RelatedPerson",
    "Organization",
];

fn unsupported(c: &Clause) -> FhirError {
    FhirError::BadRequest(format!(
        "AuditEvent: '{}' cannot be searched this way (the access log answers patient, agent, \
         entity, date, type, subtype, action, outcome, _id and _lastUpdated)",
        c.param
    ))
}

fn any(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "1 = 0".into()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// The (type, id) of each reference value of a clause.
fn references(c: &Clause) -> impl Iterator<Item = (Option<&str>, &str)> {
    c.values.iter().filter_map(|v| match v {
        Value::Reference {
            target_type,
            target_id,
        } => Some((target_type.as_deref(), target_id.as_str())),
        _ => None,
    })
}

/// The SQL condition of one clause on the log's row `l`.
fn condition(sql: &mut Sql, c: &Clause) -> Result<String, FhirError> {
    let param = c.param.as_str();
    let cond = match (&c.kind, param) {
        (Kind::AnyOf(cs), _) => {
            let mut parts = Vec::new();
            for inner in cs {
                parts.push(condition(sql, inner)?);
            }
            any(parts)
        }
        (Kind::Id, _) => {
            let mut parts = Vec::new();
            for v in &c.values {
                if let Value::Id(id) = v {
                    parts.push(format!("l.id = {}", sql.text(id)));
                }
            }
            any(parts)
        }
        (Kind::LastUpdated, _) | (Kind::Date, "date") => {
            let mut parts = Vec::new();
            for v in &c.values {
                if let Value::Date { prefix, start, end } = v {
                    parts.push(date_condition(
                        sql,
                        "l.recorded",
                        "(l.recorded + 1)",
                        *prefix,
                        *start,
                        *end,
                    ));
                }
            }
            any(parts)
        }
        (Kind::Missing(missing), "patient" | "agent") => {
            let col = if param == "patient" {
                "l.patient"
            } else {
                "l.agent"
            };
            if *missing {
                format!("{col} IS NULL")
            } else {
                format!("{col} IS NOT NULL")
            }
        }
        (Kind::Reference, "patient") => {
            let mut parts = Vec::new();
            for (target_type, target_id) in references(c) {
                if matches!(target_type, None | Some("Patient")) {
                    // A trace posted by a backend service may name several patients.
                    let id = sql.text(target_id);
                    let reference = sql.text(&format!("Patient/{target_id}"));
                    parts.push(format!(
                        "(l.patient = {id} OR (l.content IS NOT NULL AND l.id IN \
                         (SELECT e.id FROM access_log_entity e WHERE e.reference = {reference})))"
                    ));
                }
            }
            any(parts)
        }
        (Kind::Reference, "agent") => {
            let mut parts = Vec::new();
            for (target_type, target_id) in references(c) {
                let types: Vec<&str> = match target_type {
                    Some(t) => vec![t],
                    None => AGENT_TYPES.to_vec(),
                };
                for t in types {
                    parts.push(format!(
                        "l.agent = {}",
                        sql.text(&format!("{t}/{target_id}"))
                    ));
                }
            }
            any(parts)
        }
        (Kind::Reference, "entity") => {
            let mut refs = Vec::new();
            for (target_type, target_id) in references(c) {
                match target_type {
                    Some(t) => refs.push(format!("{t}/{target_id}")),
                    None => refs.extend(
                        resource_types::SUPPORTED
                            .iter()
                            .map(|t| format!("{t}/{target_id}")),
                    ),
                }
            }
            if refs.is_empty() {
                "1 = 0".into()
            } else {
                let list: Vec<String> = refs.iter().map(|r| sql.text(r)).collect();
                format!(
                    "l.id IN (SELECT e.id FROM access_log_entity e WHERE e.reference IN ({}))",
                    list.join(", ")
                )
            }
        }
        (Kind::Missing(missing), "type" | "subtype" | "action" | "outcome") => {
            let col = token_column(param).0;
            if *missing {
                format!("{col} = ''")
            } else {
                format!("{col} <> ''")
            }
        }
        (Kind::Token, "type" | "subtype" | "action" | "outcome") => {
            let (col, known) = token_column(param);
            let mut parts = Vec::new();
            for v in &c.values {
                if let Value::Token { system, code } = v {
                    if let Some(s) = system {
                        if !s.is_empty() && s != known {
                            continue;
                        }
                    }
                    match code {
                        Some(code) => parts.push(format!("{col} = {}", sql.text(code))),
                        None => parts.push(format!("{col} <> ''")),
                    }
                }
            }
            any(parts)
        }
        _ => return Err(unsupported(c)),
    };
    Ok(if c.negate {
        format!("NOT {cond}")
    } else {
        cond
    })
}

/// The column of a token parameter, and the code system its codes are from.
fn token_column(param: &str) -> (&'static str, &'static str) {
    match param {
        "type" => (
            "l.event_type",
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
        ),
        "subtype" => ("l.interaction", "http://hl7.org/fhir/restful-interaction"),
        "action" => ("l.action", "http://hl7.org/fhir/audit-event-action"),
        _ => ("l.outcome", "http://hl7.org/fhir/audit-event-outcome"),
    }
}

/// At most this many traces answer one search (the newest, unless sorted otherwise): each
/// is decided for its viewer before anything is counted, and a trail grows without end.
pub const MAX_MATCHES: usize = 10_000;

/// The ids of the traces matching `req`, newest first unless sorted otherwise (at most
/// [`MAX_MATCHES`]).
pub fn matching_ids(
    conn: &mut AnyConnection,
    req: &SearchRequest,
) -> Result<Vec<String>, FhirError> {
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
        postgres: matches!(conn, AnyConnection::Postgresql(_)),
    };
    let mut conditions = Vec::new();
    for c in &req.clauses {
        conditions.push(condition(&mut sql, c)?);
    }
    if conditions.is_empty() {
        conditions.push("1 = 1".into());
    }
    let mut order = Vec::new();
    for (key, desc) in &req.sort {
        let dir = if *desc { "DESC" } else { "ASC" };
        match key {
            SortKey::Id => order.push(format!("l.id {dir}")),
            SortKey::LastUpdated => order.push(format!("l.recorded {dir}, l.seq {dir}")),
            SortKey::Param(p, _) if p == "date" => {
                order.push(format!("l.recorded {dir}, l.seq {dir}"))
            }
            SortKey::Param(p, _) => {
                return Err(FhirError::BadRequest(format!(
                    "AuditEvent: _sort={p} is not available (date, _lastUpdated and _id are)"
                )))
            }
        }
    }
    order.push("l.seq DESC".into());
    sql.text = format!(
        "SELECT l.id AS id FROM access_log l WHERE {} ORDER BY {} LIMIT {MAX_MATCHES}",
        conditions.join(" AND "),
        order.join(", ")
    );
    sql.load_ids(conn)
}
