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

/// The typed model recurses once per level with large frames (up to ~30 KiB per level
/// in an unoptimised build): a deep input is converted on a thread of its own with a stack
/// sized for the deepest one the limits allow (reserved, not committed). Inputs up to
/// [`DEEP`] containers (every real resource: the R4 examples nest 14 at most) stay on the
/// caller's thread, whose 2 MiB hold them. At most [`DEEP_THREADS`] such threads run at
/// once; further deep inputs wait their turn.
pub const DEEP: usize = 24;
const DEEP_STACK: usize = 64 * 1024 * 1024;
const DEEP_THREADS: usize = 4;

static DEEP_RUNNING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static DEEP_FREED: std::sync::Condvar = std::sync::Condvar::new();

fn on_stack_for<T: Send, E: From<ModelError> + Send>(
    depth: usize,
    f: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, E> {
    if depth <= DEEP {
        return f();
    }
    {
        let mut running = DEEP_RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= DEEP_THREADS {
            running = DEEP_FREED.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running += 1;
    }
    // The slot is given back however the conversion ends (a panic included).
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            *DEEP_RUNNING.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            DEEP_FREED.notify_one();
        }
    }
    let _slot = Slot;
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("carnet-model-deep".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, f)
        {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => Err(E::from(err(format!(
                "no thread could be started for a deeply nested resource: {e}"
            )))),
        }
    })
}

/// Nesting of JSON containers in `bytes`, outside strings (a quick scan).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Nesting of JSON containers in a value (no recursion).
fn value_depth(value: &serde_json::Value) -> usize {
    let mut max = 0;
    let mut todo = vec![(value, 1usize)];
    while let Some((v, d)) = todo.pop() {
        match v {
            serde_json::Value::Object(o) => {
                max = max.max(d);
                todo.extend(o.values().map(|c| (c, d + 1)));
            }
            serde_json::Value::Array(a) => {
                max = max.max(d);
                todo.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

#[inline(never)]
fn to_value(resource: Resource) -> Result<serde_json::Value, ModelError> {
    fhirbolt::json::to_json_value(resource, ser_config()).map_err(err)
}

/// Parses an R4 resource from JSON text (strict) and returns its canonical JSON form
/// (elements in definition order).
#[inline(never)]
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ModelError> {
    on_stack_for(json_depth(bytes), || {
        let resource: Resource = fhirbolt::json::from_slice(bytes, strict()).map_err(err)?;
        to_value(resource)
    })
}

/// Checks an already-parsed JSON value against the strict R4 model and returns its
/// canonical JSON form.
#[inline(never)]
pub fn canonical_json(value: serde_json::Value) -> Result<serde_json::Value, ModelError> {
    on_stack_for(value_depth(&value), move || {
        let resource: Resource = fhirbolt::json::from_json_value(value, strict()).map_err(err)?;
        to_value(resource)
    })
}

/// How much an XML body may nest and hold before the typed model is built (whose reader
/// recurses once per level: an unbounded depth would overflow the thread's stack).
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    /// Deepest element nesting (the root element is level 1).
    pub max_depth: usize,
    /// Most elements and attributes in a Bundle document.
    pub max_nodes: usize,
    /// Most elements and attributes in any other document (one resource).
    pub max_resource_nodes: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
}

/// Which limit an XML body passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlLimit {
    Depth,
    Nodes,
    Attributes,
}

/// A body that fhirbolt's model refused, or one that passed a limit before parsing.
#[derive(Debug, Clone)]
pub enum XmlError {
    Invalid(ModelError),
    Limit(XmlLimit, String),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::Invalid(e) => e.fmt(f),
            XmlError::Limit(_, m) => f.write_str(m),
        }
    }
}

impl std::error::Error for XmlError {}

impl From<ModelError> for XmlError {
    fn from(e: ModelError) -> Self {
        XmlError::Invalid(e)
    }
}

/// Checks that `bytes` is one well-formed XML document within `limits` in one streaming
/// pass (nothing is built): fhirbolt's reader stops at the end of the resource and accepts
/// a truncated document, and recurses once per level, so this runs first.
fn check_well_formed(bytes: &[u8], limits: &XmlLimits) -> Result<usize, XmlError> {
    use quick_xml::events::{BytesStart, Event};
    let text = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.check_end_names(true);
    let mut depth: usize = 0;
    let mut deepest: usize = 0;
    let mut roots = 0;
    let mut nodes: usize = 0;
    // Not a Bundle: the root's own, smaller, element limit applies.
    let mut max_nodes = limits.max_nodes;
    let mut element = |e: &BytesStart, depth: usize, max_nodes: usize| -> Result<(), XmlError> {
        if depth > limits.max_depth {
            return Err(XmlError::Limit(
                XmlLimit::Depth,
                format!("the XML nests more than {} elements", limits.max_depth),
            ));
        }
        // Counted without the duplicate check (quadratic in the number of attributes).
        let attributes = e
            .attributes()
            .with_checks(false)
            .take(limits.max_attributes.saturating_add(1))
            .count();
        if attributes > limits.max_attributes {
            return Err(XmlError::Limit(
                XmlLimit::Attributes,
                format!(
                    "an XML element has more than {} attributes",
                    limits.max_attributes
                ),
            ));
        }
        nodes += 1 + attributes;
        if nodes > max_nodes {
            return Err(XmlError::Limit(
                XmlLimit::Nodes,
                format!(
                    "the XML has more than {} elements and attributes",
                    limits.max_nodes
                ),
            ));
        }
        Ok(())
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                if depth == 0 {
                    roots += 1;
                    if e.local_name().as_ref() != b"Bundle" {
                        max_nodes = max_nodes.min(limits.max_resource_nodes);
                    }
                }
                depth += 1;
                deepest = deepest.max(depth);
                element(&e, depth, max_nodes)?;
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Empty(e)) => {
                if depth == 0 {
                    roots += 1;
                }
                element(&e, depth + 1, max_nodes)?;
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.buffer_position()
                ))
                .into())
            }
        }
    }
    if depth != 0 {
        return Err(err("malformed XML: the document ends before its elements are closed").into());
    }
    if roots != 1 {
        return Err(err("malformed XML: a document must have exactly one root element").into());
    }
    Ok(deepest)
}

/// Parses an R4 resource from XML (strict) within `limits` and returns its canonical JSON
/// form.
#[inline(never)]
pub fn parse_xml(bytes: &[u8], limits: &XmlLimits) -> Result<serde_json::Value, XmlError> {
    let depth = check_well_formed(bytes, limits)?;
    on_stack_for(2 * depth, || {
        let resource: Resource = fhirbolt::xml::from_slice(bytes, strict()).map_err(err)?;
        Ok(to_value(resource)?)
    })
}

/// Renders a JSON resource (as stored) as R4 XML.
#[inline(never)]
pub fn json_to_xml(json: &[u8]) -> Result<String, ModelError> {
    on_stack_for(json_depth(json), || {
        let resource: Resource = fhirbolt::json::from_slice(json, strict()).map_err(err)?;
        fhirbolt::xml::to_string(&resource, ser_config()).map_err(err)
    })
}
