//! format: FHIR wire formats. Which format a client asked for (`_format`, `Accept`,
//! `_pretty`), how a request body is read (JSON or XML, by `Content-Type`) and how a
//! resource is written back.

use serde_json::Value;

use super::limits::{self, Limits};
use crate::error::{FhirError, Issue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/fhir+json; charset=utf-8",
            Format::Xml => "application/fhir+xml; charset=utf-8",
        }
    }
}

/// The response format a request negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub pretty: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            format: Format::Json,
            pretty: false,
        }
    }
}

fn format_of_mime(mime: &str) -> Option<Format> {
    let m = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match m.as_str() {
        "json" | "application/fhir+json" | "application/json" | "application/json+fhir" => {
            Some(Format::Json)
        }
        "xml"
        | "application/fhir+xml"
        | "application/xml"
        | "text/xml"
        | "application/xml+fhir" => Some(Format::Xml),
        _ => None,
    }
}

/// Reads `_format`/`_pretty` from the query and `Accept` from the headers.
/// An explicit `_format` the server cannot produce is 406; an `Accept` it cannot
/// satisfy falls back to JSON (browsers and curl send `*/*` or `text/html`).
pub fn negotiate(query: &str, accept: Option<&str>) -> Result<Negotiated, FhirError> {
    let mut neg = Negotiated::default();
    let mut explicit = false;
    for (k, v) in form_urlencoded(query)? {
        match k.as_str() {
            "_format" => {
                neg.format = format_of_mime(&v).ok_or_else(|| {
                    FhirError::NotAcceptable(format!(
                        "_format '{v}' is not supported: use json or xml"
                    ))
                })?;
                explicit = true;
            }
            "_pretty" => {
                neg.pretty = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(FhirError::BadRequest(format!(
                            "_pretty '{other}': use true or false"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    if !explicit {
        if let Some(accept) = accept {
            for part in accept.split(',') {
                if let Some(f) = format_of_mime(part) {
                    neg.format = f;
                    break;
                }
            }
        }
    }
    Ok(neg)
}

/// Decodes `application/x-www-form-urlencoded` pairs (a URL query string). A name or
/// value that is not UTF-8 once decoded, or that holds a control character (NUL
/// included), is refused (400) before anything looks it up.
pub fn form_urlencoded(query: &str) -> Result<Vec<(String, String)>, FhirError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

fn decode_component(s: &str) -> Result<String, FhirError> {
    let plus = s.replace('+', " ");
    let text = percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map_err(|_| {
            FhirError::BadRequest("a query parameter is not UTF-8 once percent-decoded".into())
        })?
        .into_owned();
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FhirError::BadRequest(
            "a query parameter holds a control character (NUL, line break…)".into(),
        ));
    }
    Ok(text)
}

/// The body format named by a `Content-Type`, or 415.
pub fn body_format(content_type: Option<&str>) -> Result<Format, FhirError> {
    match content_type {
        None => Err(FhirError::UnsupportedMediaType(
            "a request body needs a Content-Type: application/fhir+json or application/fhir+xml"
                .into(),
        )),
        Some(ct) => format_of_mime(ct).ok_or_else(|| {
            FhirError::UnsupportedMediaType(format!(
                "Content-Type '{ct}' is not supported: use application/fhir+json or application/fhir+xml"
            ))
        }),
    }
}

/// Parses a request body into JSON (XML goes through the strict R4 model) within
/// `limits`, measured before the parse. Structure is not yet validated: see `validate`.
/// CPU-heavy for large bodies: callers run it off the async workers.
pub fn parse_body(format: Format, body: &[u8], limits: &Limits) -> Result<Value, FhirError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FhirError::BadRequest("the request body is empty".into()));
    }
    let value = match format {
        Format::Json => {
            limits::check_json_bytes(body, limits)?;
            serde_json::from_slice::<Value>(body).map_err(|e| {
                FhirError::Invalid(vec![Issue {
                    code: "structure",
                    expression: None,
                    diagnostics: format!("malformed JSON: {e}"),
                }])
            })?
        }
        Format::Xml => carnet_model::parse_xml(body, &limits.xml()).map_err(|e| match e {
            carnet_model::XmlError::Limit(which, msg) => FhirError::TooCostly(format!(
                "{msg} (limit {})",
                match which {
                    carnet_model::XmlLimit::Depth => "max-depth",
                    carnet_model::XmlLimit::Nodes => "max-elements",
                    carnet_model::XmlLimit::Attributes => "max-xml-attributes",
                }
            )),
            carnet_model::XmlError::Invalid(e) => FhirError::Invalid(vec![Issue {
                code: "structure",
                expression: None,
                diagnostics: format!("not a valid FHIR R4 XML resource: {e}"),
            }]),
        })?,
    };
    limits::check_value(&value, limits)?;
    Ok(value)
}

/// Writes stored JSON text in the negotiated format. Stored JSON is served as is.
pub fn render_stored(neg: Negotiated, json: &str) -> Result<Vec<u8>, FhirError> {
    match (neg.format, neg.pretty) {
        (Format::Json, false) => Ok(json.as_bytes().to_vec()),
        (Format::Json, true) => {
            let v: Value = serde_json::from_str(json)
                .map_err(|e| FhirError::Internal(format!("stored JSON unreadable: {e}")))?;
            Ok(serde_json::to_vec_pretty(&v).unwrap_or_default())
        }
        (Format::Xml, _) => carnet_model::json_to_xml(json.as_bytes())
            .map(String::into_bytes)
            .map_err(|e| FhirError::Internal(format!("XML rendering failed: {e}"))),
    }
}

/// Writes a JSON value (a Bundle, an OperationOutcome…) in the negotiated format.
pub fn render_value(neg: Negotiated, value: &Value) -> Result<Vec<u8>, FhirError> {
    match neg.format {
        Format::Json if neg.pretty => Ok(serde_json::to_vec_pretty(value).unwrap_or_default()),
        Format::Json => Ok(serde_json::to_vec(value).unwrap_or_default()),
        Format::Xml => {
            let text = serde_json::to_vec(value).unwrap_or_default();
            carnet_model::json_to_xml(&text)
                .map(String::into_bytes)
                .map_err(|e| FhirError::Internal(format!("XML rendering failed: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parameter_wins_over_accept() {
        let n = negotiate("_format=xml&_pretty=true", Some("application/fhir+json")).unwrap();
        assert_eq!(n.format, Format::Xml);
        assert!(n.pretty);
        assert_eq!(
            negotiate("", Some("application/fhir+xml")).unwrap().format,
            Format::Xml
        );
        assert_eq!(negotiate("", Some("*/*")).unwrap().format, Format::Json);
        assert!(negotiate("_format=text/turtle", None).is_err());
        assert_eq!(
            negotiate("_format=application%2Ffhir%2Bxml", None)
                .unwrap()
                .format,
            Format::Xml
        );
    }
}
