//! matrix: the matrice d'habilitation (profession × document type), read from
//! `fhir-profiles/carnet/matrice-habilitation.json` at build time. Data, not code: change the
//! table there.

use once_cell::sync::Lazy;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    profession_system: String,
    document_type_systems: Vec<String>,
    professions: Vec<ProfessionRow>,
}

#[derive(Debug, Deserialize)]
struct ProfessionRow {
    code: String,
    social: bool,
    allow: Allow,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Allow {
    All(String),
    Some(Vec<String>),
}

#[derive(Debug, Clone)]
struct Profession {
    social: bool,
    all: bool,
    allowed: HashSet<String>,
    denied: HashSet<String>,
}

/// Which document types each profession may read.
#[derive(Debug, Clone)]
pub struct Matrix {
    profession_system: String,
    type_systems: Vec<String>,
    professions: HashMap<String, Profession>,
}

static BUILTIN: Lazy<Matrix> = Lazy::new(|| {
    Matrix::from_json(include_str!(
        "../../fhir-profiles/carnet/matrice-habilitation.json"
    ))
    .expect("fhir-profiles/carnet/matrice-habilitation.json is valid")
});

impl Matrix {
    /// The table Carnet ships with.
    pub fn builtin() -> &'static Matrix {
        &BUILTIN
    }

    pub fn from_json(text: &str) -> Result<Matrix, String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut professions = HashMap::new();
        for p in file.professions {
            let (all, allowed) = match p.allow {
                Allow::All(s) if s == "*" => (true, HashSet::new()),
                Allow::All(s) => return Err(format!("allow must be \"*\" or a list, not {s}")),
                Allow::Some(list) => (false, list.into_iter().collect()),
            };
            professions.insert(
                p.code,
                Profession {
                    social: p.social,
                    all,
                    allowed,
                    denied: p.deny.into_iter().collect(),
                },
            );
        }
        Ok(Matrix {
            profession_system: file.profession_system,
            type_systems: file.document_type_systems,
            professions,
        })
    }

    /// The code system of the professions (TRE_G15).
    pub fn profession_system(&self) -> &str {
        &self.profession_system
    }

    /// Whether one of `professions` may read a document of these type codings.
    pub fn allows_any(&self, professions: &[String], types: &[(String, String)]) -> bool {
        let codes: Vec<&str> = types
            .iter()
            .filter(|(s, _)| self.type_systems.contains(s))
            .map(|(_, c)| c.as_str())
            .collect();
        professions.iter().any(|p| {
            let Some(rule) = self.professions.get(p) else {
                return false;
            };
            if codes.iter().any(|c| rule.denied.contains(*c)) {
                return false;
            }
            rule.all || codes.iter().any(|c| rule.allowed.contains(*c))
        })
    }

    /// Whether every one of `professions` is of the social sector (MASQUE_PSOCIAL applies).
    pub fn is_social(&self, professions: &[String]) -> bool {
        !professions.is_empty()
            && professions
                .iter()
                .all(|p| self.professions.get(p).is_some_and(|r| r.social))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(code: &str) -> Vec<(String, String)> {
        vec![("http://loinc.org".into(), code.into())]
    }

    #[test]
    fn the_shipped_table_reads_as_the_arrete_says() {
        let m = Matrix::builtin();
        let doctor = vec!["10".to_string()];
        let nurse = vec!["60".to_string()];
        let unknown = vec!["99".to_string()];
        assert!(m.allows_any(&doctor, &t("18748-4")));
        assert!(!m.allows_any(
            &doctor,
            &[("urn:carnet:document-type".into(), "ATTEST_RESIDENCE".into())]
        ));
        assert!(m.allows_any(&nurse, &t("87273-9")));
        assert!(!m.allows_any(&nurse, &t("18748-4")));
        assert!(!m.allows_any(&unknown, &t("87273-9")));
        assert!(m.is_social(&["93".to_string()]));
        assert!(!m.is_social(&doctor));
    }
}
