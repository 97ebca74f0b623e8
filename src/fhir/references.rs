//! references: rewriting the references of a transaction's entries once their server ids
//! are known (`urn:uuid:…` fullUrls become `Type/id`).

use serde_json::Value;
use std::collections::HashMap;

/// Replaces every `reference` and `url` member (Reference.reference, Attachment.url…)
/// whose value is a key of `map` (a fullUrl such as `urn:uuid:…`) by its value.
pub fn rewrite(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference" || k == "url" {
                    if let Value::String(s) = v {
                        if let Some(target) = map.get(s.as_str()) {
                            *s = target.clone();
                        }
                        continue;
                    }
                }
                rewrite(v, map);
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite(v, map);
            }
        }
        _ => {}
    }
}

/// The first `reference` left pointing at a `urn:uuid:` (no entry of the Bundle has it).
pub fn dangling_urn(value: &Value) -> Option<String> {
    match value {
        Value::Object(obj) => obj.iter().find_map(|(k, v)| match v {
            Value::String(s) if k == "reference" && s.starts_with("urn:uuid:") => Some(s.clone()),
            other => dangling_urn(other),
        }),
        Value::Array(items) => items.iter().find_map(dangling_urn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_references_are_rewritten_and_others_kept() {
        let mut v = json!({"subject": {"reference": "urn:uuid:a"},
            "author": [{"reference": "Practitioner/1"}, {"reference": "urn:uuid:b"}]});
        let map = HashMap::from([
            ("urn:uuid:a".to_string(), "Patient/p1".to_string()),
            ("urn:uuid:b".to_string(), "Practitioner/p2".to_string()),
        ]);
        rewrite(&mut v, &map);
        assert_eq!(v["subject"]["reference"], "Patient/p1");
        assert_eq!(v["author"][0]["reference"], "Practitioner/1");
        assert_eq!(v["author"][1]["reference"], "Practitioner/p2");
    }
}
