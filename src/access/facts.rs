//! facts: what the access point needs to know besides the request and the resource (a
//! patient's rules, a professional's professions, the document a Binary belongs to…), and
//! the trail of decisions it made (for the AuditEvents).
//!
//! The access point stays pure: it says what it [`Need`]s, the repository's [`Loader`] loads
//! it into [`Facts`], and the decision reads only from there.

use crate::consent::{Basis, PatientRules};
use crate::resource::StoredResource;
use std::collections::HashMap;
use std::sync::Arc;

/// Loads one fact into the facts (the repository does, from storage).
pub type Loader<'a> = dyn FnMut(&Need, &mut Facts) -> Result<(), crate::error::FhirError> + 'a;

/// A fact to load before deciding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Need {
    /// The rules of a patient's record (Consents, médecin traitant, guardians).
    Rules(String),
    /// A professional's professions (Practitioner id).
    Professional(String),
    /// The INS of a patient (a parent acting for a child is recognised by it).
    Ins(String),
    /// The current version of a resource (a Binary's document; the current labels that
    /// decide for every version).
    Current(String, String),
    /// When a resource's first version was written, and by whom.
    FiledAt(String, String),
    /// The live DocumentReferences whose content is this Binary (an id).
    DocumentsOf(String),
    /// Every version of a resource (a deleted resource's older versions are judged by the
    /// strictest labels it ever had).
    Versions(String, String),
}

/// One decision, for the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The patients whose record the resource is in (empty: not patient data).
    pub patients: Vec<String>,
    pub resource_type: String,
    pub id: String,
    pub allowed: bool,
    /// Refused in a way that must look like absence (404, not 403).
    pub hidden: bool,
    /// Why it was refused.
    pub why: Option<String>,
    /// On what grounds a professional had the record open.
    pub bases: Vec<Basis>,
    /// The resource's visibility labels (TRE_A07 codes): its traces carry them, so that a
    /// trace is as hidden as what it lists.
    pub labels: Vec<String>,
}

/// What has been loaded for this request, and what was decided.
#[derive(Debug, Default)]
pub struct Facts {
    pub(crate) rules: HashMap<String, Arc<PatientRules>>,
    pub(crate) professions: HashMap<String, Vec<String>>,
    pub(crate) ins: HashMap<String, Vec<String>>,
    pub(crate) current: HashMap<(String, String), Option<StoredResource>>,
    pub(crate) filed_at: HashMap<(String, String), Option<i64>>,
    /// Who wrote a resource's first version (`RequestContext::subject`).
    pub(crate) filed_by: HashMap<(String, String), Option<String>>,
    /// The DocumentReferences whose content a Binary is.
    pub(crate) documents_of: HashMap<String, Vec<String>>,
    /// The contents of every version of a resource (deletions left out).
    pub(crate) versions: HashMap<(String, String), Vec<String>>,
    /// The cache stamps read for this request (the loader's: a professional's stamp read
    /// with a patient's rules stamp spares a statement).
    pub stamps: HashMap<String, String>,
    pub trail: Vec<Decided>,
    /// What the request asked (`Type/id`, `Type?query`), for the trace a refusal leaves
    /// its requester.
    pub asked: Option<String>,
    /// Whether the request was answered (false: it failed, whatever the reason).
    pub answered: bool,
}

impl Facts {
    pub fn new() -> Facts {
        Facts::default()
    }

    pub fn put_rules(&mut self, patient: &str, rules: Arc<PatientRules>) {
        self.rules.insert(patient.to_string(), rules);
    }

    pub fn put_professions(&mut self, practitioner: &str, professions: Vec<String>) {
        self.professions
            .insert(practitioner.to_string(), professions);
    }

    pub fn put_ins(&mut self, patient: &str, ins: Vec<String>) {
        self.ins.insert(patient.to_string(), ins);
    }

    pub fn put_current(&mut self, rtype: &str, id: &str, current: Option<StoredResource>) {
        self.current
            .insert((rtype.to_string(), id.to_string()), current);
    }

    pub fn put_filed_at(&mut self, rtype: &str, id: &str, at: Option<i64>) {
        self.filed_at
            .insert((rtype.to_string(), id.to_string()), at);
    }

    pub fn put_filed_by(&mut self, rtype: &str, id: &str, by: Option<String>) {
        self.filed_by
            .insert((rtype.to_string(), id.to_string()), by);
    }

    pub fn put_documents_of(&mut self, binary: &str, documents: Vec<String>) {
        self.documents_of.insert(binary.to_string(), documents);
    }

    pub fn put_versions(&mut self, rtype: &str, id: &str, contents: Vec<String>) {
        self.versions
            .insert((rtype.to_string(), id.to_string()), contents);
    }
}
