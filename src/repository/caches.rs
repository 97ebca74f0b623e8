//! caches: what the repository remembers between requests (each bounded, each checked
//! against the database before it is trusted).

use std::sync::Arc;

use crate::consent::PatientRules;

/// The keys of notices this process knows are recorded (so that a professional's every
/// read does not try to record their first access again). Bounded: forgotten keys are
/// only tried again, the table keeps them once.
#[derive(Default)]
pub struct Recorded(std::sync::Mutex<std::collections::HashSet<String>>);

impl Recorded {
    pub(super) fn seen(&self, key: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    pub(super) fn remember(&self, key: &str) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= 100_000 {
            set.clear();
        }
        set.insert(key.to_string());
    }
}

/// What was last read under a stamp (a patient's rules, a professional's professions),
/// trusted only while the stamp stored is the same (bounded: emptied when full, so that a
/// large record set costs a re-read, not memory).
pub struct Stamped<T>(std::sync::Mutex<std::collections::HashMap<String, (String, Arc<T>)>>);

impl<T> Default for Stamped<T> {
    fn default() -> Self {
        Stamped(Default::default())
    }
}

const STAMPED_MAX: usize = 50_000;

impl<T> Stamped<T> {
    pub(super) fn get(&self, key: &str, stamp: &str) -> Option<Arc<T>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(s, _)| s == stamp)
            .map(|(_, r)| r.clone())
    }

    pub(super) fn put(&self, key: &str, stamp: String, value: Arc<T>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= STAMPED_MAX {
            map.clear();
        }
        map.insert(key.to_string(), (stamp, value));
    }
}

/// Patients' rules as last read, with the stamp they were read at.
pub type RulesCache = Stamped<PatientRules>;

/// Professionals' professions (codes of the matrice's system) as last read.
pub type ProfessionsCache = Stamped<Vec<String>>;
