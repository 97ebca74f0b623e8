//! fhirpath: the small subset of FHIRPath that the R4 search parameters of Carnet's types
//! use, evaluated over a resource's JSON to find the values a parameter indexes.
//!
//! Supported (every form that occurs in their `expression`s):
//! - paths `Type.a.b.c` (arrays flattened; `a` also matches a choice `a[x]` such as
//!   `occurrenceDateTime`, remembering the type it was found as);
//! - `(Type.a as dateTime)`: only the choice of that type;
//! - `.where(resolve() is Patient)`: only references to that type;
//! - `.where(system='email')`: only elements whose member equals the literal.
//!
//! Anything else is refused at load time ([`Expr::parse`] returns None), so a parameter
//! that cannot be evaluated is never advertised.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// A member name.
    Member(String),
    /// `.where(resolve() is X)`
    ResolvesTo(String),
    /// `.where(name='literal')`
    MemberEquals(String, String),
}

/// One alternative of a search parameter expression, for one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    steps: Vec<Step>,
    /// `(… as dateTime)`: the choice type required of the last member.
    as_type: Option<String>,
}

/// A value found by an expression, with the FHIR type it was found as when the
/// element was a choice (`occurrenceDateTime` → `dateTime`).
#[derive(Debug, Clone, PartialEq)]
pub struct Found<'a> {
    pub value: &'a Value,
    pub choice_type: Option<String>,
}

impl Expr {
    /// Parses one alternative (`Patient.name.family`, `(Patient.deceased as dateTime)`…)
    /// if it starts with `resource_type` (or `Resource`/`DomainResource`).
    pub fn parse(text: &str, resource_type: &str) -> Option<Expr> {
        let mut text = text.trim();
        let mut as_type = None;
        if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            let (path, ty) = inner.split_once(" as ")?;
            as_type = Some(ty.trim().to_string());
            text = path.trim();
        }
        let rest = text
            .strip_prefix(resource_type)
            .or_else(|| text.strip_prefix("Resource"))
            .or_else(|| text.strip_prefix("DomainResource"))?;
        if !rest.starts_with('.') {
            return None;
        }
        let mut steps = Vec::new();
        let mut rest = &rest[1..];
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("where(") {
                let close = after.find(')')?;
                // `resolve() is X` contains "()" — find the matching close paren.
                let (cond, remainder) = if let Some(tail) = after.strip_prefix("resolve()") {
                    let end = tail.find(')')? + "resolve()".len();
                    (&after[..end], &after[end + 1..])
                } else {
                    (&after[..close], &after[close + 1..])
                };
                if let Some(t) = cond.strip_prefix("resolve() is ") {
                    steps.push(Step::ResolvesTo(t.trim().to_string()));
                } else {
                    let (name, lit) = cond.split_once('=')?;
                    let lit = lit.trim().strip_prefix('\'')?.strip_suffix('\'')?;
                    if !is_name(name.trim()) {
                        return None;
                    }
                    steps.push(Step::MemberEquals(name.trim().to_string(), lit.to_string()));
                }
                rest = remainder.strip_prefix('.').unwrap_or(remainder);
                if !remainder.is_empty() && !remainder.starts_with('.') {
                    return None;
                }
                continue;
            }
            let end = rest.find('.').unwrap_or(rest.len());
            let name = &rest[..end];
            if !is_name(name) {
                return None;
            }
            steps.push(Step::Member(name.to_string()));
            rest = if end < rest.len() {
                &rest[end + 1..]
            } else {
                ""
            };
        }
        if steps.is_empty() {
            return None;
        }
        Some(Expr { steps, as_type })
    }

    /// The values this expression selects in `resource`.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Found<'a>> {
        let mut current = vec![Found {
            value: resource,
            choice_type: None,
        }];
        let last_member = self
            .steps
            .iter()
            .rposition(|s| matches!(s, Step::Member(_)));
        for (i, step) in self.steps.iter().enumerate() {
            let mut next = Vec::new();
            for item in &current {
                match step {
                    Step::Member(name) => {
                        let Some(obj) = item.value.as_object() else {
                            continue;
                        };
                        let restrict = if Some(i) == last_member {
                            self.as_type.as_deref()
                        } else {
                            None
                        };
                        if let Some(v) = obj.get(name.as_str()) {
                            if restrict.is_none() {
                                push_flat(&mut next, v, None);
                            }
                        }
                        // A choice element: `occurrence` matches `occurrenceDateTime`.
                        for (key, v) in obj {
                            if let Some(suffix) = key.strip_prefix(name.as_str()) {
                                if is_type_suffix(suffix) {
                                    let ty = lower_first(suffix);
                                    if restrict.is_none_or(|r| r == ty) {
                                        push_flat(&mut next, v, Some(ty));
                                    }
                                }
                            }
                        }
                    }
                    Step::ResolvesTo(target) => {
                        if reference_type(item.value).as_deref() == Some(target.as_str()) {
                            next.push(item.clone());
                        }
                    }
                    Step::MemberEquals(name, lit) => {
                        if item.value.get(name.as_str()).and_then(Value::as_str)
                            == Some(lit.as_str())
                        {
                            next.push(item.clone());
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

fn push_flat<'a>(out: &mut Vec<Found<'a>>, v: &'a Value, choice_type: Option<String>) {
    match v {
        Value::Array(items) => out.extend(items.iter().filter(|x| !x.is_null()).map(|x| Found {
            value: x,
            choice_type: choice_type.clone(),
        })),
        Value::Null => {}
        other => out.push(Found {
            value: other,
            choice_type,
        }),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The resource type a Reference points to: its `type`, or the type in a relative
/// (`Patient/1`) or absolute (`https://…/Patient/1`) reference.
pub fn reference_type(reference: &Value) -> Option<String> {
    if let Some(t) = reference.get("type").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    let r = reference.get("reference").and_then(Value::as_str)?;
    let r = r.split("/_history/").next().unwrap_or(r);
    let mut parts = r.rsplit('/');
    let _id = parts.next()?;
    let ty = parts.next()?;
    if ty.starts_with(|c: char| c.is_ascii_uppercase()) {
        Some(ty.to_string())
    } else {
        None
    }
}

/// Whether `suffix` (after a choice element's name) names a FHIR data type, as in
/// `occurrenceDateTime` or `valueCodeableConcept`: a sibling such as `statusReason` or
/// `outcomeDesc` is another element, not a choice of `status` or `outcome`.
fn is_type_suffix(suffix: &str) -> bool {
    use super::definitions::DEFINITIONS;
    suffix.starts_with(|c: char| c.is_ascii_uppercase())
        && (DEFINITIONS.types.contains_key(suffix)
            || DEFINITIONS.primitives.contains_key(&lower_first(suffix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_forms_used_by_r4_search_parameters() {
        assert!(Expr::parse("Patient.name.family", "Patient").is_some());
        assert!(Expr::parse("Practitioner.name.family", "Patient").is_none());
        assert!(Expr::parse("(Patient.deceased as dateTime)", "Patient").is_some());
        assert!(Expr::parse(
            "DocumentReference.subject.where(resolve() is Patient)",
            "DocumentReference"
        )
        .is_some());
        assert!(Expr::parse("Patient.telecom.where(system='email')", "Patient").is_some());
        assert!(Expr::parse("Resource.meta.lastUpdated", "Patient").is_some());
        assert!(Expr::parse(
            "Patient.deceased.exists() and Patient.deceased != false",
            "Patient"
        )
        .is_none());
    }

    #[test]
    fn a_sibling_element_is_not_a_choice() {
        let imm = json!({"resourceType": "Immunization", "status": "not-done",
            "statusReason": {"coding": [{"code": "IMMUNE"}]}});
        let found = Expr::parse("Immunization.status", "Immunization")
            .unwrap()
            .evaluate(&imm);
        assert_eq!(found.len(), 1, "statusReason is not status[x]");
        assert_eq!(found[0].value, &json!("not-done"));
    }

    #[test]
    fn evaluates_paths_choices_and_filters() {
        let imm = json!({"resourceType": "Immunization", "occurrenceDateTime": "2024-01-02",
            "patient": {"reference": "Patient/1"}});
        let found = Expr::parse("Immunization.occurrence", "Immunization")
            .unwrap()
            .evaluate(&imm);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].choice_type.as_deref(), Some("dateTime"));
        let p = json!({"resourceType": "Patient", "name": [{"family": "A", "given": ["B", "C"]}, {"given": ["D"]}],
            "deceasedBoolean": true,
            "telecom": [{"system": "email", "value": "a@b.fr"}, {"system": "phone", "value": "01"}]});
        let given = Expr::parse("Patient.name.given", "Patient")
            .unwrap()
            .evaluate(&p);
        assert_eq!(
            given
                .iter()
                .map(|f| f.value.as_str().unwrap())
                .collect::<Vec<_>>(),
            vec!["B", "C", "D"]
        );
        assert!(Expr::parse("(Patient.deceased as dateTime)", "Patient")
            .unwrap()
            .evaluate(&p)
            .is_empty());
        let email = Expr::parse("Patient.telecom.where(system='email')", "Patient")
            .unwrap()
            .evaluate(&p);
        assert_eq!(email.len(), 1);
        assert_eq!(email[0].value["value"], "a@b.fr");
        let doc = json!({"resourceType": "DocumentReference", "subject": {"reference": "Group/1"}});
        assert!(Expr::parse(
            "DocumentReference.subject.where(resolve() is Patient)",
            "DocumentReference"
        )
        .unwrap()
        .evaluate(&doc)
        .is_empty());
        assert_eq!(
            reference_type(&json!({"reference": "https://x.fr/fhir/Patient/9/_history/2"}))
                .as_deref(),
            Some("Patient")
        );
    }
}
