//! sql: SQL text with numbered placeholders for either backend, and the conditions more
//! than one query builds.

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::connection::AnyConnection;
use super::failure::db_err;
use crate::error::FhirError;

use crate::fhir::search_query::Prefix;

pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds SQL text with the placeholders of one backend.
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) binds: Vec<Bind>,
    pub(super) postgres: bool,
}

impl Sql {
    /// A numbered placeholder (`$n` on PostgreSQL, `?n` on SQLite), so that conditions
    /// can be written in any order relative to their binds.
    pub(super) fn ph(&mut self, b: Bind) -> String {
        self.binds.push(b);
        let n = self.binds.len();
        if self.postgres {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    }
    pub(super) fn text(&mut self, s: &str) -> String {
        self.ph(Bind::Text(s.to_string()))
    }
    pub(super) fn int(&mut self, i: i64) -> String {
        self.ph(Bind::Int(i))
    }
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

pub(super) fn date_condition(
    sql: &mut Sql,
    start_col: &str,
    end_col: &str,
    prefix: Prefix,
    vs: i64,
    ve: i64,
) -> String {
    let (s, e) = (start_col, end_col);
    let within = |sql: &mut Sql| {
        let a = sql.int(vs);
        let b = sql.int(ve);
        // `{s} < b` is implied (a range ends after it starts) and lets the index bound it.
        format!("({s} >= {a} AND {s} < {b} AND {e} <= {b})")
    };
    match prefix {
        Prefix::Eq => within(sql),
        Prefix::Ne => format!("NOT {}", within(sql)),
        Prefix::Gt => format!("{e} > {}", sql.int(ve)),
        Prefix::Lt => format!("{s} < {}", sql.int(vs)),
        Prefix::Ge => {
            let w = within(sql);
            format!("({e} > {} OR {w})", sql.int(ve))
        }
        Prefix::Le => {
            let w = within(sql);
            format!("({s} < {} OR {w})", sql.int(vs))
        }
        Prefix::Sa => format!("{s} >= {}", sql.int(ve)),
        Prefix::Eb => format!("{e} <= {}", sql.int(vs)),
        Prefix::Ap => {
            // Approximately: the value widened by 10% of its distance from now.
            let now = crate::fhir::instant::now_us();
            let margin = ((now - vs).abs() / 10).max(ve - vs);
            let a = sql.int(ve.saturating_add(margin));
            let b = sql.int(vs.saturating_sub(margin));
            format!("({s} < {a} AND {e} > {b})")
        }
    }
}

impl Sql {
    /// Runs the query built (it selects one text column, `id`) on either backend.
    pub(super) fn load_ids(self, conn: &mut AnyConnection) -> Result<Vec<String>, FhirError> {
        let Sql { text, binds, .. } = self;
        macro_rules! run {
            ($c:expr, $db:ty) => {{
                let mut q = diesel::sql_query(text.clone()).into_boxed::<$db>();
                for b in &binds {
                    q = match b {
                        Bind::Text(s) => q.bind::<Text, _>(s.clone()),
                        Bind::Int(i) => q.bind::<BigInt, _>(*i),
                    };
                }
                q.load::<IdRow>($c)
            }};
        }
        let rows = match conn {
            AnyConnection::Sqlite(c) => run!(c, diesel::sqlite::Sqlite),
            AnyConnection::Postgresql(c) => run!(c, diesel::pg::Pg),
        }
        .map_err(db_err)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}
