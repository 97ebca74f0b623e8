//! patch: JSON Patch (RFC 6902) on a resource, and the PDSm rule of what a PATCH of a
//! DocumentReference may change (`status`, `securityLabel`, the archive extension).

use crate::error::FhirError;
use serde_json::Value;

/// The PDSm archive extension, which PATCH may set.
pub const IS_ARCHIVED: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived";

fn bad(msg: String) -> FhirError {
    FhirError::BadRequest(format!("JSON Patch: {msg}"))
}

/// The tokens of a JSON Pointer (`/a/0/b~1c` → `a`, `0`, `b/c`).
fn tokens(pointer: &str) -> Result<Vec<String>, FhirError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(bad(format!("'{pointer}' is not a JSON Pointer")));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, FhirError> {
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| bad(format!("no element at '{t}'")))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), FhirError> {
    let Some((last, init)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| bad(format!("index '{last}' is out of range")))?
            };
            a.insert(i, value);
        }
        _ => return Err(bad(format!("cannot add under a value at '{last}'"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, FhirError> {
    let Some((last, init)) = path.split_last() else {
        return Err(bad("cannot remove the whole resource".into()));
    };
    match parent(doc, init)? {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    }
    .ok_or_else(|| bad(format!("nothing to remove at '{last}'")))
}

/// Applies a JSON Patch document to `doc`; all or nothing.
///
/// The document may not grow past `max_elements` while the operations run (each `add`,
/// `replace` and `copy` counts what it brings in; a `copy` of the root doubles it).
pub fn apply(doc: &Value, patch: &Value, max_elements: usize) -> Result<Value, FhirError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| bad("the body must be an array of operations".into()))?;
    let mut out = doc.clone();
    let mut size = super::limits::measure(doc).elements;
    // Every value brought in counts: its elements toward max-elements, and its depth plus
    // where it lands toward the deepest storable resource (copying a value into itself
    // doubles its depth at each step, which would soon be too deep to clone or drop).
    let max_depth = 2 * super::limits::STORAGE_MAX_DEPTH;
    let mut grow = |value: &Value, at: &[String]| {
        let m = super::limits::measure(value);
        size = size.saturating_add(m.elements);
        if size > max_elements {
            Err(FhirError::TooCostly(format!(
                "JSON Patch: the resource would have more than {max_elements} elements (limit max-elements)"
            )))
        } else if at.len() + m.depth > max_depth {
            Err(FhirError::TooCostly(format!(
                "JSON Patch: the resource would nest more than {max_depth} levels (limit max-depth)"
            )))
        } else {
            Ok(())
        }
    };
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = tokens(op.get("path").and_then(Value::as_str).unwrap_or("-"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| bad(format!("'{name}' needs a value")))
        };
        let from = || tokens(op.get("from").and_then(Value::as_str).unwrap_or("-"));
        match name {
            "add" => {
                let v = value()?;
                grow(&v, &path)?;
                add(&mut out, &path, v)?
            }
            "remove" => {
                remove(&mut out, &path)?;
            }
            "replace" => {
                let v = value()?;
                grow(&v, &path)?;
                remove(&mut out, &path)?;
                add(&mut out, &path, v)?;
            }
            "move" => {
                let v = remove(&mut out, &from()?)?;
                if path.len() + super::limits::measure(&v).depth
                    > 2 * super::limits::STORAGE_MAX_DEPTH
                {
                    return Err(FhirError::TooCostly(
                        "JSON Patch: the resource would nest too deep (limit max-depth)".into(),
                    ));
                }
                add(&mut out, &path, v)?;
            }
            "copy" => {
                let source = parent(&mut out, &from()?)?;
                grow(source, &path)?;
                let v = source.clone();
                add(&mut out, &path, v)?;
            }
            "test" => {
                if *parent(&mut out, &path)? != value()? {
                    return Err(FhirError::Unprocessable(
                        "JSON Patch: a test operation failed".into(),
                    ));
                }
            }
            other => return Err(bad(format!("unknown operation '{other}'"))),
        }
    }
    Ok(out)
}

/// What PDSm lets a PATCH change: everything else of `before` and `after` must be equal.
pub fn check_pdsm_scope(before: &Value, after: &Value) -> Result<(), FhirError> {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
            o.remove("securityLabel");
            o.remove("meta");
            if let Some(Value::Array(exts)) = o.get_mut("extension") {
                exts.retain(|e| e.get("url").and_then(Value::as_str) != Some(IS_ARCHIVED));
                if exts.is_empty() {
                    o.remove("extension");
                }
            }
        }
        v
    };
    if strip(before) != strip(after) {
        return Err(FhirError::Unprocessable(
            "a PATCH of a DocumentReference may change only status, securityLabel and the \
             PDSm archive extension (PDSm); send a PUT for anything else"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_apply_in_order_or_not_at_all() {
        let doc = json!({"status": "current", "securityLabel": [{"text": "a"}]});
        let out = apply(
            &doc,
            &json!([{"op": "add", "path": "/securityLabel/-", "value": {"text": "b"}},
                {"op": "remove", "path": "/securityLabel/0"},
                {"op": "replace", "path": "/status", "value": "entered-in-error"}]),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"status": "entered-in-error", "securityLabel": [{"text": "b"}]})
        );
        assert!(apply(
            &doc,
            &json!([{"op": "remove", "path": "/nope"}]),
            usize::MAX
        )
        .is_err());
        assert!(apply(
            &doc,
            &json!([{"op": "test", "path": "/status", "value": "x"}]),
            usize::MAX
        )
        .is_err());
        assert!(check_pdsm_scope(&doc, &out).is_ok());
        let mut other = out.clone();
        other["subject"] = json!({"reference": "Patient/x"});
        assert!(check_pdsm_scope(&doc, &other).is_err());
    }

    #[test]
    fn a_patch_that_doubles_the_resource_stops_at_the_limit() {
        let doc = json!({"status": "current", "securityLabel": [{"text": "a"}]});
        let bomb: Vec<_> = (0..40)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
            .collect();
        let e = apply(&doc, &json!(bomb), 100_000).unwrap_err();
        assert!(e.to_string().contains("max-elements"), "{e}");
        // Copying a value into itself doubles its depth at each step.
        let mut deep = vec![json!({"op": "add", "path": "/x", "value": {"x": {}}})];
        let mut at = String::from("/x");
        for _ in 0..16 {
            at.push_str("/x");
            deep.push(json!({"op": "copy", "from": "/x", "path": at.clone()}));
        }
        let e = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || apply(&doc, &json!(deep), 100_000).map(|_| ()))
            .unwrap()
            .join()
            .expect("no stack overflow")
            .unwrap_err();
        assert!(e.to_string().contains("max-depth"), "{e}");
    }
}
