//! carnet-model: the one place Carnet calls into fhirbolt's typed FHIR R4 model.
//!
//! fhirbolt's generic (de)serialisers are expensive to monomorphise; every call into
//! them lives here, behind a handful of non-generic functions, so that the expansion
//! is compiled once (in this crate) and the server crate never instantiates them.
//!
//! What this crate does: strict structural parsing of R4 JSON and XML (unknown elements,
//! wrong JSON types and missing required fields are rejected) and conversion between the
//! two formats. What it never does: storage, access decisions, HTTP.

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode, SerializationConfig};

/// A body that fhirbolt's strict R4 model refused, with fhirbolt's own explanation.
#[derive(Debug, Clone)]
pub struct ModelError {
    pub message: String,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ModelError {}

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

fn ser_config() -> Option<SerializationConfig> {
    Some(SerializationConfig { always_sort: true })
}

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError {
        message: e.to_string(),
    }
}

#[inline(never)]
fn to_value(resource: Resource) -> Result<serde_json::Value, ModelError> {
    fhirbolt::json::to_json_value(resource, ser_config()).map_err(err)
}

/// Parses an R4 resource from JSON text (strict) and returns its canonical JSON form
/// (elements in definition order).
#[inline(never)]
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ModelError> {
    let resource: Resource = fhirbolt::json::from_slice(bytes, strict()).map_err(err)?;
    to_value(resource)
}

/// Checks an already-parsed JSON value against the strict R4 model and returns its
/// canonical JSON form.
#[inline(never)]
pub fn canonical_json(value: serde_json::Value) -> Result<serde_json::Value, ModelError> {
    let resource: Resource = fhirbolt::json::from_json_value(value, strict()).map_err(err)?;
    to_value(resource)
}

/// Checks that `bytes` is one well-formed XML document: fhirbolt's reader stops at the
/// end of the resource and accepts a truncated document, so this runs first.
fn check_well_formed(bytes: &[u8]) -> Result<(), ModelError> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.check_end_names(true);
    let mut depth: i64 = 0;
    let mut roots = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Empty(_)) if depth == 0 => roots += 1,
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.buffer_position()
                )))
            }
        }
    }
    if depth != 0 {
        return Err(err(
            "malformed XML: the document ends before its elements are closed",
        ));
    }
    if roots != 1 {
        return Err(err(
            "malformed XML: a document must have exactly one root element",
        ));
    }
    Ok(())
}

/// Parses an R4 resource from XML (strict) and returns its canonical JSON form.
#[inline(never)]
pub fn parse_xml(bytes: &[u8]) -> Result<serde_json::Value, ModelError> {
    check_well_formed(bytes)?;
    let resource: Resource = fhirbolt::xml::from_slice(bytes, strict()).map_err(err)?;
    to_value(resource)
}

/// Renders a JSON resource (as stored) as R4 XML.
#[inline(never)]
pub fn json_to_xml(json: &[u8]) -> Result<String, ModelError> {
    let resource: Resource = fhirbolt::json::from_slice(json, strict()).map_err(err)?;
    fhirbolt::xml::to_string(&resource, ser_config()).map_err(err)
}
