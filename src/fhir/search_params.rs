//! search_params: the R4 search parameters of Carnet's types, loaded from the official
//! definitions (`fhir-profiles/r4/search-parameters.json`), never hand-typed.
//!
//! A parameter is kept for a type only when every alternative of its expression that
//! applies to the type can be evaluated (see `fhirpath`); the rest are reported as
//! unsupported, and never advertised in the CapabilityStatement.

use once_cell::sync::Lazy;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

use super::fhirpath::Expr;
use super::resource_types::SUPPORTED;

const SEARCH_PARAMETERS_JSON: &str = include_str!("../../fhir-profiles/r4/search-parameters.json");

/// The R4 search parameter types Carnet indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Token,
    String,
    Date,
    Reference,
    Uri,
    Number,
    Quantity,
}

impl ParamType {
    fn from_code(code: &str) -> Option<ParamType> {
        Some(match code {
            "token" => ParamType::Token,
            "string" => ParamType::String,
            "date" => ParamType::Date,
            "reference" => ParamType::Reference,
            "uri" => ParamType::Uri,
            "number" => ParamType::Number,
            "quantity" => ParamType::Quantity,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SearchParam {
    pub code: String,
    pub kind: ParamType,
    /// The canonical URL of the definition (for the CapabilityStatement).
    pub url: String,
    /// The alternatives of the expression that apply to this type.
    pub exprs: Vec<Expr>,
    /// For reference parameters: the resource types it may point to.
    pub targets: Vec<String>,
}

/// The parameters AuditEvents are searched by: the access log's columns (an AuditEvent is
/// a trace of the log, not a resource of the generic store).
pub const AUDIT_EVENT_PARAMS: &[&str] = &[
    "patient", "agent", "entity", "date", "type", "subtype", "action", "outcome",
];

/// Parameters by resource type, then by code.
pub struct Registry {
    pub by_type: HashMap<String, BTreeMap<String, SearchParam>>,
    /// (type, code, why) of the definitions that could not be taken.
    pub unsupported: Vec<(String, String, String)>,
}

impl Registry {
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(resource_type)?.get(code)
    }
}

pub static REGISTRY: Lazy<Registry> = Lazy::new(|| {
    let bundle: Value =
        serde_json::from_str(SEARCH_PARAMETERS_JSON).expect("embedded search-parameters.json");
    let mut by_type: HashMap<String, BTreeMap<String, SearchParam>> = HashMap::new();
    let mut unsupported = Vec::new();
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    for entry in entries {
        let sp = &entry["resource"];
        let code = sp["code"].as_str().unwrap_or_default().to_string();
        let expression = sp["expression"].as_str().unwrap_or_default();
        let bases: Vec<&str> = sp["base"]
            .as_array()
            .map(|b| b.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let targets: Vec<String> = sp["target"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for rtype in SUPPORTED {
            let applies = bases.iter().any(|b| {
                b == rtype || *b == "Resource" || (*b == "DomainResource" && *rtype != "Binary")
            });
            if !applies {
                continue;
            }
            if *rtype == "AuditEvent"
                && !AUDIT_EVENT_PARAMS.contains(&code.as_str())
                && !["_id", "_lastUpdated"].contains(&code.as_str())
            {
                unsupported.push((
                    rtype.to_string(),
                    code.clone(),
                    "not kept by the access log".into(),
                ));
                continue;
            }
            let Some(kind) = sp["type"].as_str().and_then(ParamType::from_code) else {
                unsupported.push((
                    rtype.to_string(),
                    code.clone(),
                    format!("type {}", sp["type"]),
                ));
                continue;
            };
            let mine: Vec<&str> = expression
                .split(" | ")
                .map(str::trim)
                .filter(|alt| {
                    let a = alt.trim_start_matches('(');
                    a.starts_with(&format!("{rtype}."))
                        || a.starts_with("Resource.")
                        || a.starts_with("DomainResource.")
                })
                .collect();
            if mine.is_empty() {
                unsupported.push((rtype.to_string(), code.clone(), "no expression".into()));
                continue;
            }
            let exprs: Option<Vec<Expr>> = mine.iter().map(|alt| Expr::parse(alt, rtype)).collect();
            match exprs {
                Some(exprs) => {
                    by_type.entry(rtype.to_string()).or_default().insert(
                        code.clone(),
                        SearchParam {
                            code: code.clone(),
                            kind,
                            url: sp["url"].as_str().unwrap_or_default().to_string(),
                            exprs,
                            targets: targets.clone(),
                        },
                    );
                }
                None => unsupported.push((
                    rtype.to_string(),
                    code.clone(),
                    format!("expression {}", mine.join(" | ")),
                )),
            }
        }
    }
    Registry {
        by_type,
        unsupported,
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_the_issue_names_are_loaded_from_the_definitions() {
        let wanted: &[(&str, &[&str])] = &[
            (
                "Patient",
                &[
                    "identifier",
                    "family",
                    "given",
                    "name",
                    "birthdate",
                    "gender",
                    "general-practitioner",
                    "_id",
                    "_lastUpdated",
                    "_tag",
                    "_security",
                    "_profile",
                ],
            ),
            ("Practitioner", &["identifier", "name"]),
            (
                "DocumentReference",
                &[
                    "patient",
                    "subject",
                    "type",
                    "category",
                    "date",
                    "author",
                    "status",
                    "security-label",
                    "relatesto",
                    "contenttype",
                ],
            ),
            (
                "Immunization",
                &["patient", "date", "vaccine-code", "status"],
            ),
            (
                "Appointment",
                &["patient", "actor", "practitioner", "date", "status"],
            ),
            ("Consent", &["patient", "status", "category", "actor"]),
            (
                "AuditEvent",
                &[
                    "patient", "agent", "entity", "date", "type", "subtype", "action", "outcome",
                ],
            ),
            (
                "Communication",
                &[
                    "patient",
                    "subject",
                    "recipient",
                    "sender",
                    "sent",
                    "received",
                ],
            ),
        ];
        for (rtype, codes) in wanted {
            for code in *codes {
                assert!(
                    REGISTRY.get(rtype, code).is_some(),
                    "{rtype}.{code} missing; unsupported: {:?}",
                    REGISTRY
                        .unsupported
                        .iter()
                        .filter(|u| u.0 == *rtype)
                        .collect::<Vec<_>>()
                );
            }
        }
        assert_eq!(
            REGISTRY.get("Patient", "birthdate").unwrap().kind,
            ParamType::Date
        );
        assert!(
            REGISTRY.get("Patient", "deceased").is_none(),
            "an expression outside the subset is not taken"
        );
    }
}
