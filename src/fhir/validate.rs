//! validate: is this JSON a valid R4 resource? Two passes.
//!
//! 1. A walk driven by the official StructureDefinitions (see `definitions`): unknown
//!    elements, cardinality, JSON kinds, primitive regexes, required-binding codes and
//!    missing required elements, each reported with the FHIRPath of the element.
//! 2. fhirbolt's strict typed model (in `carnet-model`), which also returns the canonical
//!    JSON form that is stored.

use serde_json::{Map, Value};

use super::definitions::{Definitions, JsonKind, TypeDef, DEFINITIONS};
use crate::error::{FhirError, Issue};

/// Most issues reported for one resource; past that the client has enough to fix.
const MAX_ISSUES: usize = 50;

/// Checks `value` (already parsed JSON) as a resource and returns its canonical form.
pub fn validate(value: Value) -> Result<Value, FhirError> {
    // Whatever the path (a body, a Bundle entry, a patch), nothing is stored that could
    // not be read back; the walk below recurses once per level.
    super::limits::check_storable(&value)?;
    let mut issues = Vec::new();
    let rtype = match value.get("resourceType").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => {
            return Err(FhirError::Invalid(vec![Issue::invalid(
                "resourceType",
                "the resource has no resourceType",
            )]))
        }
    };
    Walker {
        defs: &DEFINITIONS,
        issues: &mut issues,
    }
    .resource(&value, &rtype);
    if !issues.is_empty() {
        return Err(FhirError::Invalid(issues));
    }
    carnet_model::canonical_json(value).map_err(|e| {
        FhirError::Invalid(vec![Issue {
            code: "structure",
            expression: None,
            diagnostics: format!("not valid FHIR R4: {e}"),
        }])
    })
}

struct Walker<'a> {
    defs: &'a Definitions,
    issues: &'a mut Vec<Issue>,
}

impl Walker<'_> {
    fn report(&mut self, path: &str, msg: String) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue::invalid(path, msg));
        }
    }

    /// A resource at `path` (its own type name at the root, or e.g. `Bundle.entry[0].resource`).
    fn resource(&mut self, value: &Value, path: &str) {
        let Some(obj) = value.as_object() else {
            self.report(path, "a resource must be a JSON object".into());
            return;
        };
        let Some(rtype) = obj.get("resourceType").and_then(Value::as_str) else {
            self.report(path, "the resource has no resourceType".into());
            return;
        };
        let Some(def) = self.defs.types.get(rtype) else {
            // Not one of Carnet's types: the strict model still checks its structure.
            return;
        };
        if def.kind != "resource" {
            self.report(path, format!("'{rtype}' is not a resource type"));
            return;
        }
        self.object(obj, def, "", path, true);
    }

    /// The members of one object whose definition is `def` at relative path `rel`.
    fn object(
        &mut self,
        obj: &Map<String, Value>,
        def: &TypeDef,
        rel: &str,
        path: &str,
        is_resource: bool,
    ) {
        for (key, val) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            if key == "fhir_comments" {
                continue;
            }
            let (name, is_shadow) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let child_path = format!("{path}.{name}");
            let Some((edef, ty)) = find_element(def, rel, name) else {
                self.report(&child_path, format!("unknown element '{name}'"));
                continue;
            };
            let many = edef.many;
            if many != val.is_array() {
                if many {
                    self.report(
                        &child_path,
                        format!("'{name}' repeats: it must be a JSON array"),
                    );
                } else {
                    self.report(
                        &child_path,
                        format!("'{name}' does not repeat: it must not be a JSON array"),
                    );
                }
                continue;
            }
            let items: Vec<&Value> = match val {
                Value::Array(a) => {
                    if a.is_empty() {
                        self.report(&child_path, "an array must not be empty".into());
                    }
                    a.iter().collect()
                }
                v => vec![v],
            };
            let edef_rel = edef
                .path
                .split_once('.')
                .map(|(_, r)| r.to_string())
                .unwrap_or_default();
            let content_ref = edef.content_reference.clone();
            let has_children = edef.has_children;
            let codes = edef.codes.clone();
            let value_set = edef.value_set.clone();
            for (i, item) in items.iter().enumerate() {
                let item_path = if many {
                    format!("{child_path}[{i}]")
                } else {
                    child_path.clone()
                };
                if is_shadow {
                    // `_name`: the id and extensions of a primitive.
                    if item.is_null() {
                        continue;
                    }
                    match (item.as_object(), self.defs.types.get("Element")) {
                        (Some(o), Some(element)) => self.object(o, element, "", &item_path, false),
                        _ => self.report(&item_path, "must be a JSON object".into()),
                    }
                    continue;
                }
                if item.is_null() && many && obj.contains_key(&format!("_{name}")) {
                    continue;
                }
                if let Some(target) = &content_ref {
                    self.nested(item, def, target, &item_path);
                } else if has_children {
                    self.nested(item, def, &edef_rel, &item_path);
                } else {
                    self.typed(
                        item,
                        &ty,
                        &item_path,
                        codes.as_deref(),
                        value_set.as_deref(),
                    );
                }
            }
        }
        self.required(obj, def, rel, path);
    }

    fn nested(&mut self, item: &Value, def: &TypeDef, rel: &str, path: &str) {
        match item.as_object() {
            Some(o) => self.object(o, def, rel, path, false),
            None => self.report(path, "must be a JSON object".into()),
        }
    }

    /// A value of FHIR type `ty` (a primitive, a data type or a resource).
    fn typed(
        &mut self,
        item: &Value,
        ty: &str,
        path: &str,
        codes: Option<&[String]>,
        value_set: Option<&str>,
    ) {
        if ty == "Resource" {
            self.resource(item, path);
            return;
        }
        if let Some(p) = self.defs.primitives.get(ty) {
            let ok_kind = match p.json {
                JsonKind::Boolean => item.is_boolean(),
                JsonKind::Integer => item.is_i64() || item.is_u64(),
                JsonKind::Decimal => item.is_number(),
                JsonKind::String => item.is_string(),
            };
            if !ok_kind {
                let want = match p.json {
                    JsonKind::Boolean => "a JSON boolean",
                    JsonKind::Integer => "a JSON integer",
                    JsonKind::Decimal => "a JSON number",
                    JsonKind::String => "a JSON string",
                };
                self.report(path, format!("a {ty} must be {want}"));
                return;
            }
            let text = match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            // R4 strings may not hold control characters other than tab, CR and LF.
            if let Some(bad) = text
                .chars()
                .find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
            {
                self.report(
                    path,
                    format!(
                        "control character U+{:04X} is not allowed in a {ty}",
                        bad as u32
                    ),
                );
                return;
            }
            if let Some(re) = &p.regex {
                if !re.is_match(&text) {
                    self.report(path, format!("'{}' is not a valid {ty}", shorten(&text)));
                    return;
                }
            }
            if let Some(codes) = codes {
                if !codes.iter().any(|c| c == &text) {
                    self.report(
                        path,
                        format!(
                            "'{}' is not a code of the required value set {} ({})",
                            shorten(&text),
                            value_set.unwrap_or(""),
                            codes.join(" | ")
                        ),
                    );
                }
            }
            return;
        }
        match (item.as_object(), self.defs.types.get(ty)) {
            (Some(o), Some(def)) => self.object(o, def, "", path, false),
            (None, Some(_)) => self.report(path, format!("a {ty} must be a JSON object")),
            // Types outside the imported definitions: left to the strict model.
            (_, None) => {}
        }
    }

    fn required(&mut self, obj: &Map<String, Value>, def: &TypeDef, rel: &str, path: &str) {
        let Some(children) = def.children.get(rel) else {
            return;
        };
        for child in children {
            let key = if rel.is_empty() {
                child.clone()
            } else {
                format!("{rel}.{child}")
            };
            let Some(edef) = def.by_path.get(&key) else {
                continue;
            };
            if edef.min == 0 {
                continue;
            }
            let present = match child.strip_suffix("[x]") {
                Some(base) => obj
                    .keys()
                    .any(|k| k.trim_start_matches('_').starts_with(base)),
                None => obj.contains_key(child.as_str()) || obj.contains_key(&format!("_{child}")),
            };
            if !present {
                let name = child.trim_end_matches("[x]");
                self.report(
                    &format!("{path}.{name}"),
                    format!("required element '{name}' is missing"),
                );
            }
        }
    }
}

/// The definition of member `name` under `rel`, with the type it takes there (resolving
/// choice elements such as `valueQuantity` against `value[x]`).
fn find_element<'d>(
    def: &'d TypeDef,
    rel: &str,
    name: &str,
) -> Option<(&'d super::definitions::ElementDef, String)> {
    let key = if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}.{name}")
    };
    if let Some(e) = def.by_path.get(&key) {
        if !e.path.ends_with("[x]") {
            return Some((e, e.types.first().cloned().unwrap_or_default()));
        }
    }
    let children = def.children.get(rel)?;
    for child in children {
        let Some(base) = child.strip_suffix("[x]") else {
            continue;
        };
        let Some(suffix) = name.strip_prefix(base) else {
            continue;
        };
        let ckey = if rel.is_empty() {
            child.clone()
        } else {
            format!("{rel}.{child}")
        };
        let e = def.by_path.get(&ckey)?;
        for t in &e.types {
            if upper_first(t) == suffix {
                return Some((e, t.clone()));
            }
        }
    }
    None
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        s.chars().take(60).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<String> {
        match validate(v) {
            Ok(_) => vec![],
            Err(FhirError::Invalid(issues)) => {
                issues.into_iter().filter_map(|i| i.expression).collect()
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn a_valid_patient_passes() {
        assert!(paths(
            json!({"resourceType":"Patient","gender":"female","birthDate":"1970-02",
            "name":[{"family":"Lévêque","given":["Hélène"]}],"deceasedBoolean":false})
        )
        .is_empty());
    }

    #[test]
    fn bad_code_date_and_unknown_element_are_named_by_path() {
        let p = paths(
            json!({"resourceType":"Patient","gender":"robot","birthDate":"1970-13-01",
            "name":[{"family":"X","nickname":"Y"}]}),
        );
        assert!(p.contains(&"Patient.gender".to_string()), "{p:?}");
        assert!(p.contains(&"Patient.birthDate".to_string()), "{p:?}");
        assert!(p.contains(&"Patient.name[0].nickname".to_string()), "{p:?}");
    }

    #[test]
    fn wrong_cardinality_and_missing_required_are_reported() {
        let p = paths(
            json!({"resourceType":"Immunization","status":"completed","patient":{"reference":"Patient/1"},
            "occurrenceDateTime":"2021-01-01","vaccineCode":[{"text":"x"}]}),
        );
        assert_eq!(p, vec!["Immunization.vaccineCode".to_string()]);
        let p = paths(
            json!({"resourceType":"Immunization","status":"completed","patient":{"reference":"Patient/1"},
            "occurrenceDateTime":"2021-01-01"}),
        );
        assert_eq!(p, vec!["Immunization.vaccineCode".to_string()]);
    }
}
