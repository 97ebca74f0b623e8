//! search_query: a FHIR search request as typed clauses, parsed from its query string
//! against the search parameter registry. No SQL here (see `repository::search`).

use super::format::form_urlencoded;
use super::index::{fold, text_range};
use super::search_params::{ParamType, REGISTRY};
use crate::error::FhirError;

/// Date comparison prefixes of the FHIR search specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One alternative (OR) of a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// system None: any system; Some("") : no system.
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// Folded prefix / exact text / folded substring.
    StringPrefix(String),
    StringExact(String),
    StringContains(String),
    /// [start, end) in µs.
    Date {
        prefix: Prefix,
        start: i64,
        end: i64,
    },
    Reference {
        target_type: Option<String>,
        target_id: String,
    },
    ReferenceUrl(String),
    Id(String),
}

/// One parameter of the request: its values are ORed; clauses are ANDed.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The index name the values are looked up under (`name`, `type:text`, `identifier:of-type`).
    pub param: String,
    pub kind: Kind,
    pub negate: bool,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Token,
    String,
    Date,
    Reference,
    Id,
    LastUpdated,
    Missing(bool),
    /// Any of these clauses (a compartment: any of its parameters points at the owner).
    AnyOf(Vec<Clause>),
    /// `param[:Type].inner=…`: a reference `param` to a resource (of one of these types)
    /// that matches the inner clause.
    Chain(Vec<(String, Clause)>),
    /// `_has:Type:refParam:inner=…`: some resource of `Type` refers to this one by
    /// `refParam` and matches the inner clause.
    Has {
        source_type: String,
        inner: Box<Clause>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Id,
    LastUpdated,
    /// A search parameter of the type (sorted on its smallest value, largest when descending).
    Param(String, ParamType),
}

/// `_include=Source:param[:Target]` or `_revinclude=…` (`:iterate` to follow included ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// Total in a searchset: `_total=none` leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Accurate,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub total: Total,
    /// `_summary=count`: the total only.
    pub count_only: bool,
    /// `_summary=true|text|data` or `_elements`: what to keep of each match.
    pub subset: Option<crate::fhir::subset::Subset>,
    pub resource_type: String,
    pub clauses: Vec<Clause>,
    pub count: i64,
    pub sort: Vec<(SortKey, bool)>,
    /// Parameters ignored (reported in an OperationOutcome entry).
    pub ignored: Vec<String>,
    /// The query as understood, for the `self` link.
    pub canonical_query: String,
}

/// Parameters that control the result, not the match.
const RESULT_PARAMS: &[&str] = &["_count", "_sort", "_format", "_pretty"];

fn include(name: &str, raw: &str) -> Result<Include, FhirError> {
    let iterate = name.ends_with(":iterate") || name.ends_with(":recurse");
    let mut parts = raw.split(':');
    let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
        return Err(FhirError::BadRequest(format!(
            "{name}={raw}: use Type:parameter[:TargetType]"
        )));
    };
    let target = parts.next().map(str::to_string);
    if source == "AuditEvent" || target.as_deref() == Some("AuditEvent") {
        return Err(FhirError::BadRequest(format!(
            "{name}={raw}: AuditEvents are not included (the access log is searched on its own)"
        )));
    }
    if REGISTRY.get(source, param).map(|p| p.kind) != Some(ParamType::Reference) {
        return Err(FhirError::NotImplemented(format!(
            "{name}={raw}: '{param}' is not a reference parameter of {source}"
        )));
    }
    Ok(Include {
        source_type: source.to_string(),
        param: param.to_string(),
        target_type: target,
        iterate,
    })
}

pub fn parse(
    resource_type: &str,
    query: &str,
    default_count: i64,
    max_count: i64,
    base_url: &str,
    strict: bool,
) -> Result<SearchRequest, FhirError> {
    let mut req = SearchRequest {
        resource_type: resource_type.to_string(),
        clauses: Vec::new(),
        count: default_count,
        sort: Vec::new(),
        ignored: Vec::new(),
        canonical_query: String::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        total: Total::Accurate,
        count_only: false,
        subset: None,
    };
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, raw) in form_urlencoded(query)? {
        if raw.contains('\0') || name.contains('\0') {
            return Err(FhirError::BadRequest(
                "search parameters may not contain NUL".into(),
            ));
        }
        match name.as_str() {
            "_count" => {
                let n: i64 = raw.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    FhirError::BadRequest(format!("_count '{raw}' is not a number of 0 or more"))
                })?;
                req.count = n.clamp(0, max_count);
                kept.push((name, req.count.to_string()));
                continue;
            }
            "_sort" => {
                for key in raw.split(',').filter(|k| !k.is_empty()) {
                    let (desc, k) = key.strip_prefix('-').map_or((false, key), |k| (true, k));
                    let param = REGISTRY
                        .get(resource_type, k)
                        .filter(|p| !matches!(p.kind, ParamType::Number | ParamType::Quantity));
                    let sk = match (k, param) {
                        ("_id", _) => SortKey::Id,
                        ("_lastUpdated", _) => SortKey::LastUpdated,
                        (_, Some(p)) => SortKey::Param(k.to_string(), p.kind),
                        (other, None) => {
                            let msg = format!("_sort on '{other}' is not supported: not a search parameter of {resource_type}");
                            if strict {
                                return Err(FhirError::BadRequest(msg));
                            }
                            req.ignored.push(msg);
                            continue;
                        }
                    };
                    req.sort.push((sk, desc));
                }
                kept.push((name, raw));
                continue;
            }
            n if RESULT_PARAMS.contains(&n) => continue,
            "_include"
            | "_include:iterate"
            | "_include:recurse"
            | "_revinclude"
            | "_revinclude:iterate"
            | "_revinclude:recurse" => {
                match include(&name, &raw) {
                    Ok(inc) if name.starts_with("_include") => req.includes.push(inc),
                    Ok(inc) => req.revincludes.push(inc),
                    Err(FhirError::NotImplemented(msg)) if !strict => {
                        req.ignored.push(msg);
                        continue;
                    }
                    Err(FhirError::NotImplemented(msg)) => return Err(FhirError::BadRequest(msg)),
                    Err(e) => return Err(e),
                }
                kept.push((name, raw));
                continue;
            }
            "_total" => {
                req.total = match raw.as_str() {
                    "none" => Total::None,
                    "estimate" | "accurate" => Total::Accurate,
                    other => {
                        return Err(FhirError::BadRequest(format!(
                            "_total '{other}': use none, estimate or accurate"
                        )))
                    }
                };
                kept.push((name, raw));
                continue;
            }
            "_summary" | "_elements" => {
                use crate::fhir::subset::Subset;
                let wanted = match (name.as_str(), raw.as_str()) {
                    ("_summary", "count") => {
                        req.count_only = true;
                        None
                    }
                    ("_summary", "false") => None,
                    ("_summary", "true") => Some(Subset::Summary),
                    ("_summary", "text") => Some(Subset::Text),
                    ("_summary", "data") => Some(Subset::Data),
                    ("_summary", other) => {
                        return Err(FhirError::BadRequest(format!(
                            "_summary={other}: use true, text, data, count or false"
                        )))
                    }
                    _ => Some(Subset::elements(&raw)),
                };
                if let Some(w) = wanted {
                    if req.subset.is_some() {
                        return Err(FhirError::BadRequest(
                            "_summary and _elements cannot be combined, nor repeated".into(),
                        ));
                    }
                    req.subset = Some(w);
                }
                kept.push((name, raw));
                continue;
            }
            _ => {}
        }
        match clause(resource_type, &name, &raw, base_url) {
            Ok(c) => {
                req.clauses.push(c);
                kept.push((name, raw));
            }
            Err(FhirError::NotImplemented(msg)) if !strict => req.ignored.push(msg),
            Err(FhirError::NotImplemented(msg)) => return Err(FhirError::BadRequest(msg)),
            Err(e) => return Err(e),
        }
    }
    let terms: usize = req.clauses.iter().map(Clause::terms).sum();
    if terms > MAX_TERMS {
        return Err(FhirError::BadRequest(format!(
            "this search has {terms} values in all; at most {MAX_TERMS} are accepted"
        )));
    }
    req.canonical_query = kept
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(req)
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn clause(rtype: &str, name: &str, raw: &str, base_url: &str) -> Result<Clause, FhirError> {
    if let Some(rest) = name.strip_prefix("_has:") {
        // _has:Type:refParam:param[:modifier]
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(ref_param), Some(inner_name)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(FhirError::BadRequest(format!(
                "'{name}': use _has:Type:reference-parameter:parameter"
            )));
        };
        if !super::resource_types::is_supported(source) {
            return Err(FhirError::NotImplemented(format!(
                "_has: type '{source}' is not supported"
            )));
        }
        if source == "AuditEvent" {
            return Err(FhirError::BadRequest(
                "_has:AuditEvent is not available: the access log is searched on its own".into(),
            ));
        }
        if REGISTRY.get(source, ref_param).map(|p| p.kind) != Some(ParamType::Reference) {
            return Err(FhirError::NotImplemented(format!(
                "_has: '{ref_param}' is not a reference parameter of {source}"
            )));
        }
        if inner_name.starts_with("_has:") {
            return Err(FhirError::NotImplemented(
                "_has is supported one level deep".into(),
            ));
        }
        let inner = clause(source, inner_name, raw, base_url)?;
        return Ok(Clause {
            param: ref_param.to_string(),
            kind: Kind::Has {
                source_type: source.to_string(),
                inner: Box::new(inner),
            },
            negate: false,
            values: Vec::new(),
        });
    }
    if let Some((left, inner_name)) = name.split_once('.') {
        // Chained: reference[:Type].parameter
        let (code, forced) = match left.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (left, None),
        };
        let param = REGISTRY.get(rtype, code).ok_or_else(|| {
            FhirError::NotImplemented(format!("unknown search parameter '{code}' for {rtype}"))
        })?;
        if param.kind != ParamType::Reference {
            return Err(FhirError::BadRequest(format!(
                "'{code}' is not a reference parameter: it cannot be chained"
            )));
        }
        if inner_name.contains('.') {
            return Err(FhirError::NotImplemented(
                "chained parameters are supported one level deep".into(),
            ));
        }
        let candidates: Vec<String> = match forced {
            Some(t) => vec![t.to_string()],
            None => param.targets.clone(),
        };
        let mut chains = Vec::new();
        for t in candidates
            .iter()
            .filter(|t| super::resource_types::is_supported(t))
        {
            match clause(t, inner_name, raw, base_url) {
                Ok(c) => chains.push((t.clone(), c)),
                Err(FhirError::NotImplemented(_)) if forced.is_none() => {}
                Err(e) => return Err(e),
            }
        }
        if chains.is_empty() {
            return Err(FhirError::NotImplemented(format!(
                "'{name}': no target type of '{code}' has the parameter '{inner_name}'"
            )));
        }
        return Ok(Clause {
            param: code.to_string(),
            kind: Kind::Chain(chains),
            negate: false,
            values: Vec::new(),
        });
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    if modifier == Some("missing") {
        // `:missing` is answered from the index tables of the parameter.
        let missing = match raw {
            "true" => true,
            "false" => false,
            _ => return Err(FhirError::BadRequest(format!("{name}: use true or false"))),
        };
        let kind = param_kind(rtype, code)?;
        let _ = kind;
        return Ok(Clause {
            param: code.to_string(),
            kind: Kind::Missing(missing),
            negate: false,
            values: Vec::new(),
        });
    }
    let alternatives: Vec<&str> = split_or(raw);
    if alternatives.len() > MAX_VALUES_PER_PARAMETER {
        return Err(FhirError::BadRequest(format!(
            "'{name}' has {} values; at most {MAX_VALUES_PER_PARAMETER} are accepted in one parameter",
            alternatives.len()
        )));
    }
    let unsupported_modifier =
        |m: &str| FhirError::NotImplemented(format!("modifier :{m} on '{code}' is not supported"));
    match code {
        "_id" => {
            if let Some(m) = modifier {
                return Err(unsupported_modifier(m));
            }
            return Ok(Clause {
                param: "_id".into(),
                kind: Kind::Id,
                negate: false,
                values: alternatives
                    .iter()
                    .map(|v| Value::Id(unescape(v)))
                    .collect(),
            });
        }
        "_lastUpdated" => {
            if let Some(m) = modifier {
                return Err(unsupported_modifier(m));
            }
            let values = alternatives
                .iter()
                .map(|v| date_value(code, v))
                .collect::<Result<_, _>>()?;
            return Ok(Clause {
                param: "_lastUpdated".into(),
                kind: Kind::LastUpdated,
                negate: false,
                values,
            });
        }
        _ => {}
    }
    let kind = param_kind(rtype, code)?;
    match kind {
        ParamType::Token | ParamType::Uri => {
            let (param, negate, text) = match modifier {
                None => (code.to_string(), false, false),
                Some("not") => (code.to_string(), true, false),
                Some("text") => (format!("{code}:text"), false, true),
                Some("of-type") => (format!("{code}:of-type"), false, false),
                Some(m) => return Err(unsupported_modifier(m)),
            };
            if text {
                let values = alternatives
                    .iter()
                    .map(|v| Value::StringPrefix(fold(&unescape(v))))
                    .collect();
                return Ok(Clause {
                    param,
                    kind: Kind::String,
                    negate: false,
                    values,
                });
            }
            let values = alternatives
                .iter()
                .map(|v| {
                    if modifier == Some("of-type") {
                        // type-system|type-code|value
                        let parts = split_unescaped(v, '|', 3);
                        let part = |i: usize| parts.get(i).map(|p| unescape(p)).unwrap_or_default();
                        let (ts, tc, val) = (part(0), part(1), part(2));
                        return Value::Token {
                            system: Some(format!("{ts}|{tc}")),
                            code: Some(val.to_string()),
                        };
                    }
                    token_value(v)
                })
                .collect();
            Ok(Clause {
                param,
                kind: Kind::Token,
                negate,
                values,
            })
        }
        ParamType::String => {
            let values = alternatives
                .iter()
                .map(|v| match modifier {
                    None => Ok(Value::StringPrefix(fold(&unescape(v)))),
                    Some("exact") => Ok(Value::StringExact(unescape(v))),
                    Some("contains") => Ok(Value::StringContains(fold(&unescape(v)))),
                    Some(m) => Err(unsupported_modifier(m)),
                })
                .collect::<Result<_, _>>()?;
            Ok(Clause {
                param: code.to_string(),
                kind: Kind::String,
                negate: false,
                values,
            })
        }
        ParamType::Date => {
            if let Some(m) = modifier {
                return Err(unsupported_modifier(m));
            }
            let values = alternatives
                .iter()
                .map(|v| date_value(code, v))
                .collect::<Result<_, _>>()?;
            Ok(Clause {
                param: code.to_string(),
                kind: Kind::Date,
                negate: false,
                values,
            })
        }
        ParamType::Reference => {
            if modifier == Some("identifier") {
                let values = alternatives.iter().map(|v| token_value(v)).collect();
                return Ok(Clause {
                    param: format!("{code}:identifier"),
                    kind: Kind::Token,
                    negate: false,
                    values,
                });
            }
            let forced_type = match modifier {
                None => None,
                Some(m) if m.starts_with(|c: char| c.is_ascii_uppercase()) => Some(m.to_string()),
                Some(m) => return Err(unsupported_modifier(m)),
            };
            let values = alternatives
                .iter()
                .map(|v| reference_value(&unescape(v), forced_type.as_deref(), base_url))
                .collect();
            Ok(Clause {
                param: code.to_string(),
                kind: Kind::Reference,
                negate: false,
                values,
            })
        }
        ParamType::Number | ParamType::Quantity => Err(FhirError::NotImplemented(format!(
            "parameter '{code}' of type number/quantity is not supported"
        ))),
    }
}

/// The clause that limits a search of `rtype` to what concerns `Patient/patient`: the
/// patient itself for `Patient`, its compartment for the other types.
pub fn patient_restriction(rtype: &str, patient: &str) -> Result<Clause, FhirError> {
    if rtype == "Patient" {
        return Ok(Clause {
            param: "_id".into(),
            kind: Kind::Id,
            negate: false,
            values: vec![Value::Id(patient.to_string())],
        });
    }
    compartment_clause("Patient", patient, rtype)
}

/// The clause that limits a search of `rtype` to the compartment of `owner_type/owner_id`,
/// from the official CompartmentDefinition (`fhir-profiles/r4/compartment-patient.json`).
pub fn compartment_clause(
    owner_type: &str,
    owner_id: &str,
    rtype: &str,
) -> Result<Clause, FhirError> {
    if owner_type != "Patient" {
        return Err(FhirError::NotFound(format!(
            "the {owner_type} compartment is not supported (Patient is)"
        )));
    }
    let params = crate::fhir::compartment::patient_params(rtype);
    let clauses: Vec<Clause> = params
        .iter()
        .map(|p| Clause {
            param: p.clone(),
            kind: Kind::Reference,
            negate: false,
            values: vec![Value::Reference {
                target_type: Some(owner_type.to_string()),
                target_id: owner_id.to_string(),
            }],
        })
        .collect();
    if clauses.is_empty() {
        return Err(FhirError::NotFound(format!(
            "{rtype} is not in the {owner_type} compartment"
        )));
    }
    Ok(Clause {
        param: String::new(),
        kind: Kind::AnyOf(clauses),
        negate: false,
        values: Vec::new(),
    })
}

/// `system|code`, `|code` (no system), `system|` (any code), `code` (any system).
/// (`\|` in either part is a literal bar.)
fn token_value(v: &str) -> Value {
    match split_unescaped(v, '|', 2).as_slice() {
        [s, ""] => Value::Token {
            system: Some(unescape(s)),
            code: None,
        },
        [s, c] => Value::Token {
            system: Some(unescape(s)),
            code: Some(unescape(c)),
        },
        _ => Value::Token {
            system: None,
            code: Some(unescape(v)),
        },
    }
}

fn param_kind(rtype: &str, code: &str) -> Result<ParamType, FhirError> {
    REGISTRY.get(rtype, code).map(|p| p.kind).ok_or_else(|| {
        FhirError::NotImplemented(format!("unknown search parameter '{code}' for {rtype}"))
    })
}

/// At most this many comma-separated values in one parameter (each becomes an SQL term).
pub const MAX_VALUES_PER_PARAMETER: usize = 100;
/// At most this many values in a whole search (the databases cap expression sizes).
pub const MAX_TERMS: usize = 400;

impl Clause {
    /// How many values this clause tests (chains and `_has` count their inner clauses).
    fn terms(&self) -> usize {
        match &self.kind {
            Kind::Chain(chains) => chains.iter().map(|(_, c)| c.terms()).sum(),
            Kind::Has { inner, .. } => inner.terms(),
            Kind::AnyOf(cs) => cs.iter().map(Clause::terms).sum(),
            _ => self.values.len().max(1),
        }
    }
}

/// Splits on commas not escaped with a backslash; the pieces keep their escapes.
fn split_or(raw: &str) -> Vec<&str> {
    split_unescaped(raw, ',', usize::MAX)
}

/// Splits `raw` on `sep` where it is not escaped with a backslash, into `max` pieces at
/// most; the pieces keep their escapes (`\\` is an escaped backslash, so `a\\,b` splits).
fn split_unescaped(raw: &str, sep: char, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in raw.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep && out.len() + 1 < max {
            out.push(&raw[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&raw[start..]);
    out
}

/// Resolves the search escapes `\,` `\|` `\$` `\\` (R4 search, "Escaping Search Parameters").
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn date_value(code: &str, v: &str) -> Result<Value, FhirError> {
    let (prefix, rest) = match v.get(0..2) {
        Some(p) if p.chars().all(|c| c.is_ascii_lowercase()) => {
            let prefix = match p {
                "eq" => Prefix::Eq,
                "ne" => Prefix::Ne,
                "gt" => Prefix::Gt,
                "lt" => Prefix::Lt,
                "ge" => Prefix::Ge,
                "le" => Prefix::Le,
                "sa" => Prefix::Sa,
                "eb" => Prefix::Eb,
                "ap" => Prefix::Ap,
                _ => {
                    return Err(FhirError::BadRequest(format!(
                        "{code}: '{p}' is not a date prefix"
                    )))
                }
            };
            (prefix, &v[2..])
        }
        _ => (Prefix::Eq, v),
    };
    static SHAPE: once_cell::sync::Lazy<regex::Regex> = once_cell::sync::Lazy::new(|| {
        regex::Regex::new(
            r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$",
        )
        .expect("date shape")
    });
    // A time without a zone is in the server's zone (UTC); a time without seconds has them 0.
    let mut text = rest.to_string();
    if SHAPE.is_match(rest) && rest.len() > 10 {
        let zoned = rest.ends_with('Z') || rest[10..].contains(['+', '-']);
        let (time, zone) = if zoned {
            let at = rest[10..]
                .find(['Z', '+', '-'])
                .map_or(rest.len(), |i| i + 10);
            (&rest[..at], &rest[at..])
        } else {
            (rest, "Z")
        };
        let seconds = if time.len() == 16 { ":00" } else { "" };
        text = format!("{time}{seconds}{zone}");
    }
    let parsed = if SHAPE.is_match(rest) {
        text_range(&text)
    } else {
        None
    };
    let (start, end) = parsed.ok_or_else(|| {
        FhirError::BadRequest(format!(
            "{code}: '{rest}' is not a date such as 2024, 2024-05 or 2024-05-31T10:00:00Z"
        ))
    })?;
    Ok(Value::Date { prefix, start, end })
}

fn reference_value(v: &str, forced_type: Option<&str>, base_url: &str) -> Value {
    let local = v
        .strip_prefix(base_url)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(v);
    if local.contains("://") {
        return Value::ReferenceUrl(v.to_string());
    }
    let local = local.split("/_history/").next().unwrap_or(local);
    match local.split_once('/') {
        Some((t, id)) => Value::Reference {
            target_type: Some(t.to_string()),
            target_id: id.to_string(),
        },
        None => Value::Reference {
            target_type: forced_type.map(str::to_string),
            target_id: local.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tokens_strings_dates_and_references() {
        let r = parse("Patient", "family=L%C3%A9v&gender=female,male&identifier=urn:oid:1.2|123&birthdate=ge1980&_count=5&general-practitioner=Practitioner/d1",
            50, 100, "http://x/fhir", false).unwrap();
        assert_eq!(r.count, 5);
        assert_eq!(r.clauses[0].values, vec![Value::StringPrefix("lev".into())]);
        assert_eq!(r.clauses[1].values.len(), 2);
        assert_eq!(
            r.clauses[2].values,
            vec![Value::Token {
                system: Some("urn:oid:1.2".into()),
                code: Some("123".into())
            }]
        );
        assert!(matches!(
            r.clauses[3].values[0],
            Value::Date {
                prefix: Prefix::Ge,
                ..
            }
        ));
        assert_eq!(
            r.clauses[4].values,
            vec![Value::Reference {
                target_type: Some("Practitioner".into()),
                target_id: "d1".into()
            }]
        );
    }

    #[test]
    fn escapes_are_resolved_after_splitting() {
        let r = parse(
            "Patient",
            "family=Dupont%5C,%20Durand,Martin&identifier=sys|AB%5C|12&given=a%5C%5C,b",
            50,
            100,
            "http://x/fhir",
            true,
        )
        .unwrap();
        assert_eq!(
            r.clauses[0].values,
            vec![
                Value::StringPrefix("dupont, durand".into()),
                Value::StringPrefix("martin".into())
            ]
        );
        assert_eq!(
            r.clauses[1].values,
            vec![Value::Token {
                system: Some("sys".into()),
                code: Some("AB|12".into())
            }]
        );
        // `\\` is an escaped backslash: the comma after it separates values.
        assert_eq!(
            r.clauses[2].values,
            vec![
                Value::StringPrefix("a\\".into()),
                Value::StringPrefix("b".into())
            ]
        );
    }

    #[test]
    fn dates_without_zone_or_seconds_are_read_as_utc_and_junk_is_refused() {
        let range = |q: &str| match &parse("Patient", q, 50, 100, "http://x/fhir", true)
            .unwrap()
            .clauses[0]
            .values[0]
        {
            Value::Date { start, end, .. } => (*start, *end),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            range("birthdate=ge2024-05-31T10:00:00"),
            range("birthdate=ge2024-05-31T10:00:00Z")
        );
        assert_eq!(
            range("birthdate=2024-05-31T12:00:00%2B02:00"),
            range("birthdate=2024-05-31T10:00Z")
        );
        for bad in [
            "birthdate=2024x05",
            "birthdate=2024%2B05",
            "birthdate=24-05-31",
        ] {
            assert!(
                matches!(
                    parse("Patient", bad, 50, 100, "http://x/fhir", true),
                    Err(FhirError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn too_many_values_are_refused() {
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let q = format!("identifier={}", many.join(","));
        assert!(matches!(
            parse("Patient", &q, 50, 100, "http://x/fhir", false),
            Err(FhirError::BadRequest(_))
        ));
        let q: Vec<String> = (0..5)
            .map(|_| format!("_id={}", many[..100].join(",")))
            .collect();
        assert!(matches!(
            parse("Patient", &q.join("&"), 50, 100, "http://x/fhir", false),
            Err(FhirError::BadRequest(_))
        ));
    }

    #[test]
    fn unknown_parameters_are_ignored_or_refused_when_strict() {
        let r = parse("Patient", "colour=blue", 50, 100, "", false).unwrap();
        assert_eq!(r.ignored.len(), 1);
        assert!(parse("Patient", "colour=blue", 50, 100, "", true).is_err());
        assert!(parse("Patient", "birthdate=yesterday", 50, 100, "", false).is_err());
    }
}
