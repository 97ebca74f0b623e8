//! definitions: the FHIR R4 element tables Carnet enforces, loaded from
//! `fhir-profiles/r4/elements.json` (generated from HL7's StructureDefinitions by
//! `tools/import_fhir_definitions.py`), embedded at build time.

use once_cell::sync::Lazy;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;

const ELEMENTS_JSON: &str = include_str!("../../fhir-profiles/r4/elements.json");

#[derive(Deserialize)]
struct RawFile {
    primitives: HashMap<String, RawPrimitive>,
    types: HashMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawPrimitive {
    regex: Option<String>,
}

#[derive(Deserialize)]
struct RawType {
    kind: String,
    elements: Vec<RawElement>,
}

#[derive(Deserialize)]
struct RawElement {
    path: String,
    min: u32,
    max: String,
    #[serde(default)]
    types: Vec<String>,
    #[serde(rename = "contentReference")]
    content_reference: Option<String>,
    codes: Option<Vec<String>>,
    #[serde(rename = "valueSet")]
    value_set: Option<String>,
    /// `isSummary` of the definition.
    #[serde(default)]
    summary: bool,
}

/// How a primitive type appears in JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonKind {
    Boolean,
    Integer,
    Decimal,
    String,
}

pub struct Primitive {
    pub json: JsonKind,
    /// Anchored regex of the lexical space, from the definition.
    pub regex: Option<Regex>,
}

#[derive(Debug)]
pub struct ElementDef {
    /// Full path, e.g. `Patient.contact.name` or `Patient.deceased[x]`.
    pub path: String,
    pub min: u32,
    pub many: bool,
    pub types: Vec<String>,
    /// For `contentReference` elements: the path (within the same type) whose definition applies.
    pub content_reference: Option<String>,
    /// Required-binding codes, when the definition lists them.
    pub codes: Option<Vec<String>>,
    pub value_set: Option<String>,
    /// Marked `isSummary`: part of `_summary=true`.
    pub summary: bool,
    /// Whether the definition has child elements inline (a BackboneElement or inline Element).
    pub has_children: bool,
}

pub struct TypeDef {
    pub kind: String,
    /// Elements by path relative to the type root ("" is the root; "contact.name").
    pub by_path: HashMap<String, ElementDef>,
    /// For each parent path, its direct children's names (choice names keep `[x]`).
    pub children: HashMap<String, Vec<String>>,
}

pub struct Definitions {
    pub primitives: HashMap<String, Primitive>,
    pub types: HashMap<String, TypeDef>,
}

/// The JSON representation rule of FHIR R4 (JSON page, "primitive types").
fn json_kind(primitive: &str) -> JsonKind {
    match primitive {
        "boolean" => JsonKind::Boolean,
        "integer" | "positiveInt" | "unsignedInt" => JsonKind::Integer,
        "decimal" => JsonKind::Decimal,
        _ => JsonKind::String,
    }
}

pub static DEFINITIONS: Lazy<Definitions> = Lazy::new(|| {
    let raw: RawFile = serde_json::from_str(ELEMENTS_JSON).expect("embedded elements.json");
    let primitives = raw
        .primitives
        .into_iter()
        .map(|(name, p)| {
            let regex = p
                .regex
                .map(|r| Regex::new(&format!("^(?:{r})$")).expect("definition regex"));
            let kind = json_kind(&name);
            (name, Primitive { json: kind, regex })
        })
        .collect();
    let types = raw
        .types
        .into_iter()
        .map(|(name, t)| {
            let mut by_path = HashMap::new();
            let mut children: HashMap<String, Vec<String>> = HashMap::new();
            let prefix = format!("{name}.");
            let all_paths: Vec<String> = t.elements.iter().map(|e| e.path.clone()).collect();
            for e in t.elements {
                let rel = if e.path == name {
                    String::new()
                } else {
                    e.path.strip_prefix(&prefix).unwrap_or(&e.path).to_string()
                };
                if !rel.is_empty() {
                    let (parent, child) = match rel.rfind('.') {
                        Some(i) => (rel[..i].to_string(), rel[i + 1..].to_string()),
                        None => (String::new(), rel.clone()),
                    };
                    children.entry(parent).or_default().push(child);
                }
                let child_prefix = format!("{}.", e.path);
                let has_children = all_paths.iter().any(|p| p.starts_with(&child_prefix));
                let content_reference = e.content_reference.map(|c| {
                    c.strip_prefix(&prefix)
                        .map(str::to_string)
                        .unwrap_or_default()
                });
                by_path.insert(
                    rel,
                    ElementDef {
                        path: e.path,
                        min: e.min,
                        many: e.max != "1" && e.max != "0",
                        types: e.types,
                        content_reference,
                        codes: e.codes,
                        value_set: e.value_set,
                        summary: e.summary,
                        has_children,
                    },
                );
            }
            (
                name,
                TypeDef {
                    kind: t.kind,
                    by_path,
                    children,
                },
            )
        })
        .collect();
    Definitions { primitives, types }
});
