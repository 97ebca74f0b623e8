//! subset: the reduced forms of a resource a client can ask for with `_summary`
//! (`true`, `text`, `data`) or `_elements`, following the R4 search page
//! (<https://hl7.org/fhir/R4/search.html#summary>). Which elements are "summary" and which
//! are mandatory comes from the official definitions (`isSummary`, `min`), not from a list
//! typed here. Every reduced resource is tagged `SUBSETTED` so that nobody mistakes it for
//! the whole resource (and writes it back).

use super::definitions::{TypeDef, DEFINITIONS};
use serde_json::{json, Map, Value};

const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// What a client asked to keep of each matching resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subset {
    /// `_summary=true`: the elements marked `isSummary` (inside backbone elements too).
    Summary,
    /// `_summary=text`: `text`, `id`, `meta` and the top-level mandatory elements.
    Text,
    /// `_summary=data`: everything but `text`.
    Data,
    /// `_elements=a,b`: those top-level elements, plus `id`, `meta` and mandatory elements.
    Elements(Vec<String>),
}

impl Subset {
    /// `_elements` as given: names separated by commas, each optionally prefixed by the type
    /// (`Patient.name`, as R5 writes them).
    pub fn elements(raw: &str) -> Subset {
        Subset::Elements(
            raw.split(',')
                .map(|e| {
                    let e = e.trim();
                    match e.split_once('.') {
                        Some((_, rest)) => rest.to_string(),
                        None => e.to_string(),
                    }
                })
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }
}

/// Applies `subset` to a resource (a JSON object with `resourceType`).
pub fn apply(mut resource: Value, subset: &Subset) -> Value {
    let Some(rtype) = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return resource;
    };
    let Some(def) = DEFINITIONS.types.get(&rtype) else {
        return resource;
    };
    if let Some(obj) = resource.as_object_mut() {
        match subset {
            Subset::Data => {
                obj.remove("text");
                obj.remove("_text");
            }
            Subset::Text => obj.retain(|k, _| {
                matches!(base_key(k), "resourceType" | "id" | "meta" | "text")
                    || element_of(def, "", base_key(k)).is_some_and(|e| e.min > 0)
            }),
            Subset::Elements(names) => obj.retain(|k, _| {
                let key = base_key(k);
                matches!(key, "resourceType" | "id" | "meta")
                    || element_of(def, "", key).is_some_and(|e| {
                        e.min > 0 || names.iter().any(|n| element_name(&e.path) == n)
                    })
            }),
            Subset::Summary => keep_summary(def, "", obj),
        }
        tag_subsetted(obj);
    }
    resource
}

/// Keeps the summary elements of `obj` (at `parent` within the type), recursing into
/// backbone elements, whose children carry their own `isSummary` flags.
fn keep_summary(def: &TypeDef, parent: &str, obj: &mut Map<String, Value>) {
    obj.retain(|k, _| {
        let key = base_key(k);
        (parent.is_empty() && matches!(key, "resourceType" | "id" | "meta"))
            || element_of(def, parent, key).is_some_and(|e| e.summary)
    });
    for (k, v) in obj.iter_mut() {
        if k.starts_with('_') {
            continue;
        }
        let Some(e) = element_of(def, parent, k) else {
            continue;
        };
        if !e.has_children {
            continue;
        }
        let path = relative_path(&e.path);
        match v {
            Value::Object(child) => keep_summary(def, &path, child),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(child) = item {
                        keep_summary(def, &path, child);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The element a JSON member names (`deceasedBoolean` → `deceased[x]`), under `parent`.
fn element_of<'a>(
    def: &'a TypeDef,
    parent: &str,
    key: &str,
) -> Option<&'a super::definitions::ElementDef> {
    let children = def.children.get(parent)?;
    let name = children.iter().find(|c| {
        c.as_str() == key
            || c.strip_suffix("[x]").is_some_and(|stem| {
                key.strip_prefix(stem)
                    .is_some_and(|rest| rest.starts_with(|ch: char| ch.is_ascii_uppercase()))
            })
    })?;
    let path = if parent.is_empty() {
        name.clone()
    } else {
        format!("{parent}.{name}")
    };
    def.by_path.get(&path)
}

/// A primitive's extension member `_x` follows `x`.
fn base_key(key: &str) -> &str {
    key.strip_prefix('_').unwrap_or(key)
}

/// The last name of a full path, choice suffix removed (`Patient.deceased[x]` → `deceased`).
fn element_name(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.strip_suffix("[x]").unwrap_or(last)
}

/// `Patient.contact` → `contact` (paths in `TypeDef` are relative to the type).
fn relative_path(full: &str) -> String {
    full.split_once('.')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default()
}

fn tag_subsetted(obj: &mut Map<String, Value>) {
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    let tags = m.entry("tag").or_insert_with(|| json!([]));
    if let Some(t) = tags.as_array_mut() {
        let present = t.iter().any(|tag| {
            tag.get("system").and_then(Value::as_str) == Some(SUBSETTED_SYSTEM)
                && tag.get("code").and_then(Value::as_str) == Some("SUBSETTED")
        });
        if !present {
            t.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p1",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1"}],
            "name": [{"family": "Lévêque"}],
            "gender": "female", "_gender": {"extension": []},
            "deceasedBoolean": false,
            "maritalStatus": {"text": "M"},
            "contact": [{"name": {"family": "X"}, "gender": "male"}],
            "communication": [{"language": {"text": "fr"}, "preferred": true}]
        })
    }

    #[test]
    fn summary_keeps_summary_elements_only() {
        let out = apply(patient(), &Subset::Summary);
        let o = out.as_object().unwrap();
        for k in [
            "id",
            "identifier",
            "name",
            "gender",
            "_gender",
            "deceasedBoolean",
            "meta",
        ] {
            assert!(o.contains_key(k), "{k} missing");
        }
        for k in ["text", "maritalStatus", "contact", "communication"] {
            assert!(!o.contains_key(k), "{k} kept");
        }
        assert_eq!(out["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn summary_recurses_into_backbone_elements() {
        // Patient.link and Patient.link.other/type are summary elements.
        let p = json!({"resourceType": "Patient", "link": [{"other": {"reference": "Patient/2"}, "type": "seealso", "extension": [{"url": "u", "valueString": "s"}]}]});
        let out = apply(p, &Subset::Summary);
        assert_eq!(out["link"][0]["type"], "seealso");
        assert!(out["link"][0].get("extension").is_none());
    }

    #[test]
    fn text_and_data() {
        let t = apply(patient(), &Subset::Text);
        assert!(t.get("text").is_some() && t.get("name").is_none());
        let d = apply(patient(), &Subset::Data);
        assert!(d.get("text").is_none() && d.get("contact").is_some());
    }

    #[test]
    fn elements_keep_mandatory_ones() {
        let doc = json!({"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"url": "Binary/1"}}], "date": "2024-01-01T00:00:00Z"});
        let out = apply(doc, &Subset::elements("DocumentReference.date"));
        assert!(out.get("status").is_some() && out.get("content").is_some());
        assert!(out.get("date").is_some());
        let out = apply(patient(), &Subset::elements("name"));
        assert!(out.get("gender").is_none() && out.get("name").is_some());
    }
}
