//! index: the search index rows of one resource version, computed from the search
//! parameters of its type (see `search_params`). Storage writes them in the same
//! transaction as the version; the search engine queries them.
//!
//! - token: (system, code) of Coding, CodeableConcept, Identifier, ContactPoint and code-like
//!   primitives; display texts go to string rows named `<param>:text`; identifier types to
//!   token rows named `<param>:of-type` (system = `typeSystem|typeCode`, code = value).
//! - string: every part of a HumanName/Address or the string itself, folded (lower case,
//!   no accents: `Hélène` → `helene`) and exact.
//! - date: the range `[start, end)` a date, dateTime, instant or Period covers, in µs.
//! - reference: target type and id (relative or absolute), and the reference text.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::fhirpath::{reference_type, Found};
use super::search_params::{ParamType, REGISTRY};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexRows {
    /// (param, system, code)
    pub tokens: Vec<(String, String, String)>,
    /// (param, folded, exact)
    pub strings: Vec<(String, String, String)>,
    /// (param, start µs, end µs exclusive)
    pub dates: Vec<(String, i64, i64)>,
    /// (param, target type, target id, reference text)
    pub references: Vec<(String, String, String, String)>,
}

/// Longest value indexed (database key limits); longer values are stored, not indexed.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// Lower case without diacritics: how string search compares.
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

const CONTACT_SYSTEMS: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];

/// The index rows of `resource` (a resource of type `rtype`).
/// Absolute references under `base_url` (this server) are indexed as local ones; other
/// absolute references keep their URL only, and never match a local `Type/id`.
/// The index parameter (no search parameter: its name cannot be asked for) that holds the
/// Binaries a DocumentReference's content points to.
pub const CONTENT_BINARY: &str = "_content-binary";

pub fn index_rows(rtype: &str, resource: &Value, base_url: &str) -> IndexRows {
    index_rows_of(rtype, resource, base_url, None)
}

/// The index rows of the parameters `only` (all of them with None): the access point asks
/// for a resource's patient references on every decision, not for its whole index.
pub fn index_rows_of(
    rtype: &str,
    resource: &Value,
    base_url: &str,
    only: Option<&[String]>,
) -> IndexRows {
    let mut rows = IndexRows::default();
    let Some(params) = REGISTRY.by_type.get(rtype) else {
        return rows;
    };
    for (code, param) in params {
        // _id and _lastUpdated are columns of the resource itself.
        if code == "_id" || code == "_lastUpdated" {
            continue;
        }
        if only.is_some_and(|o| !o.contains(code)) {
            continue;
        }
        for expr in &param.exprs {
            for found in expr.evaluate(resource) {
                add(&mut rows, code, param.kind, &found, base_url);
            }
        }
    }
    if rtype == "DocumentReference" && only.is_none() {
        // Carnet's own row (no search parameter names it): the Binaries a document's
        // content points to, so that a Binary filed under the Patient is judged with the
        // labels of the documents it is the content of.
        let urls = resource
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/attachment/url").and_then(Value::as_str));
        for url in urls {
            let (ty, id) = split_reference(url, None, base_url);
            if ty == "Binary" && !id.is_empty() {
                rows.references
                    .push((CONTENT_BINARY.to_string(), ty, id, url.to_string()));
            }
        }
    }
    rows.tokens
        .retain(|t| t.2.len() <= MAX_INDEXED_BYTES && t.1.len() <= MAX_INDEXED_BYTES);
    rows.strings.retain(|s| s.2.len() <= MAX_INDEXED_BYTES);
    rows.references.retain(|r| r.3.len() <= MAX_INDEXED_BYTES);
    dedup(&mut rows.tokens);
    dedup(&mut rows.strings);
    dedup(&mut rows.dates);
    dedup(&mut rows.references);
    rows
}

fn dedup<T: Ord>(v: &mut Vec<T>) {
    v.sort();
    v.dedup();
}

fn add(rows: &mut IndexRows, code: &str, kind: ParamType, found: &Found<'_>, base_url: &str) {
    let v = found.value;
    match kind {
        ParamType::Token => add_token(rows, code, v),
        ParamType::String => add_strings(rows, code, v),
        ParamType::Date => {
            if let Some((start, end)) = date_range(v) {
                rows.dates.push((code.to_string(), start, end));
            }
        }
        ParamType::Reference => {
            let text = match v {
                Value::Object(_) => v
                    .get("reference")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
            if let Some(text) = text {
                let (ty, id) = split_reference(&text, reference_type(v), base_url);
                rows.references.push((code.to_string(), ty, id, text));
            }
            // Reference.identifier, for the :identifier modifier.
            if let Some(ident) = v.get("identifier") {
                if let Some(value) = ident.get("value").and_then(Value::as_str) {
                    let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
                    rows.tokens.push((
                        format!("{code}:identifier"),
                        system.to_string(),
                        value.to_string(),
                    ));
                }
            }
        }
        ParamType::Uri => {
            if let Some(s) = v.as_str() {
                rows.tokens
                    .push((code.to_string(), String::new(), s.to_string()));
            }
        }
        ParamType::Number | ParamType::Quantity => {}
    }
}

fn add_token(rows: &mut IndexRows, code: &str, v: &Value) {
    let mut push = |system: &str, c: &str| {
        rows.tokens
            .push((code.to_string(), system.to_string(), c.to_string()));
    };
    match v {
        Value::String(s) => push("", s),
        Value::Bool(b) => push("", if *b { "true" } else { "false" }),
        Value::Object(o) => {
            let s = |k: &str| o.get(k).and_then(Value::as_str);
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                // CodeableConcept
                for c in codings {
                    add_token(rows, code, c);
                }
                if let Some(text) = s("text") {
                    rows.strings
                        .push((format!("{code}:text"), fold(text), text.to_string()));
                }
            } else if let Some(value) = s("value") {
                match s("system") {
                    // ContactPoint: its system is a kind (phone, email), not a namespace.
                    Some(sys) if CONTACT_SYSTEMS.contains(&sys) => push("", value),
                    sys => {
                        push(sys.unwrap_or(""), value);
                        // Identifier.type, for :of-type.
                        if let Some(types) = o
                            .get("type")
                            .and_then(|t| t.get("coding"))
                            .and_then(Value::as_array)
                        {
                            for t in types {
                                if let (Some(ts), Some(tc)) = (
                                    t.get("system").and_then(Value::as_str),
                                    t.get("code").and_then(Value::as_str),
                                ) {
                                    rows.tokens.push((
                                        format!("{code}:of-type"),
                                        format!("{ts}|{tc}"),
                                        value.to_string(),
                                    ));
                                }
                            }
                        }
                    }
                }
            } else if let Some(c) = s("code") {
                // Coding
                push(s("system").unwrap_or(""), c);
                if let Some(display) = s("display") {
                    rows.strings
                        .push((format!("{code}:text"), fold(display), display.to_string()));
                }
            } else if let Some(text) = s("text") {
                rows.strings
                    .push((format!("{code}:text"), fold(text), text.to_string()));
            }
        }
        _ => {}
    }
}

fn add_strings(rows: &mut IndexRows, code: &str, v: &Value) {
    match v {
        Value::String(s) => rows.strings.push((code.to_string(), fold(s), s.clone())),
        Value::Object(o) => {
            // HumanName and Address: every textual part.
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match o.get(key) {
                    Some(Value::String(s)) => {
                        rows.strings.push((code.to_string(), fold(s), s.clone()))
                    }
                    Some(Value::Array(items)) => {
                        for s in items.iter().filter_map(Value::as_str) {
                            rows.strings
                                .push((code.to_string(), fold(s), s.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// `Patient/1`, `{base_url}/Patient/1/_history/2` → (Patient, 1); a reference to another
/// server, a `urn:` or a contained `#id` → the type from `Reference.type` (or the URL) and
/// an empty id, so that it is found by its URL only.
fn split_reference(text: &str, declared: Option<String>, base_url: &str) -> (String, String) {
    let local = match text.strip_prefix(base_url) {
        Some(rest) if !base_url.is_empty() && rest.starts_with('/') => &rest[1..],
        _ => text,
    };
    let path = local.split("/_history/").next().unwrap_or(local);
    let mut parts = path.rsplit('/');
    let (last, before) = (parts.next(), parts.next());
    let is_type = |t: &str| t.starts_with(|c: char| c.is_ascii_uppercase());
    match (last, before) {
        (Some(id), Some(ty)) if is_type(ty) && !id.is_empty() && !path.contains(':') => {
            (ty.to_string(), id.to_string())
        }
        (Some(_), Some(ty)) if is_type(ty) && declared.is_none() => (ty.to_string(), String::new()),
        _ => (declared.unwrap_or_default(), String::new()),
    }
}

/// The range `[start, end)` in µs that a date, dateTime, instant or Period covers.
pub fn date_range(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::String(s) => text_range(s),
        Value::Object(o) => {
            let start = o
                .get("start")
                .and_then(Value::as_str)
                .and_then(text_range)
                .map(|r| r.0);
            let end = o
                .get("end")
                .and_then(Value::as_str)
                .and_then(text_range)
                .map(|r| r.1);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)))
        }
        _ => None,
    }
}

/// The range a FHIR date/dateTime/instant text covers, by its precision.
pub fn text_range(s: &str) -> Option<(i64, i64)> {
    use time::{Date, Month, PrimitiveDateTime, Time};
    let year: i32 = s.get(0..4)?.parse().ok()?;
    let month = |m: u8| Month::try_from(m).ok();
    let at = |y: i32, m: u8, d: u8| -> Option<i64> {
        let date = Date::from_calendar_date(y, month(m)?, d).ok()?;
        Some(
            (PrimitiveDateTime::new(date, Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp_nanos()
                / 1000) as i64,
        )
    };
    match s.len() {
        4 => Some((at(year, 1, 1)?, at(year + 1, 1, 1)?)),
        7 => {
            let m: u8 = s.get(5..7)?.parse().ok()?;
            let (ny, nm) = if m == 12 {
                (year + 1, 1)
            } else {
                (year, m + 1)
            };
            Some((at(year, m, 1)?, at(ny, nm, 1)?))
        }
        10 => {
            let m: u8 = s.get(5..7)?.parse().ok()?;
            let d: u8 = s.get(8..10)?.parse().ok()?;
            let start = at(year, m, d)?;
            Some((start, start + 86_400_000_000))
        }
        _ => {
            let start = super::instant::parse_us(s)?;
            // Precision: to the second, or to the given fraction.
            let frac_digits = s
                .split_once('.')
                .map(|(_, f)| f.chars().take_while(char::is_ascii_digit).count())
                .unwrap_or(0);
            let width = match frac_digits {
                0 => 1_000_000,
                1 => 100_000,
                2 => 10_000,
                3 => 1_000,
                4 => 100,
                5 => 10,
                _ => 1,
            };
            Some((start, start + width))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "http://carnet.test/fhir";

    #[test]
    fn only_references_to_this_server_are_local() {
        let doc = |subject: &str| {
            json!({"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"url": "Binary/1"}}], "subject": {"reference": subject}})
        };
        let subject = |r: &str| {
            index_rows("DocumentReference", &doc(r), BASE)
                .references
                .into_iter()
                .find(|x| x.0 == "subject")
                .map(|x| (x.1, x.2))
                .unwrap()
        };
        assert_eq!(subject("Patient/p1"), ("Patient".into(), "p1".into()));
        assert_eq!(
            subject("http://carnet.test/fhir/Patient/p1/_history/2"),
            ("Patient".into(), "p1".into())
        );
        assert_eq!(
            subject("https://other.example/fhir/Patient/p1"),
            ("Patient".into(), String::new())
        );
        assert_eq!(
            subject("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0").1,
            ""
        );
    }

    #[test]
    fn folding_makes_french_names_match() {
        assert_eq!(fold("Hélène"), "helene");
        assert_eq!(fold("LÉVÊQUE"), "leveque");
        assert_eq!(fold("Ça"), "ca");
    }

    #[test]
    fn date_ranges_follow_precision() {
        let (s, e) = text_range("2024").unwrap();
        assert_eq!(e - s, 366 * 86_400_000_000, "2024 is a leap year");
        let (s, e) = text_range("2024-02").unwrap();
        assert_eq!(e - s, 29 * 86_400_000_000);
        let (s, e) = text_range("2024-12-31").unwrap();
        assert_eq!(e - s, 86_400_000_000);
        assert_eq!(
            text_range("2024-12-31T23:00:00+01:00").unwrap().0,
            text_range("2024-12-31T22:00:00Z").unwrap().0
        );
        let (s, e) = date_range(&json!({"start": "2024-01-01"})).unwrap();
        assert_eq!((s, e), (text_range("2024-01-01").unwrap().0, i64::MAX));
    }

    #[test]
    fn a_patient_is_indexed_by_its_parameters() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1850275123456",
                "type": {"coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]}}],
            "name": [{"family": "Lévêque", "given": ["Hélène"]}], "gender": "female", "birthDate": "1985-02",
            "telecom": [{"system": "email", "value": "h@x.fr"}],
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}});
        let rows = index_rows("Patient", &p, BASE);
        let has_token = |param: &str, system: &str, code: &str| {
            rows.tokens
                .contains(&(param.into(), system.into(), code.into()))
        };
        assert!(has_token(
            "identifier",
            "urn:oid:1.2.250.1.213.1.4.8",
            "1850275123456"
        ));
        assert!(has_token(
            "identifier:of-type",
            "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203|INS-NIR",
            "1850275123456"
        ));
        assert!(has_token("gender", "", "female"));
        assert!(has_token("email", "", "h@x.fr"));
        assert!(has_token(
            "_security",
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "N"
        ));
        assert!(rows
            .strings
            .contains(&("family".into(), "leveque".into(), "Lévêque".into())));
        assert!(rows
            .strings
            .contains(&("name".into(), "helene".into(), "Hélène".into())));
        assert!(rows
            .dates
            .iter()
            .any(|d| d.0 == "birthdate" && d.1 == text_range("1985-02").unwrap().0));
        assert!(rows.references.contains(&(
            "general-practitioner".into(),
            "Practitioner".into(),
            "dr1".into(),
            "Practitioner/dr1".into()
        )));
    }

    #[test]
    fn a_document_reference_subject_counts_as_patient_only_when_it_is_one() {
        let doc = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/p1"},
            "date": "2024-03-01T10:00:00Z", "content": [{"attachment": {"contentType": "application/pdf"}}]});
        let rows = index_rows("DocumentReference", &doc, BASE);
        assert!(rows
            .references
            .iter()
            .any(|r| r.0 == "patient" && r.2 == "p1"));
        assert!(rows
            .references
            .iter()
            .any(|r| r.0 == "subject" && r.2 == "p1"));
        assert!(rows
            .tokens
            .contains(&("contenttype".into(), "".into(), "application/pdf".into())));
        let group = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Group/g"},
            "content": [{"attachment": {}}]});
        assert!(!index_rows("DocumentReference", &group, BASE)
            .references
            .iter()
            .any(|r| r.0 == "patient"));
    }
}
