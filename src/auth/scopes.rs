//! scopes: SMART App Launch scopes (v2 `patient/DocumentReference.rs`, `system/*.cruds`, and
//! the v1 `.read` / `.write` / `.*` forms), as granted in a token, and what they allow.
//! <https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>

use std::fmt;

/// Whose data a resource scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// `patient/`: the patient in context only.
    Patient,
    /// `user/`: whatever the user may see.
    User,
    /// `system/`: a backend service, no user.
    System,
}

/// One of the five SMART v2 permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }
}

/// A resource scope: context, type (`None` for `*`) and permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: ScopeContext,
    pub resource_type: Option<String>,
    /// Permission letters, in `cruds` order.
    pub permissions: String,
}

/// The scopes a token carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub resources: Vec<ResourceScope>,
    /// Every scope as granted, resource or not (`openid`, `fhirUser`, `launch/patient`…).
    pub granted: Vec<String>,
}

impl Scopes {
    /// Parses a space-separated scope string; scopes that are not resource scopes are kept in
    /// `granted` only, malformed resource scopes are dropped.
    pub fn parse(text: &str) -> Scopes {
        let mut out = Scopes::default();
        for s in text.split_whitespace() {
            if !out.granted.iter().any(|g| g == s) {
                out.granted.push(s.to_string());
            }
            if let Some(r) = resource_scope(s) {
                out.resources.push(r);
            }
        }
        out
    }

    pub fn has(&self, scope: &str) -> bool {
        self.granted.iter().any(|g| g == scope)
    }

    /// Whether some scope grants `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.resources.iter().any(|s| {
            s.resource_type
                .as_deref()
                .is_none_or(|t| t == resource_type)
                && s.permissions.contains(permission.letter())
        })
    }

    /// Whether a `user/` or `system/` scope grants `permission` on `resource_type` (a grant
    /// not bounded to the patient in context).
    pub fn allows_unbounded(&self, resource_type: &str, permission: Permission) -> bool {
        self.resources.iter().any(|s| {
            s.context != ScopeContext::Patient
                && s.resource_type
                    .as_deref()
                    .is_none_or(|t| t == resource_type)
                && s.permissions.contains(permission.letter())
        })
    }

    /// Whether any `patient/` scope is granted (those need a patient in context).
    pub fn has_patient_scopes(&self) -> bool {
        self.resources
            .iter()
            .any(|s| s.context == ScopeContext::Patient)
    }

    /// The scopes of `self` that `wanted` may keep (for narrowing on refresh or dev tokens):
    /// each wanted scope that is granted as is, or a resource scope covered by a granted one.
    pub fn narrow(&self, wanted: &Scopes) -> Scopes {
        let kept: Vec<String> = wanted
            .granted
            .iter()
            .filter(|w| {
                self.has(w)
                    || resource_scope(w).is_some_and(|r| {
                        self.resources.iter().any(|g| {
                            g.context == r.context
                                && (g.resource_type.is_none() || g.resource_type == r.resource_type)
                                && r.permissions.chars().all(|p| g.permissions.contains(p))
                        })
                    })
            })
            .cloned()
            .collect();
        Scopes::parse(&kept.join(" "))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.granted.join(" "))
    }
}

/// `patient/Observation.rs`, `user/*.cruds`, `system/Patient.read` (v1), or None.
fn resource_scope(s: &str) -> Option<ResourceScope> {
    let (context, rest) = s.split_once('/')?;
    let context = match context {
        "patient" => ScopeContext::Patient,
        "user" => ScopeContext::User,
        "system" => ScopeContext::System,
        _ => return None,
    };
    let (rtype, perms) = rest.split_once('.')?;
    // SMART v2 allows `?param=value` constraints after the permissions; Carnet does not
    // apply them, so such a scope is not granted at all rather than granted too widely.
    if perms.contains('?') {
        return None;
    }
    let permissions = match perms {
        "read" => "rs".to_string(),
        "write" => "cud".to_string(),
        "*" => "cruds".to_string(),
        p => {
            // v2: a non-empty subsequence of `cruds`, in that order.
            let mut order = "cruds".chars();
            if p.is_empty() || !p.chars().all(|c| order.by_ref().any(|o| o == c)) {
                return None;
            }
            p.to_string()
        }
    };
    let resource_type = match rtype {
        "*" => None,
        t if t.starts_with(|c: char| c.is_ascii_uppercase())
            && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Some(t.to_string())
        }
        _ => return None,
    };
    Some(ResourceScope {
        context,
        resource_type,
        permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_scopes() {
        let s = Scopes::parse("openid fhirUser launch/patient patient/DocumentReference.rs user/Patient.read system/*.cruds");
        assert!(s.has("openid") && s.has("launch/patient"));
        assert_eq!(s.resources.len(), 3);
        assert!(s.allows("DocumentReference", Permission::Search));
        assert!(
            s.allows("Immunization", Permission::Delete),
            "system/*.cruds"
        );
        let p = Scopes::parse("patient/DocumentReference.rs user/Patient.read");
        assert!(p.allows("Patient", Permission::Read) && p.allows("Patient", Permission::Search));
        assert!(!p.allows("Patient", Permission::Update));
        assert!(!p.allows("Immunization", Permission::Read));
        assert!(!p.allows("DocumentReference", Permission::Create));
    }

    #[test]
    fn malformed_scopes_grant_nothing() {
        for bad in [
            "patient/Patient.sr",
            "patient/Patient.x",
            "patient/Patient.",
            "patient/patient.rs",
            "admin/*.cruds",
            "patient/Observation.rs?category=laboratory",
        ] {
            assert!(Scopes::parse(bad).resources.is_empty(), "{bad}");
        }
    }

    #[test]
    fn narrowing_never_widens() {
        let granted = Scopes::parse("patient/*.rs offline_access");
        let n = granted.narrow(&Scopes::parse(
            "patient/Patient.r patient/Patient.cruds user/*.rs offline_access openid",
        ));
        assert_eq!(n.to_string(), "patient/Patient.r offline_access");
    }
}
