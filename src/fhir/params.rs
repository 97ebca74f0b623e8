//! params: the parameters of the interactions that are not searches — history (`_count`,
//! `_since`, `_cursor`), `$everything` (`_count`, `_since`, `_type`) and the later pages of a
//! search (`_getpages`…) — read strictly: an unknown or malformed parameter is a 400 that
//! says which, never ignored.

use super::format::form_urlencoded;
use super::instant;
use crate::error::FhirError;

/// What a history request asks.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub count: i64,
    pub since_us: Option<i64>,
    pub cursor: Option<i64>,
}

/// History's parameters from a query string (`_count` clamped to `1..=max_count`).
pub fn history(query: &str, default_count: i64, max_count: i64) -> Result<History, FhirError> {
    let mut h = History {
        count: default_count,
        since_us: None,
        cursor: None,
    };
    for (k, v) in form_urlencoded(query)? {
        match k.as_str() {
            "_count" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| FhirError::BadRequest(format!("_count '{v}' is not a number")))?;
                h.count = n.clamp(1, max_count);
            }
            "_since" => h.since_us = Some(since(&v)?),
            "_cursor" => {
                h.cursor =
                    Some(v.parse().map_err(|_| {
                        FhirError::BadRequest(format!("_cursor '{v}' is not valid"))
                    })?)
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(FhirError::BadRequest(format!(
                    "history does not support the parameter '{other}' (supported: _count, _since)"
                )))
            }
        }
    }
    Ok(h)
}

fn since(v: &str) -> Result<i64, FhirError> {
    instant::parse_us(v).ok_or_else(|| {
        FhirError::BadRequest(format!(
            "_since '{v}' is not an instant such as 2026-01-31T12:00:00Z"
        ))
    })
}

/// What a `$everything` request asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Everything {
    pub count: i64,
    /// As given (an instant), for the `_lastUpdated` of each type's search.
    pub since: Option<String>,
    /// The types asked for, each once (all of the compartment's without `_type`).
    pub types: Option<Vec<String>>,
}

/// `$everything`'s parameters (`_count` at most `max_count`).
pub fn everything(
    query: &str,
    default_count: i64,
    max_count: i64,
) -> Result<Everything, FhirError> {
    let mut e = Everything {
        count: default_count,
        since: None,
        types: None,
    };
    for (k, v) in form_urlencoded(query)? {
        match k.as_str() {
            "_count" => {
                e.count = v
                    .parse::<i64>()
                    .ok()
                    .filter(|c| *c >= 0)
                    .ok_or_else(|| {
                        FhirError::BadRequest(format!("_count '{v}' is not a number of entries"))
                    })?
                    .min(max_count)
            }
            "_since" => {
                since(&v)?;
                e.since = Some(v)
            }
            "_type" => e.types = Some(distinct_types(&v)),
            "_format" | "_pretty" => {}
            other => {
                return Err(FhirError::BadRequest(format!(
                    "$everything does not support the parameter '{other}' (supported: _count, _since, _type)"
                )))
            }
        }
    }
    Ok(e)
}

/// The types of a `_type` value, each once, in the order first named (a repeated type is
/// searched once, not once per repetition).
pub fn distinct_types(value: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    value
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// What a request for a later page of a search asks (`_getpages` absent: it is a search of
/// the whole server instead).
#[derive(Debug, Clone, PartialEq)]
pub struct LaterPage {
    pub snapshot: Option<String>,
    pub offset: i64,
    pub count: Option<i64>,
}

pub fn later_page(query: &str) -> Result<LaterPage, FhirError> {
    let mut p = LaterPage {
        snapshot: None,
        offset: 0,
        count: None,
    };
    for (k, v) in form_urlencoded(query)? {
        match k.as_str() {
            "_getpages" => p.snapshot = Some(v),
            "_getpagesoffset" => {
                p.offset = v
                    .parse()
                    .map_err(|_| FhirError::BadRequest("_getpagesoffset is not a number".into()))?
            }
            "_count" => {
                p.count = Some(
                    v.parse::<i64>()
                        .map_err(|_| FhirError::BadRequest("_count is not a number".into()))?,
                )
            }
            _ => {}
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_parameters_are_read_strictly() {
        let h = history("_count=500&_since=2026-01-31T12:00:00Z&_cursor=7", 20, 100).unwrap();
        assert_eq!(h.count, 100);
        assert_eq!(h.cursor, Some(7));
        assert!(h.since_us.is_some());
        assert!(history("_elements=id", 20, 100).is_err());
        assert!(history("_since=yesterday", 20, 100).is_err());
    }

    #[test]
    fn everything_types_are_named_once() {
        let e = everything("_type=Patient,Observation,Patient&_count=5", 20, 100).unwrap();
        assert_eq!(e.types.unwrap(), ["Patient", "Observation"]);
        assert_eq!(e.count, 5);
        assert!(everything("_count=-1", 20, 100).is_err());
    }
}
