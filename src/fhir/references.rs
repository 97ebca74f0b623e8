//! references: rewriting the references of a transaction's entries once their server ids
//! are known (`urn:uuid:…` fullUrls become `Type/id`).

use serde_json::Value;
use std::collections::HashMap;

/// Replaces every `reference` (and `Attachment.url`-style `urn:uuid:` strings in
/// `reference` members) found in `value` that names a key of `map` by its value.
pub fn rewrite(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference" {
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
