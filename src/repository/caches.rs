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

/// Patients' rules as last read, with the stamp they were read at (bounded: emptied when
/// full, so that a large record set costs a re-read, not memory).
#[derive(Default)]
pub struct RulesCache(
    std::sync::Mutex<std::collections::HashMap<String, (String, Arc<PatientRules>)>>,
);

const RULES_CACHE_MAX: usize = 50_000;

impl RulesCache {
    pub(super) fn get(&self, patient: &str, stamp: &str) -> Option<Arc<PatientRules>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(patient)
            .filter(|(s, _)| s == stamp)
            .map(|(_, r)| r.clone())
    }

    pub(super) fn put(&self, patient: &str, stamp: String, rules: Arc<PatientRules>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= RULES_CACHE_MAX {
            map.clear();
        }
        map.insert(patient.to_string(), (stamp, rules));
    }
}
