//! consent: the patient's rules, as data, and what they allow. Pure: no storage, no HTTP,
//! no clock (the request brings `now`). The access point (`crate::access`) gathers the facts
//! (a patient's [`PatientRules`], the professional's professions, a document's labels) and
//! asks [`decide`]; the repository loads them from storage.
//!
//! The rules (issue 5, `../shared/domain.md` §1 and §4), with the product choices made where
//! the sources are silent (each is also an entry of `tests/api/consent_oracle.rs`):
//! - the holder sees their whole record except `INVISIBLE_PATIENT` documents filed less than
//!   a calendar month ago (AC5); a legal representative sees what the holder sees minus
//!   `INVISIBLE_REPRESENTANTS_LEGAUX` (AC8);
//! - a professional sees a patient's record when authorised (a permit Consent), the patient's
//!   médecin traitant (`Patient.generalPractitioner`), a holder of equivalent rights, or in a
//!   declared emergency (BTG with a reason, unless the patient objected; SAMU regulation,
//!   unless the patient expressly objected) — never when blocked (a deny wins over
//!   everything, emergencies and authorship included);
//! - within the record, documents labelled `MASQUE_PS` only for the médecin traitant and
//!   holders of equivalent rights (`MASQUE_PSOCIAL` likewise for social-sector professions),
//!   and document types only as the matrice d'habilitation allows the profession;
//! - the author of a document always sees that document (the issue's rule: "and only it,
//!   unless authorised"), matrix and masks notwithstanding — unless blocked.

pub mod matrix;
pub mod profile;

use serde_json::Value;
use std::collections::BTreeSet;

pub use matrix::Matrix;

pub const V3_CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
/// TRE_A07's OID (ANS terminology IG), as a system URI.
pub const TRE_A07_OID: &str = "urn:oid:1.2.250.1.213.1.1.4.13";

/// Whether `system` names TRE_A07: its canonical URL, its OID, or its NOS page.
pub fn is_tre_a07(system: &str) -> bool {
    let s = system.trim_end_matches('/');
    s == TRE_A07
        || s == TRE_A07_OID
        || s.strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .is_some_and(|rest| {
                rest == "mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument"
                    || rest == &TRE_A07["https://".len()..]
            })
}

pub const MASQUE_PS: &str = "MASQUE_PS";
pub const MASQUE_PSOCIAL: &str = "MASQUE_PSOCIAL";
pub const INVISIBLE_PATIENT: &str = "INVISIBLE_PATIENT";
pub const INVISIBLE_REPRESENTANTS_LEGAUX: &str = "INVISIBLE_REPRESENTANTS_LEGAUX";
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// The national identifier of health professionals (IDNPS: RPPS or ADELI based).
pub const IDNPS: &str = "urn:oid:1.2.250.1.71.4.2.1";
pub const INS_NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
pub const INS_NIA: &str = "urn:oid:1.2.250.1.213.1.4.9";

/// How long a declared emergency (BTG or SAMU regulation) opens a record. domain.md gives no
/// figure: a product choice, the same as the oracle's.
pub const EMERGENCY_WINDOW_US: i64 = 4 * 3600 * 1_000_000;

/// A period during which a rule is in effect (FHIR Period: both ends inclusive, either
/// absent), in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl Period {
    pub fn contains(&self, now: i64) -> bool {
        self.start.is_none_or(|s| s <= now) && self.end.is_none_or(|e| now <= e)
    }
}

/// What one active Consent says (Carnet's profile: one top-level provision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `permit` for a professional: authorisation to read the record, given by the patient,
    /// by a legal representative, or declared by the professional (the care team).
    Authorise { practitioner: String, by: Grantor },
    /// `permit` for a professional with `securityLabel` MASQUE_PS: the médecin traitant's view.
    EquivalentRights { practitioner: String },
    /// `deny` for a professional: blocked.
    Block { practitioner: String },
    /// `deny` with purpose BTG: no emergency access.
    ObjectEmergency,
    /// `deny` with purpose ETREAT: no SAMU regulation access either.
    ObjectRegulation,
    /// `permit` for a RelatedPerson with role GUARD: a legal representative.
    Guardian { related_person: String },
    /// `permit` with purpose BTG, no actor: emergency access allowed.
    AllowEmergency,
    /// `deny` with no actor and no purpose: the whole record visible to the patient (and
    /// their legal representatives) only, emergencies included.
    MaskEverything,
}

/// Who authorised a professional (`Consent.performer`, which Carnet sets on every write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantor {
    /// The patient themself (or a Consent written before Carnet recorded performers).
    Holder,
    /// A legal representative: the professional sees what the representative sees (no
    /// INVISIBLE_REPRESENTANTS_LEGAUX document).
    Representative,
    /// The professional, recording that the patient was informed and did not object (AC1).
    CareTeam,
}

/// A rule and when it is in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    pub rule: Rule,
    pub period: Period,
    /// The Consent it comes from (for traces).
    pub consent: String,
}

/// Everything that decides who sees one patient's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientRules {
    pub patient: String,
    /// `Patient.generalPractitioner` (Practitioner ids).
    pub medecins_traitants: Vec<String>,
    pub provisions: Vec<Provision>,
    /// The INS of each legal representative (from the RelatedPerson a Guardian rule names),
    /// with when the guardianship is in effect.
    pub guardians: Vec<(Vec<String>, Period)>,
    /// The deployment's default for emergency access when the patient said nothing:
    /// true opens it unless the patient objected (article L1111-17), false only if the
    /// patient allowed it (the seed's "si l'assuré l'a autorisé").
    pub emergency_by_default: bool,
}

impl PatientRules {
    fn any(&self, now: i64, f: impl Fn(&Rule) -> bool) -> bool {
        self.provisions
            .iter()
            .any(|p| p.period.contains(now) && f(&p.rule))
    }

    pub fn is_blocked(&self, practitioner: &str, now: i64) -> bool {
        self.any(
            now,
            |r| matches!(r, Rule::Block { practitioner: p } if p == practitioner),
        )
    }

    pub fn is_medecin_traitant(&self, practitioner: &str) -> bool {
        self.medecins_traitants.iter().any(|p| p == practitioner)
    }

    pub fn has_equivalent_rights(&self, practitioner: &str, now: i64) -> bool {
        self.any(
            now,
            |r| matches!(r, Rule::EquivalentRights { practitioner: p } if p == practitioner),
        )
    }

    pub fn is_authorised(&self, practitioner: &str, now: i64) -> bool {
        self.any(
            now,
            |r| matches!(r, Rule::Authorise { practitioner: p, .. } if p == practitioner),
        )
    }

    /// Authorised otherwise than by a legal representative alone.
    pub fn is_authorised_beyond_representatives(&self, practitioner: &str, now: i64) -> bool {
        self.any(now, |r| {
            matches!(r, Rule::Authorise { practitioner: p, by } if p == practitioner
                && *by != Grantor::Representative)
        })
    }

    pub fn objects_to_emergency(&self, now: i64) -> bool {
        self.any(now, |r| matches!(r, Rule::ObjectEmergency))
    }

    /// Whether a professional may break the glass: never under an objection; else when the
    /// patient allowed it, or by the deployment's default.
    pub fn allows_emergency(&self, now: i64) -> bool {
        !self.objects_to_emergency(now)
            && (self.emergency_by_default || self.any(now, |r| matches!(r, Rule::AllowEmergency)))
    }

    /// Whether the whole record is visible to the patient (and representatives) only.
    pub fn masks_everything(&self, now: i64) -> bool {
        self.any(now, |r| matches!(r, Rule::MaskEverything))
    }

    pub fn objects_to_regulation(&self, now: i64) -> bool {
        self.any(now, |r| matches!(r, Rule::ObjectRegulation))
    }

    /// Whether a person with these INS values is a legal representative at `now`.
    pub fn represented_by(&self, ins: &[String], now: i64) -> bool {
        self.guardians
            .iter()
            .any(|(g, period)| period.contains(now) && g.iter().any(|i| ins.contains(i)))
    }

    /// The RelatedPersons whose identifiers make the guardians (to load).
    pub fn guardian_related_persons(&self) -> impl Iterator<Item = &str> {
        self.provisions.iter().filter_map(|p| match &p.rule {
            Rule::Guardian { related_person } => Some(related_person.as_str()),
            _ => None,
        })
    }
}

/// Why a professional is asking: from the access token (`purpose_of_use`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Normal,
    /// Break the glass, with the written reason, declared at the token's issue, for one
    /// patient (the token's patient in context): it opens no other record.
    Emergency {
        reason: String,
        declared_at: i64,
        patient: Option<String>,
    },
    /// SAMU regulation (ETREAT with the regulation role), for the patient in context.
    Regulation {
        declared_at: i64,
        patient: Option<String>,
    },
    /// A purpose that cannot be honoured (BTG without a reason, ETREAT without the role):
    /// refused outright, since it could not be traced as the law asks.
    Invalid(String),
}

/// Who is looking, as the rules see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The patient themself.
    Holder { patient: String },
    /// A person (by their own INS) acting for a patient as legal representative.
    Representative { person: String, ins: Vec<String> },
    /// A health professional: Practitioner id, professions (TRE_G15 codes), purpose.
    Professional {
        id: String,
        professions: Vec<String>,
        purpose: Purpose,
    },
}

/// The facts of one resource the rules look at.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// Security labels as a set of (system, code): `securityLabel` of a DocumentReference,
    /// `meta.security` of anything.
    pub labels: BTreeSet<(String, String)>,
    /// Practitioner ids named as the resource's author (DocumentReference.author,
    /// Communication.sender), and whether the patient side authored it.
    pub authors: Vec<String>,
    /// DocumentReference.type codes (system, code), for the matrix; None for other types.
    pub document_types: Option<Vec<(String, String)>>,
    /// When Carnet recorded the first version (INVISIBLE_PATIENT runs from it).
    pub filed_at: Option<i64>,
}

impl Subject {
    pub fn has(&self, code: &str) -> bool {
        self.labels
            .contains(&(TRE_A07.to_string(), code.to_string()))
    }

    /// The facts of `resource` (of `rtype`); `filed_at` is filled by the caller.
    pub fn of(rtype: &str, resource: &Value) -> Subject {
        let mut labels = BTreeSet::new();
        let codings = resource
            .pointer("/meta/security")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(
                resource
                    .get("securityLabel")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|cc| {
                        cc.get("coding")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                    }),
            );
        for c in codings {
            if let (Some(s), Some(code)) = (
                c.get("system").and_then(Value::as_str),
                c.get("code").and_then(Value::as_str),
            ) {
                // TRE_A07 under any of its names (its OID, its NOS page) is TRE_A07: a
                // label the rules did not recognise would hide nothing.
                let s = if is_tre_a07(s) { TRE_A07 } else { s };
                labels.insert((s.to_string(), code.to_string()));
            }
        }
        let refs = |path: &str| -> Vec<String> {
            let v = resource.get(path);
            let items: Vec<&Value> = match v {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(o) => vec![o],
                None => vec![],
            };
            items
                .into_iter()
                .filter_map(|r| r.get("reference").and_then(Value::as_str))
                .filter_map(|r| practitioner_id(r).map(str::to_string))
                .collect()
        };
        let authors = match rtype {
            "DocumentReference" => refs("author"),
            "Communication" => refs("sender"),
            _ => Vec::new(),
        };
        let document_types = (rtype == "DocumentReference").then(|| {
            resource
                .pointer("/type/coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        c.get("system")?.as_str()?.to_string(),
                        c.get("code")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        });
        Subject {
            labels,
            authors,
            document_types,
            filed_at: None,
        }
    }
}

/// `Practitioner/X` (or an absolute URL ending so) → `X`.
pub fn practitioner_id(reference: &str) -> Option<&str> {
    let (_, rest) = reference.rsplit_once("Practitioner/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// What the rules say about a whole record, for a professional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordAccess {
    /// Open, on these grounds (for traces and notifications).
    Open(Vec<Basis>),
    Closed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basis {
    MedecinTraitant,
    EquivalentRights,
    Authorised,
    Emergency,
    Regulation,
}

/// Whether the professional `id` may open the record of the patient `rules` describes.
pub fn record_access(rules: &PatientRules, id: &str, purpose: &Purpose, now: i64) -> RecordAccess {
    if rules.is_blocked(id, now) {
        return RecordAccess::Closed("the patient has blocked this professional".into());
    }
    if let Purpose::Invalid(why) = purpose {
        return RecordAccess::Closed(why.clone());
    }
    let this_record = |p: &Option<String>| p.as_deref() == Some(rules.patient.as_str());
    if rules.masks_everything(now) {
        // Told like a record without the grounds the request claims: it does not tell that
        // a mask exists.
        return RecordAccess::Closed(closed_because(
            purpose,
            this_record(purpose_patient(purpose)),
        ));
    }
    let mut bases = Vec::new();
    if rules.is_medecin_traitant(id) {
        bases.push(Basis::MedecinTraitant);
    }
    if rules.has_equivalent_rights(id, now) {
        bases.push(Basis::EquivalentRights);
    }
    if rules.is_authorised(id, now) {
        bases.push(Basis::Authorised);
    }
    match purpose {
        Purpose::Emergency {
            declared_at,
            patient,
            ..
        } if this_record(patient)
            && rules.allows_emergency(now)
            && *declared_at <= now
            && now < declared_at + EMERGENCY_WINDOW_US =>
        {
            bases.push(Basis::Emergency)
        }
        Purpose::Regulation {
            declared_at,
            patient,
        } if this_record(patient)
            && !rules.objects_to_regulation(now)
            && *declared_at <= now
            && now < declared_at + EMERGENCY_WINDOW_US =>
        {
            bases.push(Basis::Regulation)
        }
        _ => {}
    }
    if bases.is_empty() {
        RecordAccess::Closed(closed_because(
            purpose,
            this_record(purpose_patient(purpose)),
        ))
    } else {
        RecordAccess::Open(bases)
    }
}

static NONE: Option<String> = None;

/// The patient an emergency was declared for (None for a normal access).
fn purpose_patient(purpose: &Purpose) -> &Option<String> {
    match purpose {
        Purpose::Emergency { patient, .. } | Purpose::Regulation { patient, .. } => patient,
        _ => &NONE,
    }
}

/// Why a record is closed to a professional without grounds, as the request's purpose
/// says it.
fn closed_because(purpose: &Purpose, this_record: bool) -> String {
    match purpose {
        Purpose::Emergency { .. } | Purpose::Regulation { .. } if !this_record => {
            "an emergency access opens the record of the patient it was declared for only".into()
        }
        Purpose::Emergency { .. } => {
            "the patient has not allowed emergency access to their record".into()
        }
        Purpose::Regulation { .. } => {
            "the patient expressly objected to access by SAMU regulation".into()
        }
        _ => "the patient has not authorised this professional".into(),
    }
}

/// The answer for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Visible,
    /// Refused: `hidden` when admitting the resource exists would itself leak (a masked
    /// document), otherwise a plain refusal (403 on a direct read).
    Refused {
        why: String,
        hidden: bool,
    },
}

fn refused(why: &str, hidden: bool) -> Decision {
    Decision::Refused {
        why: why.to_string(),
        hidden,
    }
}

/// Whether `viewer` sees `subject`, a resource of the record `rules` describes, at `now`.
pub fn decide(
    viewer: &Viewer,
    rules: &PatientRules,
    subject: &Subject,
    matrix: &Matrix,
    now: i64,
) -> Decision {
    let invisible_to_patient = || {
        subject.has(INVISIBLE_PATIENT)
            && subject
                .filed_at
                .is_none_or(|filed| now < add_one_month_us(filed))
    };
    match viewer {
        Viewer::Holder { patient } => {
            if *patient != rules.patient {
                return refused("another patient's record", true);
            }
            if invisible_to_patient() {
                return refused("awaiting the announcement consultation", true);
            }
            Decision::Visible
        }
        Viewer::Representative { ins, .. } => {
            if !rules.represented_by(ins, now) {
                return refused("not a legal representative of this patient", true);
            }
            if subject.has(INVISIBLE_REPRESENTANTS_LEGAUX) || invisible_to_patient() {
                return refused("hidden from legal representatives", true);
            }
            Decision::Visible
        }
        Viewer::Professional {
            id,
            professions,
            purpose,
        } => {
            if rules.is_blocked(id, now) {
                return refused("the patient has blocked this professional", false);
            }
            if let Purpose::Invalid(why) = purpose {
                return refused(why, false);
            }
            if rules.masks_everything(now) {
                if let RecordAccess::Closed(why) = record_access(rules, id, purpose, now) {
                    return refused(&why, false);
                }
            }
            if subject.authors.iter().any(|a| a == id) {
                return Decision::Visible;
            }
            let bases = match record_access(rules, id, purpose, now) {
                RecordAccess::Open(b) => b,
                RecordAccess::Closed(why) => return refused(&why, false),
            };
            let privileged = bases
                .iter()
                .any(|b| matches!(b, Basis::MedecinTraitant | Basis::EquivalentRights));
            if subject.has(MASQUE_PS) && !privileged {
                return refused("masked by the patient", true);
            }
            // Authorised by a legal representative alone: what the representative sees.
            let through_representative_only = bases.iter().all(|b| *b == Basis::Authorised)
                && !rules.is_authorised_beyond_representatives(id, now);
            if subject.has(INVISIBLE_REPRESENTANTS_LEGAUX) && through_representative_only {
                return refused("hidden from legal representatives", true);
            }
            if subject.has(MASQUE_PSOCIAL) && !privileged && matrix.is_social(professions) {
                return refused("masked to social-sector professionals", true);
            }
            if let Some(types) = &subject.document_types {
                if !matrix.allows_any(professions, types) {
                    return refused(
                        "the matrice d'habilitation does not let this profession read this \
                         document type",
                        false,
                    );
                }
            }
            Decision::Visible
        }
    }
}

/// `t` plus one calendar month (UTC): the same day of the next month, or that month's last
/// day when the day does not exist there (31 January → 28/29 February).
pub fn add_one_month_us(t: i64) -> i64 {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp_nanos(t as i128 * 1000) else {
        return i64::MAX;
    };
    let (y, m) = if dt.month() == time::Month::December {
        (dt.year() + 1, time::Month::January)
    } else {
        (dt.year(), dt.month().next())
    };
    let day = dt.day().min(m.length(y));
    let date = time::Date::from_calendar_date(y, m, day).expect("valid date");
    let next = dt.replace_date(date);
    (next.unix_timestamp_nanos() / 1000) as i64
}

/// The code system of Carnet's notices to the patient (`Communication.category`).
pub const NOTICE_SYSTEM: &str = "urn:carnet:notice";

/// Whether `resource` is one of Carnet's notices (a Communication it wrote to the patient).
pub fn is_notice(resource: &Value) -> bool {
    resource.get("resourceType").and_then(Value::as_str) == Some("Communication")
        && resource
            .get("category")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("coding").and_then(Value::as_array))
            .flatten()
            .any(|c| c.get("system").and_then(Value::as_str) == Some(NOTICE_SYSTEM))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PatientRules {
        PatientRules {
            patient: "p".into(),
            medecins_traitants: vec!["mt".into()],
            provisions: vec![
                Provision {
                    rule: Rule::Authorise {
                        practitioner: "a".into(),
                        by: Grantor::Holder,
                    },
                    period: Period::default(),
                    consent: "c1".into(),
                },
                Provision {
                    rule: Rule::Block {
                        practitioner: "mt".into(),
                    },
                    period: Period {
                        start: Some(100),
                        end: Some(200),
                    },
                    consent: "c2".into(),
                },
            ],
            guardians: vec![],
            emergency_by_default: true,
        }
    }

    fn pro(id: &str) -> Viewer {
        Viewer::Professional {
            id: id.into(),
            professions: vec!["10".into()],
            purpose: Purpose::Normal,
        }
    }

    #[test]
    fn a_block_wins_only_while_in_effect() {
        let m = Matrix::builtin();
        let s = Subject::default();
        assert_eq!(decide(&pro("mt"), &rules(), &s, m, 50), Decision::Visible);
        assert!(matches!(
            decide(&pro("mt"), &rules(), &s, m, 150),
            Decision::Refused { hidden: false, .. }
        ));
        assert_eq!(decide(&pro("a"), &rules(), &s, m, 150), Decision::Visible);
        assert!(matches!(
            decide(&pro("x"), &rules(), &s, m, 150),
            Decision::Refused { .. }
        ));
    }

    #[test]
    fn masked_documents_need_the_medecin_traitant_view() {
        let m = Matrix::builtin();
        let mut s = Subject::default();
        s.labels.insert((TRE_A07.into(), MASQUE_PS.into()));
        assert_eq!(decide(&pro("mt"), &rules(), &s, m, 50), Decision::Visible);
        assert!(matches!(
            decide(&pro("a"), &rules(), &s, m, 50),
            Decision::Refused { hidden: true, .. }
        ));
        s.authors.push("z".into());
        assert_eq!(decide(&pro("z"), &rules(), &s, m, 50), Decision::Visible);
    }

    #[test]
    fn one_month_is_calendar() {
        let jan31 = time::macros::datetime!(2026-01-31 10:00 UTC);
        let feb28 = time::macros::datetime!(2026-02-28 10:00 UTC);
        let us = |d: time::OffsetDateTime| (d.unix_timestamp_nanos() / 1000) as i64;
        assert_eq!(add_one_month_us(us(jan31)), us(feb28));
        let dec15 = time::macros::datetime!(2026-12-15 00:00 UTC);
        let jan15 = time::macros::datetime!(2027-01-15 00:00 UTC);
        assert_eq!(add_one_month_us(us(dec15)), us(jan15));
    }
}
