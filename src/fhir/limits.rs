//! limits: how big, how deep and how wide untrusted input may be, in one place.
//!
//! Every limit is checked before the work it protects: a JSON body is scanned as bytes
//! (no allocation per element) before it is parsed, an XML body is stream-checked before
//! the typed model is built, and the parsed resource is measured again before it is
//! validated or stored. Beyond a limit the request gets a 4xx OperationOutcome naming
//! the limit and nothing is stored.
//!
//! Depth is counted in element levels, the same for JSON and XML: a JSON object is a
//! level (the resource itself is level 1), an array is not (an array directly inside an
//! array is, although FHIR has none), and the nested structure of an XML body is measured
//! on its JSON form. The stored JSON of a resource within [`STORAGE_MAX_DEPTH`] levels
//! nests at most `2 × 60 + 1` JSON containers, and `+ 3` inside a Bundle: below the 128
//! that the JSON reader accepts, so everything stored reads back on every path.

use clap::Args;
use serde_json::Value;

use crate::error::FhirError;

/// The deepest resource Carnet ever stores, whatever the configuration says.
pub const STORAGE_MAX_DEPTH: usize = 60;

/// A Bundle's own levels above its entries' resources (`Bundle`, `entry`, `resource`):
/// a Bundle body may be this much deeper than one resource.
pub const BUNDLE_ALLOWANCE: usize = 2;

/// Limits on request input (`carnet serve --help`, each with a `CARNET_*` variable).
#[derive(Debug, Clone, Copy, Args)]
pub struct Limits {
    /// Deepest nesting of elements in a resource (JSON objects / XML elements with
    /// children; the resource is level 1). At most 60.
    #[arg(long = "max-depth", env = "CARNET_MAX_DEPTH", default_value_t = DEFAULTS.max_depth)]
    pub max_depth: usize,

    /// Most elements (JSON values, XML elements and attributes) in one resource.
    #[arg(long = "max-elements", env = "CARNET_MAX_ELEMENTS", default_value_t = DEFAULTS.max_elements)]
    pub max_elements: usize,

    /// Most elements in one Bundle body, all its entries together.
    #[arg(long = "max-bundle-elements", env = "CARNET_MAX_BUNDLE_ELEMENTS", default_value_t = DEFAULTS.max_bundle_elements)]
    pub max_bundle_elements: usize,

    /// Most items in one repeating element (a JSON array).
    #[arg(long = "max-array-items", env = "CARNET_MAX_ARRAY_ITEMS", default_value_t = DEFAULTS.max_array_items)]
    pub max_array_items: usize,

    /// Most attributes on one XML element.
    #[arg(long = "max-xml-attributes", env = "CARNET_MAX_XML_ATTRIBUTES", default_value_t = DEFAULTS.max_xml_attributes)]
    pub max_xml_attributes: usize,

    /// Most entries in one batch or transaction Bundle.
    #[arg(long = "max-bundle-entries", env = "CARNET_MAX_BUNDLE_ENTRIES", default_value_t = DEFAULTS.max_bundle_entries)]
    pub max_bundle_entries: usize,

    /// Most reads and searches (GET entries) in one batch or transaction Bundle.
    #[arg(long = "max-bundle-reads", env = "CARNET_MAX_BUNDLE_READS", default_value_t = DEFAULTS.max_bundle_reads)]
    pub max_bundle_reads: usize,

    /// Most resources `_include`/`_revinclude` bring into one page (past it the page says
    /// so in an OperationOutcome entry).
    #[arg(long = "max-included", env = "CARNET_MAX_INCLUDED", default_value_t = DEFAULTS.max_included)]
    pub max_included: usize,

    /// Largest value of a header Carnet reads (If-None-Exist, Prefer, If-Match…), in bytes.
    #[arg(long = "max-header-bytes", env = "CARNET_MAX_HEADER_BYTES", default_value_t = DEFAULTS.max_header_bytes)]
    pub max_header_bytes: usize,
}

/// The defaults: a production server's choices, far above what the official R4
/// examples need (depth 7, 30,000 elements for the largest definitions Bundle).
pub const DEFAULTS: Limits = Limits {
    max_depth: 32,
    max_elements: 100_000,
    max_bundle_elements: 1_000_000,
    max_array_items: 10_000,
    max_xml_attributes: 64,
    max_bundle_entries: 10_000,
    max_bundle_reads: 500,
    max_included: 1_000,
    max_header_bytes: 8 * 1024,
};

impl Default for Limits {
    fn default() -> Self {
        DEFAULTS
    }
}

fn too_costly(msg: String) -> FhirError {
    FhirError::TooCostly(msg)
}

impl Limits {
    /// Refuses a configuration that could store what cannot be read back.
    pub fn checked(self) -> Result<Limits, String> {
        if self.max_depth == 0 || self.max_depth > STORAGE_MAX_DEPTH {
            return Err(format!(
                "--max-depth {} is out of range: 1 to {STORAGE_MAX_DEPTH}",
                self.max_depth
            ));
        }
        if self.max_bundle_entries > self.max_bundle_elements
            || self.max_array_items > self.max_elements
            || self.max_xml_attributes > 10_000
            || self.max_header_bytes > 128 * 1024
            || self.max_bundle_elements > 100_000_000
        {
            return Err(
                "limits out of range: max-array-items ≤ max-elements, max-bundle-entries ≤ \
                 max-bundle-elements ≤ 100,000,000, max-xml-attributes ≤ 10,000, \
                 max-header-bytes ≤ 128 KiB"
                    .into(),
            );
        }
        for (name, v) in [
            ("--max-elements", self.max_elements),
            ("--max-bundle-elements", self.max_bundle_elements),
            ("--max-array-items", self.max_array_items),
            ("--max-xml-attributes", self.max_xml_attributes),
            ("--max-bundle-entries", self.max_bundle_entries),
            ("--max-header-bytes", self.max_header_bytes),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(self)
    }

    /// The limits of an XML body's pre-check (before the typed model is built).
    pub fn xml(&self) -> carnet_model::XmlLimits {
        carnet_model::XmlLimits {
            // XML adds an element per wrapped resource (`<resource>`, `<contained>`) and one
            // per leaf value; the parsed JSON form is then held to max-depth exactly.
            max_depth: self.max_depth + BUNDLE_ALLOWANCE + 4,
            max_nodes: self.max_bundle_elements.max(self.max_elements),
            max_resource_nodes: self.max_elements,
            max_attributes: self.max_xml_attributes,
        }
    }
}

/// What a scan or a walk found: the deepest level, the elements and the widest array.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub depth: usize,
    pub elements: usize,
    pub widest: usize,
}

fn check_measure(
    m: Measure,
    is_bundle: bool,
    entries: usize,
    limits: &Limits,
) -> Result<(), FhirError> {
    let (max_depth, max_elements) = if is_bundle {
        (
            limits.max_depth + BUNDLE_ALLOWANCE,
            limits.max_bundle_elements,
        )
    } else {
        (limits.max_depth, limits.max_elements)
    };
    if m.depth > max_depth {
        return Err(too_costly(format!(
            "the resource nests {} levels of elements; at most {max_depth} are accepted (limit max-depth)",
            m.depth
        )));
    }
    if m.elements > max_elements {
        let limit = if is_bundle {
            "max-bundle-elements"
        } else {
            "max-elements"
        };
        return Err(too_costly(format!(
            "the {} has more than {max_elements} elements (limit {limit})",
            if is_bundle { "Bundle" } else { "resource" }
        )));
    }
    if m.widest > limits.max_array_items {
        return Err(too_costly(format!(
            "an element repeats {} times; at most {} are accepted (limit max-array-items)",
            m.widest, limits.max_array_items
        )));
    }
    if entries > limits.max_bundle_entries {
        return Err(too_costly(format!(
            "the Bundle has {entries} entries; at most {} are accepted (limit max-bundle-entries)",
            limits.max_bundle_entries
        )));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    /// An object; `key` says whether the next string is a member name.
    Object { key: bool },
    /// An array, with the items seen so far; `entries` when it is the root's `entry`.
    Array { items: usize, entries: bool },
}

/// Scans JSON text for its depth, element count and widest array without building it,
/// stopping as soon as a limit is passed. Malformed JSON is left to the parser (which
/// reports it better); this only guarantees that parsing stays within the limits.
pub fn check_json_bytes(bytes: &[u8], limits: &Limits) -> Result<(), FhirError> {
    // The most any body may nest (a Bundle's allowance included); checked on the way in,
    // so the scan's own stack stays small.
    let hard_depth = limits.max_depth + BUNDLE_ALLOWANCE;
    let hard_elements = limits.max_bundle_elements.max(limits.max_elements);
    let mut stack: Vec<Frame> = Vec::with_capacity(16);
    let mut depth = 0usize;
    let mut m = Measure::default();
    let mut entries = 0usize;
    // Root object members: which one is being read, for `resourceType` and `entry`.
    let mut root_key: Option<&[u8]> = None;
    let mut root_type: Option<&[u8]> = None;
    let mut i = 0usize;
    let n = bytes.len();
    while i < n {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {
                i += 1;
                continue;
            }
            b',' => {
                if let Some(Frame::Object { key }) = stack.last_mut() {
                    *key = true;
                }
                i += 1;
                continue;
            }
            b'}' | b']' => {
                if let Some(f) = stack.pop() {
                    if matches!(f, Frame::Object { .. })
                        || matches!(stack.last(), Some(Frame::Array { .. }) | None)
                    {
                        depth = depth.saturating_sub(1);
                    }
                    if let Frame::Array {
                        items,
                        entries: true,
                    } = f
                    {
                        entries = items;
                    }
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        // A value starts here (or a member name).
        let is_key = matches!(stack.last(), Some(Frame::Object { key: true }));
        if is_key {
            if let Some(Frame::Object { key }) = stack.last_mut() {
                *key = false;
            }
        } else {
            m.elements += 1;
            if m.elements > hard_elements {
                return Err(too_costly(format!(
                    "the body has more than {hard_elements} elements (limit max-bundle-elements)"
                )));
            }
            if let Some(Frame::Array { items, entries }) = stack.last_mut() {
                *items += 1;
                if *entries {
                    if *items > limits.max_bundle_entries {
                        return Err(too_costly(format!(
                            "the Bundle has more than {} entries (limit max-bundle-entries)",
                            limits.max_bundle_entries
                        )));
                    }
                } else {
                    m.widest = m.widest.max(*items);
                    if *items > limits.max_array_items {
                        return Err(too_costly(format!(
                            "an element repeats more than {} times (limit max-array-items)",
                            limits.max_array_items
                        )));
                    }
                }
            }
        }
        match b {
            b'{' | b'[' => {
                let counts = b == b'{' || matches!(stack.last(), Some(Frame::Array { .. }) | None);
                if counts {
                    depth += 1;
                    m.depth = m.depth.max(depth);
                    if depth > hard_depth {
                        return Err(too_costly(format!(
                            "the body nests more than {hard_depth} levels of elements (limit max-depth)"
                        )));
                    }
                }
                let entries_array = b == b'[' && stack.len() == 1 && root_key == Some(b"entry");
                stack.push(if b == b'{' {
                    Frame::Object { key: true }
                } else {
                    Frame::Array {
                        items: 0,
                        entries: entries_array,
                    }
                });
                if stack.len() == 2 {
                    root_key = None;
                }
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                i = start;
                while i < n && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let text = &bytes[start..i.min(n)];
                if stack.len() == 1 {
                    if is_key {
                        root_key = Some(text);
                    } else if root_key == Some(b"resourceType") {
                        root_type = Some(text);
                    }
                }
                i += 1;
            }
            _ => {
                // A number or a literal: up to the next delimiter.
                while i < n
                    && !matches!(
                        bytes[i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':'
                    )
                {
                    i += 1;
                }
            }
        }
    }
    check_measure(m, root_type == Some(b"Bundle"), entries, limits)
}

/// Measures a parsed JSON value without recursion (an explicit stack). The width of a
/// Bundle's `entry` is not counted (max-bundle-entries bounds it).
pub fn measure(value: &Value) -> Measure {
    let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    let mut m = Measure::default();
    // (value, depth of its parent level, parent is an array, width exempt)
    let mut todo: Vec<(&Value, usize, bool, bool)> = vec![(value, 0, true, false)];
    while let Some((v, parent_depth, in_array, exempt)) = todo.pop() {
        m.elements += 1;
        match v {
            Value::Object(o) => {
                let d = parent_depth + 1;
                m.depth = m.depth.max(d);
                let root = parent_depth == 0;
                todo.extend(
                    o.iter()
                        .map(|(k, c)| (c, d, false, root && is_bundle && k == "entry")),
                );
            }
            Value::Array(a) => {
                let d = if in_array {
                    parent_depth + 1
                } else {
                    parent_depth
                };
                m.depth = m.depth.max(d);
                if !exempt {
                    m.widest = m.widest.max(a.len());
                }
                todo.extend(a.iter().map(|c| (c, d, true, false)));
            }
            _ => {}
        }
    }
    m
}

/// Holds a parsed body to the limits (for XML, whose JSON form is measured here).
pub fn check_value(value: &Value, limits: &Limits) -> Result<(), FhirError> {
    let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    let entries = if is_bundle {
        value
            .get("entry")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    } else {
        0
    };
    check_measure(measure(value), is_bundle, entries, limits)
}

/// The ceiling every stored resource is held to (whatever the configured limits), so that
/// everything stored reads back.
pub fn check_storable(value: &Value) -> Result<(), FhirError> {
    let m = measure(value);
    if m.depth > STORAGE_MAX_DEPTH {
        return Err(too_costly(format!(
            "the resource nests {} levels of elements; at most {STORAGE_MAX_DEPTH} can be stored",
            m.depth
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> String {
        let mut s = String::from(r#"{"resourceType":"Patient""#);
        for _ in 1..levels {
            s.push_str(r#","extension":[{"url":"x""#);
        }
        for _ in 1..levels {
            s.push_str("}]");
        }
        s.push('}');
        s
    }

    #[test]
    fn scan_and_walk_agree_on_depth() {
        for levels in [1, 2, 5, 32] {
            let text = nested(levels);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(measure(&v).depth, levels, "{text}");
            assert!(check_json_bytes(text.as_bytes(), &DEFAULTS).is_ok());
            assert!(check_value(&v, &DEFAULTS).is_ok());
        }
        let deep = nested(33);
        let v: Value = serde_json::from_str(&deep).unwrap();
        assert!(check_json_bytes(deep.as_bytes(), &DEFAULTS).is_err());
        assert!(check_value(&v, &DEFAULTS).is_err());
    }

    #[test]
    fn arrays_in_arrays_count_as_levels() {
        let text = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let e = check_json_bytes(text.as_bytes(), &DEFAULTS).unwrap_err();
        assert!(e.to_string().contains("max-depth"), "{e}");
    }

    #[test]
    fn wide_arrays_and_many_elements_are_refused() {
        let given: Vec<String> = (0..10_001).map(|i| format!("\"g{i}\"")).collect();
        let text = format!(
            r#"{{"resourceType":"Patient","name":[{{"given":[{}]}}]}}"#,
            given.join(",")
        );
        let e = check_json_bytes(text.as_bytes(), &DEFAULTS).unwrap_err();
        assert!(e.to_string().contains("max-array-items"), "{e}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(check_value(&v, &DEFAULTS).is_err());
    }

    #[test]
    fn a_bundle_may_hold_many_entries_and_two_more_levels() {
        let entry = json!({"resource": serde_json::from_str::<Value>(&nested(32)).unwrap()});
        let b = json!({"resourceType": "Bundle", "type": "batch",
            "entry": vec![entry; 10_000]});
        let text = serde_json::to_string(&b).unwrap();
        assert!(check_json_bytes(text.as_bytes(), &DEFAULTS).is_ok());
        assert!(check_value(&b, &DEFAULTS).is_ok());
        let over = json!({"resourceType": "Bundle", "type": "batch",
            "entry": vec![json!({"request": {"method": "GET", "url": "Patient"}}); 10_001]});
        let text = serde_json::to_string(&over).unwrap();
        let e = check_json_bytes(text.as_bytes(), &DEFAULTS).unwrap_err();
        assert!(e.to_string().contains("max-bundle-entries"), "{e}");
    }

    #[test]
    fn strings_with_brackets_and_escapes_do_not_confuse_the_scan() {
        let text = r#"{"resourceType":"Patient","text":{"div":"<div>[[[{{{\"]]]}}}</div>"}}"#;
        assert!(check_json_bytes(text.as_bytes(), &DEFAULTS).is_ok());
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(measure(&v).depth, 2);
    }
}

#[cfg(test)]
mod model_stack_tests {
    use carnet_model::*;

    /// A Patient of `levels` objects (the fuzz crate's deep body has one more than the
    /// extensions it nests).
    fn deep_json(levels: usize) -> String {
        String::from_utf8(carnet_fuzz::deep_json(levels - 1)).unwrap()
    }

    const LIMITS: XmlLimits = XmlLimits {
        max_depth: 200,
        max_nodes: 1_000_000,
        max_resource_nodes: 1_000_000,
        max_attributes: 64,
    };

    /// The typed model recurses once per level: the deepest resource Carnet stores (60
    /// levels, in a Bundle +3) and the deepest XML the pre-check lets through convert from
    /// a caller with a 2 MiB stack (the server's threads), even unoptimised — on the
    /// model's big-stack thread, since they are past its threshold.
    #[test]
    fn the_deepest_storable_resource_converts_on_a_default_stack() {
        let json = deep_json(63);
        // An XML body as deep as the pre-check lets through is parsed too.
        let xml_deep = format!(
            "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
            "<extension url=\"http://x/e\">".repeat(70),
            "</extension>".repeat(70)
        );
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let v = parse_json(json.as_bytes()).expect("parse");
                let canonical = canonical_json(v.clone()).expect("canonical");
                let text = serde_json::to_vec(&canonical).unwrap();
                let xml = json_to_xml(&text).expect("to xml");
                let back = parse_xml(xml.as_bytes(), &LIMITS).expect("from xml");
                assert_eq!(back, canonical);
                parse_xml(xml_deep.as_bytes(), &LIMITS).expect("deep XML");
            })
            .unwrap();
        handle.join().expect("no stack overflow");
    }

    /// At the threshold the conversion stays on the caller's thread: that must fit in the
    /// 2 MiB of the server's threads, unoptimised.
    #[test]
    fn a_resource_at_the_threshold_converts_on_the_callers_stack() {
        // `deep_json(n)`: n objects, n - 1 arrays between them.
        let levels = carnet_model::DEEP.div_ceil(2);
        let json = deep_json(levels);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut containers = 0;
        let mut cur = &v;
        while let Some(next) = cur.get("extension").and_then(|e| e.get(0)) {
            containers += 2;
            cur = next;
        }
        assert!(containers < carnet_model::DEEP, "{containers}");
        let handle = std::thread::Builder::new()
            .name("two-mib".into())
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let canonical = canonical_json(v).expect("canonical");
                let text = serde_json::to_vec(&canonical).unwrap();
                let xml = json_to_xml(&text).expect("to xml");
                assert_eq!(
                    parse_xml(xml.as_bytes(), &LIMITS).expect("from xml"),
                    canonical
                );
                parse_json(&text).expect("parse");
            })
            .unwrap();
        handle.join().expect("no stack overflow");
    }
}
