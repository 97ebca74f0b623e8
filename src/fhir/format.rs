//! format: FHIR wire formats. Which format a client asked for (`_format`, `Accept`,
//! `_pretty`), how a request body is read (JSON or XML, by `Content-Type`) and how a
//! resource is written back.

use serde_json::Value;

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
    for (k, v) in form_urlencoded(query) {
        match k.as_str() {
            "_format" => {
                neg.format = format_of_mime(&v).ok_or_else(|| {
                    FhirError::NotAcceptable(format!(
                        "_format '{v}' is not supported: use json or xml"
                    ))
                })?;
                explicit = true;
            }
            "_pretty" => neg.pretty = v == "true",
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

/// Decodes `application/x-www-form-urlencoded` pairs (a URL query string).
pub fn form_urlencoded(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
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

/// Parses a request body into JSON (XML goes through the strict R4 model). Structure is
/// not yet validated: see `validate`.
pub fn parse_body(format: Format, body: &[u8]) -> Result<Value, FhirError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FhirError::BadRequest("the request body is empty".into()));
    }
    match format {
        Format::Json => serde_json::from_slice::<Value>(body).map_err(|e| {
            FhirError::Invalid(vec![Issue {
                code: "structure",
                expression: None,
                diagnostics: format!("malformed JSON: {e}"),
            }])
        }),
        Format::Xml => carnet_model::parse_xml(body).map_err(|e| {
            FhirError::Invalid(vec![Issue {
                code: "structure",
                expression: None,
                diagnostics: format!("not a valid FHIR R4 XML resource: {e}"),
            }])
        }),
    }
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
