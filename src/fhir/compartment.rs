//! compartment: the Patient compartment, from the official CompartmentDefinition
//! (`fhir-profiles/r4/compartment-patient.json`): which reference parameters of each type
//! tie a resource to a patient. Compartment search and the patient-context access rule
//! both read it from here, so they cannot disagree.

use super::index::index_rows_of;
use super::search_params::{ParamType, REGISTRY};
use once_cell::sync::Lazy;
use serde_json::Value;
use std::collections::HashMap;

static PATIENT_PARAMS: Lazy<HashMap<String, Vec<String>>> = Lazy::new(|| {
    let def: Value = serde_json::from_str(include_str!(
        "../../fhir-profiles/r4/compartment-patient.json"
    ))
    .expect("compartment definition");
    def["resource"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let code = r["code"].as_str()?.to_string();
                    let params: Vec<String> = r["param"]
                        .as_array()?
                        .iter()
                        .filter_map(|p| p.as_str())
                        .filter(|p| {
                            REGISTRY.get(&code, p).map(|d| d.kind) == Some(ParamType::Reference)
                        })
                        .map(str::to_string)
                        .collect();
                    Some((code, params))
                })
                .collect()
        })
        .unwrap_or_default()
});

/// The reference parameters of `rtype` that place a resource in a patient's compartment
/// (empty when the type is not in the Patient compartment).
pub fn patient_params(rtype: &str) -> &'static [String] {
    PATIENT_PARAMS.get(rtype).map_or(&[], Vec::as_slice)
}

/// Whether `resource` (of `rtype`) is in the compartment of `Patient/patient_id`: the
/// patient itself, or a resource one of whose compartment parameters references it.
pub fn in_patient_compartment(
    rtype: &str,
    resource: &Value,
    patient_id: &str,
    base_url: &str,
) -> bool {
    if rtype == "Patient" {
        return resource.get("id").and_then(Value::as_str) == Some(patient_id);
    }
    let params = patient_params(rtype);
    if params.is_empty() {
        return false;
    }
    index_rows_of(rtype, resource, base_url, Some(params))
        .references
        .iter()
        .any(|(param, ty, id, _)| ty == "Patient" && id == patient_id && params.contains(param))
}

/// The ids of the patients `resource` (of `rtype`) references through its compartment
/// parameters (for `Patient` itself: its own id).
pub fn patients_referenced(rtype: &str, resource: &Value, base_url: &str) -> Vec<String> {
    if rtype == "Patient" {
        return resource
            .get("id")
            .and_then(Value::as_str)
            .map(|id| vec![id.to_string()])
            .unwrap_or_default();
    }
    let params = patient_params(rtype);
    let mut ids: Vec<String> = index_rows_of(rtype, resource, base_url, Some(params))
        .references
        .into_iter()
        .filter(|(param, ty, _, _)| ty == "Patient" && params.contains(param))
        .map(|(_, _, id, url)| if id.is_empty() { url } else { id })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn membership_follows_the_definition() {
        assert!(patient_params("DocumentReference").contains(&"subject".to_string()));
        assert!(patient_params("Practitioner").is_empty());
        let doc = json!({"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/p1"}, "content": [{"attachment": {}}]});
        assert!(in_patient_compartment(
            "DocumentReference",
            &doc,
            "p1",
            "http://x"
        ));
        assert!(!in_patient_compartment(
            "DocumentReference",
            &doc,
            "p2",
            "http://x"
        ));
        let p = json!({"resourceType": "Patient", "id": "p1"});
        assert!(in_patient_compartment("Patient", &p, "p1", "http://x"));
        assert!(!in_patient_compartment("Patient", &p, "p2", "http://x"));
    }
}
