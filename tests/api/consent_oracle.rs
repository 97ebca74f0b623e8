//! An independent oracle of Carnet's access rules (issue 5, "consent engine"), for a property
//! test to compare the engine against.
//!
//! Written only from `../shared/domain.md` (rules AC1–AC10 and §4, quoted below as "AC#" or
//! "§4") and from the text of issue 5 (quoted as "Issue"). It was written WITHOUT reading
//! Carnet's access, repository or auth code, so that the engine and the oracle cannot share a
//! bug. It knows nothing of HTTP, FHIR search or storage: every channel the issue names (read,
//! vread of any version, history, search, _include/_revinclude, compartment search,
//! $everything, batch/transaction GETs, Binary content, count, an app acting for the user)
//! must reduce, for each document, to `decide()` below, and for the record as a whole to
//! `decide_record()`. Pure functions, no I/O, no clock: the request carries `now`.
//!
//! # Model
//!
//! - `Model`: the patients (each with their `PatientRules`: guardians, médecin traitant,
//!   authorisations, blocks, equivalent-rights grants, the emergency-access objection, the
//!   express objection to SAMU regulation, the "mask everything" mode), the professionals (id,
//!   profession code, social-sector flag), the matrice d'habilitation (`Matrix`, given as
//!   data) and the emergency-access duration.
//! - Every consent-like rule carries a `Validity` (Consent.status = active, and the
//!   provision's period), so a rule "takes effect on the very next request" (Issue) simply by
//!   being evaluated at `request.now`.
//! - `Document`: subject patient, author, type code, security labels as a SET of
//!   (system, code), filing time, status.
//! - `Request`: actor (patient / legal representative / professional), purpose of use
//!   (normal; BTG with a written reason; ETREAT with the regulation role, i.e. the SAMU
//!   regulating doctor), whether it comes through an app acting for the actor, and `now`.
//! - `decide_record()` → `RecordDecision` (Granted with the list of bases, or Denied with a
//!   reason); `decide()` → `Decision` (Visible, or Hidden with a reason).
//! - Also: `patient_should_be_notified` (AC5 two weeks), `emergency_notification_due` and
//!   `emergency_notification_recipients` (AC6), `may_file`, `may_delete`,
//!   `may_change_labels`, `may_write_consent`, and JSON helpers for `securityLabel`.
//!
//! Times are `i64` seconds since the Unix epoch, UTC.
//!
//! Not yet wired in: add `mod consent_oracle;` to tests/api/main.rs. The unit tests below
//! need neither the server nor a database.
//!
//! # Ambiguities and silences, and the choice this oracle makes
//!
//! Each is a point the engine author should confront; where the engine chooses otherwise,
//! either the engine or this oracle must change, deliberately.
//!
//! - A1 Médecin traitant and authorisation. AC4 says the médecin traitant "sees everything";
//!   AC1 deems the care team authorised. CHOICE: an active médecin-traitant designation gives
//!   record access by itself, without a separate authorisation Consent, and lifts MASQUE_PS.
//!   Several active designations are all honoured (the oracle does not enforce uniqueness).
//! - A2 "Professionals the patient granted the same rights" (Issue; AC4 "the same rights as
//!   the médecin traitant"). CHOICE: exactly the médecin traitant's access rights: record
//!   access without a separate authorisation, and masked documents visible. They do NOT
//!   receive the emergency notifications (AC6 names only "the holder and the médecin
//!   traitant"), and the matrix still applies to their own profession.
//! - A3 Matrix scope. CHOICE: the matrix applies to every professional access, médecin
//!   traitant, equivalent rights, BTG and SAMU regulation included (AC1 "access is limited to
//!   strictly necessary data"). Exception: a professional always passes the matrix for a
//!   document they authored. A (profession, type) pair missing from the matrix is denied.
//! - A4 AMENDED (2026-11-24, by the engine's author, deliberately): issue 5 says in its
//!   Consent-profile section "The author of a document always sees that document (and only
//!   it, unless authorised)", which the original choice below contradicts. `decide` now lets
//!   an author see their own document without record access, unless blocked, the emergency
//!   claim is malformed, the record is masked entirely or the professional is unknown. The
//!   unit test `author_without_authorisation_reads_back_own_document_only_and_may_delete`
//!   was changed to match. Original text:
//! - A4 Author without authorisation. AC2: "an authorisation covers consultation only;
//!   adding documents does not need it". CHOICE: reading back one's own document is
//!   consultation, so an author still needs record access (authorisation, médecin traitant,
//!   equivalent rights, emergency). The author's privilege covers only MASQUE_PS (AC4),
//!   MASQUE_PSOCIAL and the matrix, plus deletion (A20).
//! - A5 Block precedence. Issue: "a blocked professional gets nothing of that patient ... even
//!   if otherwise authorised". CHOICE: an active block beats everything: authorisation,
//!   médecin traitant, equivalent rights, authorship, BTG and SAMU regulation (AC6 says
//!   regulation mode skips the *authorisation* check, not the block). A blocked author cannot
//!   delete either. A blocked médecin traitant is not sent emergency notifications. A block
//!   does NOT stop filing (A24).
//! - A6 Unblocking. Issue: "Unblocking restores access." CHOICE: blocks and authorisations
//!   are independent Consents; a block never alters an authorisation, so when the block ends
//!   the authorisation (if still in effect) applies again. Unblocking alone grants nothing.
//! - A7 Confidentiality N/R/V. Neither the issue nor domain.md gives R or V an effect on
//!   access. CHOICE: no effect (N is only the "unmasked" placeholder of TD3.3a). Accepted
//!   under both `v3-Confidentiality` and the TRE_A08 system, which changes nothing.
//! - A8 Exactness of systems. Issue: "use the exact codes and systems". CHOICE: a TRE_A07
//!   label counts only with the exact system URL `…/TRE_A07-StatutVisibiliteDocument/FHIR/
//!   TRE-A07-StatutVisibiliteDocument`. The misspelt "Status…" system (seen in a PDSm
//!   example, §4), the OID form `urn:oid:1.2.250.1.213.1.1.4.13` and a code without a system
//!   are NOT recognised, so they do not mask. This is a privacy hazard: the engine should
//!   reject or normalise such labels on write. The property test should generate only exact
//!   systems, or expect rejection.
//! - A9 Other TRE_A07 codes. §4 also lists MASQUE_PSOCIAL ("masked to social-sector
//!   professionals") and MASQUE_PT ("masked to third parties"); the issue lists only three
//!   codes. CHOICE: MASQUE_PSOCIAL hides from professionals flagged `social_sector` (the flag
//!   is model data: domain.md names no profession codes), with the same exemptions as
//!   MASQUE_PS. MASQUE_PT is ignored because the model has no "third party" actor.
//! - A10 Legal representative. Issue: the representative "acts for the child, except on
//!   documents labelled INVISIBLE_REPRESENTANTS_LEGAUX". CHOICE: the representative sees
//!   exactly what the holder sees (MASQUE_PS included: masking is aimed at professionals),
//!   and is also subject to INVISIBLE_PATIENT (they exercise the holder's rights, AC8), minus
//!   INVISIBLE_REPRESENTANTS_LEGAUX. They may file, delete documents filed by the patient
//!   side, mask and unmask, and write Consents, like the holder. They may not add or remove
//!   INVISIBLE_REPRESENTANTS_LEGAUX.
//! - A11 Minors. The child logged in as holder (Actor::Patient) sees
//!   INVISIBLE_REPRESENTANTS_LEGAUX documents. The age at which the guardian's rights end is
//!   not in domain.md ("presumably 18"). CHOICE: not computed; the guardianship Consent's
//!   status and period decide. A representative is identified by a person id (whatever the
//!   login maps to), not by the RelatedPerson resource id.
//! - A12 "One month after filing" (AC5). CHOICE: a calendar month in UTC, same day of the
//!   next month, or the last day of that month when that day does not exist (French rule for
//!   month delays, e.g. 31 Jan → 28/29 Feb). The document is visible from exactly
//!   filing + 1 month on. "Filing" is the time Carnet recorded the document's first version,
//!   not DocumentReference.date: a client-supplied date could be backdated to skip the delay.
//!   The time zone is not specified; Europe/Paris would shift the boundary near midnight.
//! - A13 "After two weeks" (AC5). CHOICE: 14 × 24 h. `patient_should_be_notified(filing, now)`
//!   is true from filing + 14 days on, with no upper bound (whether it was already sent is
//!   the engine's state). The announcement consultation is signalled by the author removing
//!   INVISIBLE_PATIENT: `invisible_patient_notification_due` is false once the label is gone.
//! - A14 Emergency duration. domain.md does not give one. CHOICE: named constant
//!   `DEFAULT_EMERGENCY_ACCESS_DURATION` = 4 h, carried in `Model::emergency_access_duration`
//!   so the property test can align it with the engine's setting. Window
//!   [declared_at, declared_at + duration), half-open. The same duration applies to SAMU
//!   regulation (Issue: "likewise").
//! - A15 Two objections. AC6 distinguishes "unless that person objected beforehand" (BTG)
//!   from "unless the person expressly objected" (SAMU). CHOICE: two independent Consents.
//!   An objection to emergency access does not stop the SAMU regulator, and an express
//!   objection to regulation does not stop BTG.
//! - A16 Malformed emergency claims. CHOICE: BTG with an empty or blank reason, or ETREAT
//!   without the regulation role, is refused outright (Denied), even if the professional is
//!   otherwise authorised: the engine must trace the reason (Issue "always traced with the
//!   reason"). A valid claim that cannot apply (objection, window closed) just adds no basis:
//!   other bases still count. The purpose of use of a patient or representative is ignored.
//! - A17 Objection during an open window. CHOICE: evaluated at `now` (Issue: Consents "take
//!   effect on the very next request"), so an objection or block recorded after the
//!   declaration cuts the access at once.
//! - A18 Emergency notification. CHOICE: due whenever a granted record access includes the
//!   BTG or regulation basis, even if the professional was also authorised. Recipients: the
//!   holder, the holder's active legal representatives (who exercise a minor's rights, AC8),
//!   and the active, unblocked médecins traitants. Equivalent-rights grantees get nothing
//!   (A2).
//! - A19 "Mask everything" (AC4, MES: "the patient [can] mask all documents, emergencies
//!   included; the record is then visible only to the patient and the profile
//!   administrator"). The issue is silent. CHOICE: modelled as `PatientRules::mask_everything`;
//!   when in effect, no professional gets the record, authors, médecin traitant, BTG and
//!   SAMU included. The holder and the representatives ("profile administrator") keep it.
//!   Property tests can leave it empty if the engine does not implement it.
//! - A20 Deletion (AC9 "only the author of a document can delete it"; Issue). CHOICE: a
//!   professional author may delete without an authorisation (deletion corrects one's own
//!   filing; it is not consultation), unless blocked or the record is masked entirely.
//!   Documents filed by the patient side (holder or representative, `Author::PatientSide`)
//!   may be deleted by the holder or an active representative who can see them. Nobody else,
//!   not even the médecin traitant. Entered-in-error documents keep the same visibility
//!   rules as current ones ("history kept"); the status filter is a search matter.
//! - A21 Versions. Issue: masked documents are hidden "through ... vread of any version,
//!   history". CHOICE: the CURRENT labels, type and author of a document decide for all its
//!   versions, including versions written before it was masked.
//! - A22 Who may change which label (Issue: "the patient masks and unmasks"; "no professional
//!   or app can ... unmask"; AC4: data may be "masked by the patient or by a professional";
//!   AC5: "a professional can make data temporarily inaccessible to the holder").
//!   CHOICE: the actor must currently see the document, and then:
//!   * MASQUE_PS / MASQUE_PSOCIAL / MASQUE_PT may be added by the patient side or the
//!     document's author, and removed only by the patient side, never through an app;
//!   * INVISIBLE_PATIENT may be added or removed only by the author;
//!   * INVISIBLE_REPRESENTANTS_LEGAUX may be added or removed only by the holder (the minor)
//!     or the author, never by a representative;
//!   * any other label (N/R/V…) may be changed by the patient side or the author.
//! - A23 Writing Consents (Issue: "only the patient (or their representative) writes them;
//!   no professional or app can lift a block or unmask"). CHOICE: the holder or an active
//!   representative may write any of them, directly or through an app, except that through
//!   an app they may not unblock or leave "mask everything" (the Issue's words, read
//!   literally; other relaxations such as authorising or lifting an objection stay allowed
//!   through apps).
//! - A24 Filing (AC2, Issue: "filing a document for a patient does not need" authorisation).
//!   CHOICE: any known professional may file, even a blocked one (a block stops access to
//!   the record; AC2 says the patient cannot object to additions except for a legitimate
//!   reason). The holder and active representatives may file. Nobody else.
//! - A25 Care-team presumption. AC1: "a professional in the patient's care team is deemed
//!   authorised once the patient has been informed and has not objected". The issue says
//!   professionals read "only when authorised by the patient". CHOICE: the issue's; only
//!   an explicit, active authorisation counts (an engine may materialise the presumption as
//!   an authorisation Consent).
//! - A26 Validity. CHOICE: in effect iff Consent.status is active and
//!   period.start ≤ now ≤ period.end (both ends inclusive, as FHIR Period; either may be
//!   absent).
//! - A27 Not modelled: organisations or establishments as authors ("the professional or
//!   establishment that filed it", AC4) or as authorised actors; purposes inside
//!   authorisation provisions; closed or archived records (Patient.active = false); the
//!   "first access by a new professional" notification (domain.md: "not confirmed"); traces
//!   (AC7), which are a separate requirement; adults under legal protection (AC10), whose
//!   protector can be modelled as a `Guardianship`; the minor's objection to reimbursement
//!   data (AC8), which concerns what is filed, not who reads it.
//!
//! # Contradictions between sources
//!
//! - The issue (and AC6) make emergency access the default unless the patient objected. Seed
//!   000 says "En cas d'urgence, si l'assuré l'a autorisé" (opt-in). The oracle follows the
//!   issue.
//! - The issue and AC2 say filing needs no authorisation. Seed 004 says professionals "peuvent
//!   l'alimenter si le patient les a autorisés". The oracle follows the issue.
//! - AC1's care-team presumption versus the explicit authorisation (A25).
//! - AC4 "mask everything" ("visible only to the patient and the profile administrator")
//!   versus AC4's own author and médecin-traitant exemptions, and AC6's SAMU access (A19).
//! - AC4 lets professionals mask; the issue only says "the patient masks and unmasks" (A22).
//! - §4 lists five TRE_A07 codes; the issue lists three (A9).
//! - §3: a forbidden PATCH returns 405; the issue says "405/422".
//! - §3 TD3.3a unmasks by replacing `/securityLabel/0` with N. That is positional, which
//!   conflicts with "labels are a set": on a document labelled N + MASQUE_PS +
//!   INVISIBLE_PATIENT, index 0 may not be MASQUE_PS.
//! - §3 TD3.3c: `entered-in-error` "is not allowed by MHD"; the issue uses it for deletion.
//! - HL7v2 flags spell it `INVISIBLE_REP_LEGAUX`; TRE_A07 (and so FHIR) spells it
//!   `INVISIBLE_REPRESENTANTS_LEGAUX`. The oracle uses only the latter.
//! - Seed 000: the patient "reçoit une notification dès qu'un professionnel se connecte";
//!   domain.md: "not confirmed". Not modelled (A27).
//!
//! # The matrice d'habilitation, as domain.md describes it (AC1)
//!
//! "Access is limited to 'strictly necessary' data, per the matrice d'habilitation (arrêté of
//! 26 Oct 2023, JO 29 Oct 2023). The matrix maps each profession to the document types it may
//! read or download. Physicians may read every type except the 'attestation de résidence'.
//! Pharmacists and nurses are slightly more restricted, and social and medico-social
//! professionals much more." domain.md names NO profession code and NO document-type code.
//! The only type it names is the "attestation de résidence", and it gives no code for it.
//! The only profession-like code in domain.md is the PSC `SubjectRole` example
//! `80^1.2.250.1.213.1.1.5.5`, and it is not tied to the matrix. The issue says the matrix is
//! data under fhir-profiles/ (no such file exists yet), so `Matrix` is an input here. The
//! unit tests use placeholder codes ("medecin", "infirmier", "assistant-social",
//! "compte-rendu", "attestation-residence", …) that stand for no real terminology.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Seconds since the Unix epoch, UTC.
pub type Time = i64;
pub const MINUTE: Time = 60;
pub const HOUR: Time = 60 * MINUTE;
pub const DAY: Time = 24 * HOUR;

/// AC5: "If no announcement consultation has taken place within 2 weeks, the patient is told
/// that the record has been updated". (The month is calendar-based: `add_one_month`.)
pub const TWO_WEEKS: Time = 14 * DAY;

/// Emergency access is "time-limited" (Issue), but domain.md gives NO duration. PRODUCT
/// CHOICE of this oracle (A14), to be aligned with the engine's configuration through
/// `Model::emergency_access_duration`.
pub const DEFAULT_EMERGENCY_ACCESS_DURATION: Time = 4 * HOUR;

// §4 "Confidentiality codes (exact)".
/// "PDSm4DMP uses http://terminology.hl7.org/CodeSystem/v3-Confidentiality#N".
pub const V3_CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// "TRE_A08-HL7Confidentiality: https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality".
pub const TRE_A08: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality";
/// "TRE_A07-StatutVisibiliteDocument: https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument".
pub const TRE_A07: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
/// "Codes: N Normal, R Restreint, V Très restreint."
pub const CONF_N: &str = "N";
pub const CONF_R: &str = "R";
pub const CONF_V: &str = "V";
/// "MASQUE_PS: masked to health professionals".
pub const MASQUE_PS: &str = "MASQUE_PS";
/// "INVISIBLE_PATIENT: not visible to the patient".
pub const INVISIBLE_PATIENT: &str = "INVISIBLE_PATIENT";
/// "INVISIBLE_REPRESENTANTS_LEGAUX: not visible to legal representatives".
pub const INVISIBLE_REPRESENTANTS_LEGAUX: &str = "INVISIBLE_REPRESENTANTS_LEGAUX";
/// "MASQUE_PSOCIAL: masked to social-sector professionals" (not in the issue: A9).
pub const MASQUE_PSOCIAL: &str = "MASQUE_PSOCIAL";
/// "MASQUE_PT: masked to third parties" (not in the issue; ignored: A9).
pub const MASQUE_PT: &str = "MASQUE_PT";

/// One security label, (system, code). §4: "The securityLabel should therefore be treated as
/// a set."
pub type Label = (String, String);

pub fn label(system: &str, code: &str) -> Label {
    (system.to_string(), code.to_string())
}

// ---------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------

/// When a Consent-like rule applies (A26): Consent.status = active, and the provision's
/// period (both ends inclusive, either optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub active: bool,
    pub start: Option<Time>,
    pub end: Option<Time>,
}

impl Validity {
    pub fn always() -> Self {
        Validity {
            active: true,
            start: None,
            end: None,
        }
    }
    pub fn between(start: Option<Time>, end: Option<Time>) -> Self {
        Validity {
            active: true,
            start,
            end,
        }
    }
    pub fn inactive() -> Self {
        Validity {
            active: false,
            start: None,
            end: None,
        }
    }
    /// Issue: Consents "take effect on the very next request": evaluated at the request's time.
    pub fn in_effect_at(&self, now: Time) -> bool {
        self.active && self.start.is_none_or(|s| s <= now) && self.end.is_none_or(|e| now <= e)
    }
}

/// A professional, with the profession code the matrix is keyed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Professional {
    pub id: String,
    pub profession: String,
    /// A social or medico-social professional (for MASQUE_PSOCIAL, A9). Model data: domain.md
    /// does not say which profession codes are social-sector.
    pub social_sector: bool,
}

/// A Consent provision naming one professional as actor: an authorisation, a block, a
/// médecin-traitant designation or an equivalent-rights grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfessionalProvision {
    pub professional: String,
    pub validity: Validity,
}

impl ProfessionalProvision {
    pub fn new(professional: &str, validity: Validity) -> Self {
        ProfessionalProvision {
            professional: professional.to_string(),
            validity,
        }
    }
}

/// Issue: "a guardian, recorded as a RelatedPerson of the child with an active Consent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardianship {
    /// The person acting as legal representative (A11: a person id, not the RelatedPerson id).
    pub representative: String,
    pub validity: Validity,
}

impl Guardianship {
    pub fn new(representative: &str, validity: Validity) -> Self {
        Guardianship {
            representative: representative.to_string(),
            validity,
        }
    }
}

/// Everything a patient (or their representative) decided about their record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRules {
    pub id: String,
    pub guardians: Vec<Guardianship>,
    pub medecin_traitant: Vec<ProfessionalProvision>,
    pub authorisations: Vec<ProfessionalProvision>,
    pub blocks: Vec<ProfessionalProvision>,
    /// AC4: "The patient can give the same rights as the médecin traitant to other
    /// professionals of their choice."
    pub equivalent_rights: Vec<ProfessionalProvision>,
    /// AC6: emergency access "unless that person objected beforehand" (BTG).
    pub emergency_objection: Vec<Validity>,
    /// AC6: the SAMU regulating doctor "may access it unless the person expressly objected
    /// beforehand" (A15: independent of `emergency_objection`).
    pub regulation_objection: Vec<Validity>,
    /// AC4 (MES): "mask all documents, emergencies included" (A19).
    pub mask_everything: Vec<Validity>,
}

fn provision_in_effect(list: &[ProfessionalProvision], professional: &str, now: Time) -> bool {
    list.iter()
        .any(|p| p.professional == professional && p.validity.in_effect_at(now))
}

fn any_in_effect(list: &[Validity], now: Time) -> bool {
    list.iter().any(|v| v.in_effect_at(now))
}

impl PatientRules {
    pub fn new(id: &str) -> Self {
        PatientRules {
            id: id.to_string(),
            guardians: Vec::new(),
            medecin_traitant: Vec::new(),
            authorisations: Vec::new(),
            blocks: Vec::new(),
            equivalent_rights: Vec::new(),
            emergency_objection: Vec::new(),
            regulation_objection: Vec::new(),
            mask_everything: Vec::new(),
        }
    }
    pub fn represented_by(&self, person: &str, now: Time) -> bool {
        self.guardians
            .iter()
            .any(|g| g.representative == person && g.validity.in_effect_at(now))
    }
    pub fn is_blocked(&self, professional: &str, now: Time) -> bool {
        provision_in_effect(&self.blocks, professional, now)
    }
    pub fn is_medecin_traitant(&self, professional: &str, now: Time) -> bool {
        provision_in_effect(&self.medecin_traitant, professional, now)
    }
    pub fn has_equivalent_rights(&self, professional: &str, now: Time) -> bool {
        provision_in_effect(&self.equivalent_rights, professional, now)
    }
    pub fn is_authorised(&self, professional: &str, now: Time) -> bool {
        provision_in_effect(&self.authorisations, professional, now)
    }
    pub fn objects_to_emergency(&self, now: Time) -> bool {
        any_in_effect(&self.emergency_objection, now)
    }
    pub fn objects_to_regulation(&self, now: Time) -> bool {
        any_in_effect(&self.regulation_objection, now)
    }
    pub fn masked_entirely(&self, now: Time) -> bool {
        any_in_effect(&self.mask_everything, now)
    }
}

/// The matrice d'habilitation: (profession code, document type code) → may read. Given as
/// data (Issue: "kept as data under fhir-profiles/, not in code"). A missing pair is denied
/// (A3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matrix {
    pub allowed: HashMap<(String, String), bool>,
}

impl Matrix {
    pub fn new(allowed: HashMap<(String, String), bool>) -> Self {
        Matrix { allowed }
    }
    pub fn allow(&mut self, profession: &str, type_code: &str) {
        self.allowed
            .insert((profession.to_string(), type_code.to_string()), true);
    }
    pub fn forbid(&mut self, profession: &str, type_code: &str) {
        self.allowed
            .insert((profession.to_string(), type_code.to_string()), false);
    }
    pub fn allows(&self, profession: &str, type_code: &str) -> bool {
        self.allowed
            .get(&(profession.to_string(), type_code.to_string()))
            .copied()
            .unwrap_or(false)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub patients: HashMap<String, PatientRules>,
    pub professionals: HashMap<String, Professional>,
    pub matrix: Matrix,
    /// A14. Defaults to `DEFAULT_EMERGENCY_ACCESS_DURATION`.
    pub emergency_access_duration: Time,
}

impl Model {
    pub fn new(matrix: Matrix) -> Self {
        Model {
            patients: HashMap::new(),
            professionals: HashMap::new(),
            matrix,
            emergency_access_duration: DEFAULT_EMERGENCY_ACCESS_DURATION,
        }
    }
    pub fn add_professional(&mut self, id: &str, profession: &str, social_sector: bool) {
        self.professionals.insert(
            id.to_string(),
            Professional {
                id: id.to_string(),
                profession: profession.to_string(),
                social_sector,
            },
        );
    }
    /// Adds the patient if absent; returns their rules for editing.
    pub fn add_patient(&mut self, id: &str) -> &mut PatientRules {
        self.patients
            .entry(id.to_string())
            .or_insert_with(|| PatientRules::new(id))
    }
    pub fn patient_mut(&mut self, id: &str) -> &mut PatientRules {
        self.patients
            .get_mut(id)
            .expect("unknown patient in the oracle model")
    }
}

/// Who filed a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    Professional(String),
    /// Filed by the holder or by a representative acting for them (A20).
    PatientSide,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStatus {
    Current,
    Superseded,
    /// Issue: "a logical delete: status → entered-in-error, history kept". Same visibility
    /// rules as a current document (A20).
    EnteredInError,
}

/// The CURRENT state of a document; it decides for every version (A21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    /// The patient whose record holds it (DocumentReference.subject).
    pub patient: String,
    pub author: Author,
    /// The key into the matrix (DocumentReference.type).
    pub type_code: String,
    pub labels: BTreeSet<Label>,
    /// When Carnet recorded the first version (A12).
    pub filed_at: Time,
    pub status: DocStatus,
}

impl Document {
    pub fn new(id: &str, patient: &str, author: Author, type_code: &str, filed_at: Time) -> Self {
        Document {
            id: id.to_string(),
            patient: patient.to_string(),
            author,
            type_code: type_code.to_string(),
            labels: BTreeSet::new(),
            filed_at,
            status: DocStatus::Current,
        }
    }
    pub fn labelled(mut self, system: &str, code: &str) -> Self {
        self.labels.insert(label(system, code));
        self
    }
    /// Exact system and code (A8).
    pub fn has(&self, system: &str, code: &str) -> bool {
        self.labels.iter().any(|(s, c)| s == system && c == code)
    }
    pub fn authored_by(&self, professional: &str) -> bool {
        matches!(&self.author, Author::Professional(a) if a == professional)
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person logged in as the holder of the record with this patient id.
    Patient(String),
    /// A person acting as legal representative; for which patient is decided by the model's
    /// guardianships.
    LegalRepresentative(String),
    /// A professional (including a SAMU regulating doctor: see `Purpose::Etreat`).
    Professional(String),
}

/// Purpose of use declared with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Normal,
    /// Issue: "a professional declares an emergency (purpose of use BTG, with a written
    /// reason)". `declared_at` starts the time-limited window.
    Btg {
        reason: String,
        declared_at: Time,
    },
    /// Issue: "A regulating doctor of the SAMU (purpose ETREAT with a regulation role)".
    Etreat {
        regulation_role: bool,
        declared_at: Time,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub actor: Actor,
    pub purpose: Purpose,
    /// Through an app acting for the actor. No effect on reads (Issue: a blocked professional
    /// gets nothing "through an app acting for them" either); restricts unblocking and
    /// unmasking (A22, A23).
    pub via_app: bool,
    pub now: Time,
}

impl Request {
    pub fn new(actor: Actor, purpose: Purpose, now: Time) -> Self {
        Request {
            actor,
            purpose,
            via_app: false,
            now,
        }
    }
    pub fn patient(id: &str, now: Time) -> Self {
        Request::new(Actor::Patient(id.to_string()), Purpose::Normal, now)
    }
    pub fn representative(person: &str, now: Time) -> Self {
        Request::new(
            Actor::LegalRepresentative(person.to_string()),
            Purpose::Normal,
            now,
        )
    }
    pub fn professional(id: &str, now: Time) -> Self {
        Request::new(Actor::Professional(id.to_string()), Purpose::Normal, now)
    }
    pub fn btg(id: &str, reason: &str, declared_at: Time, now: Time) -> Self {
        Request::new(
            Actor::Professional(id.to_string()),
            Purpose::Btg {
                reason: reason.to_string(),
                declared_at,
            },
            now,
        )
    }
    pub fn samu_regulator(id: &str, declared_at: Time, now: Time) -> Self {
        Request::new(
            Actor::Professional(id.to_string()),
            Purpose::Etreat {
                regulation_role: true,
                declared_at,
            },
            now,
        )
    }
    pub fn through_app(mut self) -> Self {
        self.via_app = true;
        self
    }
}

// ---------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------

/// Why an actor has the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Holder,
    LegalRepresentative,
    MedecinTraitant,
    EquivalentRights,
    Authorisation,
    BreakTheGlass,
    Regulation,
}

/// Why an actor does not have the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    UnknownPatient,
    UnknownProfessional,
    /// Issue: "Never another patient's data."
    OtherPatient,
    /// No guardianship in effect for this person and this patient.
    NotRepresentative,
    /// A16.
    BtgWithoutReason,
    /// A16.
    EtreatWithoutRegulationRole,
    Blocked,
    /// A19.
    RecordMaskedEntirely,
    NotAuthorised,
    EmergencyObjected,
    RegulationObjected,
    /// The emergency window is not open at `now` (expired, or declared in the future).
    EmergencyWindowClosed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordDecision {
    /// Every basis that holds, in the order of `Basis`.
    Granted(Vec<Basis>),
    Denied(Denial),
}

impl RecordDecision {
    pub fn is_granted(&self) -> bool {
        matches!(self, RecordDecision::Granted(_))
    }
    pub fn bases(&self) -> &[Basis] {
        match self {
            RecordDecision::Granted(b) => b,
            RecordDecision::Denied(_) => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenBecause {
    Record(Denial),
    InvisiblePatient,
    InvisibleRepresentantsLegaux,
    MasquePs,
    MasquePsocial,
    Matrix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Visible,
    Hidden(HiddenBecause),
}

impl Decision {
    pub fn is_visible(&self) -> bool {
        matches!(self, Decision::Visible)
    }
}

/// Can the actor see this patient's record at all, and on which bases.
pub fn decide_record(model: &Model, req: &Request, patient: &str) -> RecordDecision {
    let rules = match model.patients.get(patient) {
        Some(r) => r,
        None => return RecordDecision::Denied(Denial::UnknownPatient),
    };
    let now = req.now;
    match &req.actor {
        // Issue: "Patient: sees their whole record [...] Never another patient's data."
        Actor::Patient(me) => {
            if me.as_str() == patient {
                RecordDecision::Granted(vec![Basis::Holder])
            } else {
                RecordDecision::Denied(Denial::OtherPatient)
            }
        }
        // Issue: "A legal representative (a guardian, recorded as a RelatedPerson of the
        // child with an active Consent) acts for the child". AC8: "the parent or legal
        // representative exercises the minor's rights". Kept under "mask everything": AC4
        // "visible only to the patient and the profile administrator" (A19).
        Actor::LegalRepresentative(person) => {
            if rules.represented_by(person, now) {
                RecordDecision::Granted(vec![Basis::LegalRepresentative])
            } else {
                RecordDecision::Denied(Denial::NotRepresentative)
            }
        }
        Actor::Professional(pro) => {
            decide_record_professional(model, rules, pro, &req.purpose, now)
        }
    }
}

fn decide_record_professional(
    model: &Model,
    rules: &PatientRules,
    pro: &str,
    purpose: &Purpose,
    now: Time,
) -> RecordDecision {
    if !model.professionals.contains_key(pro) {
        return RecordDecision::Denied(Denial::UnknownProfessional);
    }
    // Issue: "a professional declares an emergency (purpose of use BTG, with a written
    // reason)"; "A regulating doctor of the SAMU (purpose ETREAT with a regulation role)";
    // "Always traced with the reason". A malformed claim is refused outright (A16).
    match purpose {
        Purpose::Btg { reason, .. } if reason.trim().is_empty() => {
            return RecordDecision::Denied(Denial::BtgWithoutReason)
        }
        Purpose::Etreat {
            regulation_role: false,
            ..
        } => return RecordDecision::Denied(Denial::EtreatWithoutRegulationRole),
        _ => {}
    }
    // Issue: "a blocked professional gets nothing of that patient — not by read, search,
    // include, count, history or through an app acting for them — even if otherwise
    // authorised." AC3: "A blocked professional cannot access the record even if the patient
    // has authorised them." Checked before every basis, emergencies included (A5).
    if rules.is_blocked(pro, now) {
        return RecordDecision::Denied(Denial::Blocked);
    }
    // AC4: "MES also lets the patient mask all documents, emergencies included; the record is
    // then visible only to the patient and the profile administrator." (A19)
    if rules.masked_entirely(now) {
        return RecordDecision::Denied(Denial::RecordMaskedEntirely);
    }
    let mut bases = Vec::new();
    // AC4: the médecin traitant "sees everything, including data masked by the patient or
    // by a professional" (A1: no separate authorisation needed).
    if rules.is_medecin_traitant(pro, now) {
        bases.push(Basis::MedecinTraitant);
    }
    // AC4: "The patient can give the same rights as the médecin traitant to other
    // professionals of their choice." (A2)
    if rules.has_equivalent_rights(pro, now) {
        bases.push(Basis::EquivalentRights);
    }
    // Issue: "Professional: reads a patient's record only when authorised by the patient and
    // not blocked". (A25: no care-team presumption.)
    if rules.is_authorised(pro, now) {
        bases.push(Basis::Authorisation);
    }
    // Issue: "gets time-limited access to the record" (A14: duration from the model).
    let window_open = |declared_at: Time| {
        declared_at <= now && now < declared_at + model.emergency_access_duration
    };
    let mut emergency_denial = None;
    match purpose {
        Purpose::Normal => {}
        // Issue: "[BTG] gets time-limited access to the record, unless the patient has
        // objected to emergency access". AC6: "unless that person objected beforehand".
        Purpose::Btg { declared_at, .. } => {
            if rules.objects_to_emergency(now) {
                emergency_denial = Some(Denial::EmergencyObjected);
            } else if !window_open(*declared_at) {
                emergency_denial = Some(Denial::EmergencyWindowClosed);
            } else {
                bases.push(Basis::BreakTheGlass);
            }
        }
        // Issue: "A regulating doctor of the SAMU [...] likewise, unless the patient
        // expressly objected." AC6: "In 'centre de régulation' mode, the software does not
        // check the access authorisation." (A15: only the express objection stops it.)
        Purpose::Etreat { declared_at, .. } => {
            if rules.objects_to_regulation(now) {
                emergency_denial = Some(Denial::RegulationObjected);
            } else if !window_open(*declared_at) {
                emergency_denial = Some(Denial::EmergencyWindowClosed);
            } else {
                bases.push(Basis::Regulation);
            }
        }
    }
    if bases.is_empty() {
        RecordDecision::Denied(emergency_denial.unwrap_or(Denial::NotAuthorised))
    } else {
        RecordDecision::Granted(bases)
    }
}

/// May the actor see this document (through any channel: read, vread of any version,
/// history, search, includes, compartment, $everything, batch GETs, its Binary).
pub fn decide(model: &Model, req: &Request, doc: &Document) -> Decision {
    let record = decide_record(model, req, &doc.patient);
    let bases = match record {
        // A4 as amended: the author of a document sees it without record access, unless
        // the refusal is one that stops everything (blocked, malformed emergency claim,
        // whole record masked, unknown professional).
        RecordDecision::Denied(
            Denial::NotAuthorised
            | Denial::EmergencyObjected
            | Denial::RegulationObjected
            | Denial::EmergencyWindowClosed,
        ) if matches!(&req.actor, Actor::Professional(p) if doc.authored_by(p)) => {
            return Decision::Visible
        }
        RecordDecision::Denied(d) => return Decision::Hidden(HiddenBecause::Record(d)),
        RecordDecision::Granted(b) => b,
    };
    let now = req.now;
    match &req.actor {
        // Issue: "Patient: sees their whole record, except documents labelled
        // INVISIBLE_PATIENT". MASQUE_PS does not hide from the patient ("visible only to the
        // patient, its author, ...").
        Actor::Patient(_) => holder_view(doc, now),
        // Issue: the representative "acts for the child, except on documents labelled
        // INVISIBLE_REPRESENTANTS_LEGAUX". AC8: the minor "can ask that this data be hidden
        // from legal representatives". Otherwise the holder's view (A10).
        Actor::LegalRepresentative(_) => {
            if doc.has(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX) {
                Decision::Hidden(HiddenBecause::InvisibleRepresentantsLegaux)
            } else {
                holder_view(doc, now)
            }
        }
        Actor::Professional(pro_id) => {
            let pro = match model.professionals.get(pro_id.as_str()) {
                Some(p) => p,
                None => {
                    return Decision::Hidden(HiddenBecause::Record(Denial::UnknownProfessional))
                }
            };
            let is_author = doc.authored_by(pro_id);
            // Issue: "a document labelled MASQUE_PS is visible only to the patient, its
            // author, the patient's médecin traitant, and professionals the patient granted
            // the same rights." AC4: "Masked data stays visible to its author". Emergency
            // access does not lift it (Issue: "masked documents stay masked").
            let masking_exempt = is_author
                || bases.contains(&Basis::MedecinTraitant)
                || bases.contains(&Basis::EquivalentRights);
            if doc.has(TRE_A07, MASQUE_PS) && !masking_exempt {
                return Decision::Hidden(HiddenBecause::MasquePs);
            }
            // §4: "MASQUE_PSOCIAL: masked to social-sector professionals" (A9).
            if doc.has(TRE_A07, MASQUE_PSOCIAL) && pro.social_sector && !masking_exempt {
                return Decision::Hidden(HiddenBecause::MasquePsocial);
            }
            // Issue: "and only the document types their profession may read (the matrice
            // d'habilitation: profession × document type)". AC1: "Access is limited to
            // 'strictly necessary' data". Applies on every basis; authors pass for their own
            // documents (A3).
            if !is_author && !model.matrix.allows(&pro.profession, &doc.type_code) {
                return Decision::Hidden(HiddenBecause::Matrix);
            }
            // INVISIBLE_PATIENT and INVISIBLE_REPRESENTANTS_LEGAUX do not concern
            // professionals; N/R/V change nothing (A7); MASQUE_PT is ignored (A9).
            Decision::Visible
        }
    }
}

/// AC5: "a professional can make data temporarily inaccessible to the holder [...] The data
/// becomes visible automatically 1 month after it was filed." Issue: "hidden until the
/// announcement consultation; they become visible automatically one month after filing".
fn holder_view(doc: &Document, now: Time) -> Decision {
    if doc.has(TRE_A07, INVISIBLE_PATIENT) && now < invisible_patient_lifted_at(doc.filed_at) {
        Decision::Hidden(HiddenBecause::InvisiblePatient)
    } else {
        Decision::Visible
    }
}

// ---------------------------------------------------------------------------------------
// Time rules
// ---------------------------------------------------------------------------------------

/// When an INVISIBLE_PATIENT document becomes visible to the holder by itself (A12).
pub fn invisible_patient_lifted_at(filed_at: Time) -> Time {
    add_one_month(filed_at)
}

/// AC5: "If no announcement consultation has taken place within 2 weeks, the patient is told
/// that the record has been updated and is invited to see a professional." Issue: "the
/// patient is told after two weeks that their record was updated". True from filing + 14
/// days on (A13).
pub fn patient_should_be_notified(filing: Time, now: Time) -> bool {
    now >= filing + TWO_WEEKS
}

/// The same, for one document: only while it still carries INVISIBLE_PATIENT, since the
/// author removes the label after the announcement consultation (A13).
pub fn invisible_patient_notification_due(doc: &Document, now: Time) -> bool {
    doc.has(TRE_A07, INVISIBLE_PATIENT) && patient_should_be_notified(doc.filed_at, now)
}

/// One calendar month later in UTC, clamped to the end of the month (A12).
pub fn add_one_month(t: Time) -> Time {
    let days = t.div_euclid(DAY);
    let secs = t.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd) * DAY + secs
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let m = m as i64;
    let d = d as i64;
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The inverse of `days_from_civil`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = (if z >= 0 { z } else { z - 146096 }) / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A UTC instant from its calendar parts (for tests and property-test generators).
pub fn utc(y: i64, m: u32, d: u32, h: i64, min: i64, s: i64) -> Time {
    days_from_civil(y, m, d) * DAY + h * HOUR + min * MINUTE + s
}

// ---------------------------------------------------------------------------------------
// Emergency notification
// ---------------------------------------------------------------------------------------

/// Issue: "Always traced with the reason; the patient and their médecin traitant are
/// notified after the fact." (A18)
pub fn emergency_notification_due(record: &RecordDecision) -> bool {
    record
        .bases()
        .iter()
        .any(|b| matches!(b, Basis::BreakTheGlass | Basis::Regulation))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    Holder(String),
    LegalRepresentative(String),
    MedecinTraitant(String),
}

/// AC6: "The holder and the médecin traitant are notified after the fact, electronically."
/// Plus the active representatives; minus blocked médecins traitants (A18, A5). Sorted.
pub fn emergency_notification_recipients(
    model: &Model,
    patient: &str,
    now: Time,
) -> Vec<Recipient> {
    let rules = match model.patients.get(patient) {
        Some(r) => r,
        None => return Vec::new(),
    };
    let mut out = vec![Recipient::Holder(patient.to_string())];
    for g in &rules.guardians {
        if g.validity.in_effect_at(now) {
            out.push(Recipient::LegalRepresentative(g.representative.clone()));
        }
    }
    for mt in &rules.medecin_traitant {
        if mt.validity.in_effect_at(now) && !rules.is_blocked(&mt.professional, now) {
            out.push(Recipient::MedecinTraitant(mt.professional.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------
// Writes: filing, deletion, labels, Consents
// ---------------------------------------------------------------------------------------

/// Issue: "Authorisation covers reading; filing a document for a patient does not need it."
/// AC2: "An authorisation covers consultation only; adding documents does not need it." (A24)
pub fn may_file(model: &Model, req: &Request, patient: &str) -> bool {
    let rules = match model.patients.get(patient) {
        Some(r) => r,
        None => return false,
    };
    match &req.actor {
        Actor::Patient(me) => me.as_str() == patient,
        Actor::LegalRepresentative(person) => rules.represented_by(person, req.now),
        Actor::Professional(pro) => model.professionals.contains_key(pro.as_str()),
    }
}

/// Issue: "Only a document's author may delete it (a logical delete: status →
/// entered-in-error, history kept)." AC9: "only the author of a document can delete it." (A20)
pub fn may_delete(model: &Model, req: &Request, doc: &Document) -> bool {
    match (&req.actor, &doc.author) {
        (Actor::Professional(p), Author::Professional(a)) if p == a => {
            let rules = match model.patients.get(doc.patient.as_str()) {
                Some(r) => r,
                None => return false,
            };
            model.professionals.contains_key(p.as_str())
                && !rules.is_blocked(p, req.now)
                && !rules.masked_entirely(req.now)
        }
        (Actor::Patient(_) | Actor::LegalRepresentative(_), Author::PatientSide) => {
            decide(model, req, doc).is_visible()
        }
        _ => false,
    }
}

/// May the actor replace the document's labels by `new_labels` (a JSON Patch on
/// securityLabel)? Issue: "The patient masks and unmasks [...]"; "no professional or app can
/// lift a block or unmask." AC4, AC5, AC8 for the others (A22).
pub fn may_change_labels(
    model: &Model,
    req: &Request,
    doc: &Document,
    new_labels: &BTreeSet<Label>,
) -> bool {
    // One cannot patch what one cannot see.
    if !decide(model, req, doc).is_visible() {
        return false;
    }
    // Visible and a patient-side actor implies it is their own record (or the child's).
    let holder = matches!(&req.actor, Actor::Patient(_));
    let patient_side = holder || matches!(&req.actor, Actor::LegalRepresentative(_));
    let is_author = matches!(&req.actor, Actor::Professional(p) if doc.authored_by(p));
    for l in doc.labels.symmetric_difference(new_labels) {
        let added = new_labels.contains(l);
        let ok = if l.0 == TRE_A07 {
            match l.1.as_str() {
                // AC4: masked "by the patient or by a professional"; Issue: no professional
                // or app can unmask.
                MASQUE_PS | MASQUE_PSOCIAL | MASQUE_PT => {
                    if added {
                        patient_side || is_author
                    } else {
                        patient_side && !req.via_app
                    }
                }
                // AC5: "a professional can make data temporarily inaccessible to the holder".
                INVISIBLE_PATIENT => is_author,
                // AC8: the minor "can ask that this data be hidden from legal representatives".
                INVISIBLE_REPRESENTANTS_LEGAUX => holder || is_author,
                _ => patient_side || is_author,
            }
        } else {
            patient_side || is_author
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A change to one of the patient's Consents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChange {
    Authorise,
    RevokeAuthorisation,
    Block,
    Unblock,
    ObjectToEmergency,
    LiftEmergencyObjection,
    ObjectToRegulation,
    LiftRegulationObjection,
    DesignateMedecinTraitant,
    EndMedecinTraitant,
    GrantEquivalentRights,
    RevokeEquivalentRights,
    MaskEverything,
    UnmaskEverything,
}

/// Issue: "Only the patient (or their representative) writes them; no professional or app
/// can lift a block or unmask." (A23)
pub fn may_write_consent(
    model: &Model,
    req: &Request,
    patient: &str,
    change: ConsentChange,
) -> bool {
    let record = decide_record(model, req, patient);
    let patient_side = record
        .bases()
        .iter()
        .any(|b| matches!(b, Basis::Holder | Basis::LegalRepresentative));
    if !patient_side {
        return false;
    }
    !(req.via_app
        && matches!(
            change,
            ConsentChange::Unblock | ConsentChange::UnmaskEverything
        ))
}

// ---------------------------------------------------------------------------------------
// JSON bridge for DocumentReference.securityLabel (R4: CodeableConcept 0..*)
// ---------------------------------------------------------------------------------------

/// Every (system, code) of `securityLabel[].coding[]`; codings without a system or code are
/// skipped (A8).
pub fn labels_from_json(resource: &Value) -> BTreeSet<Label> {
    let mut out = BTreeSet::new();
    if let Some(concepts) = resource.get("securityLabel").and_then(Value::as_array) {
        for concept in concepts {
            if let Some(codings) = concept.get("coding").and_then(Value::as_array) {
                for coding in codings {
                    let system = coding.get("system").and_then(Value::as_str);
                    let code = coding.get("code").and_then(Value::as_str);
                    if let (Some(s), Some(c)) = (system, code) {
                        out.insert(label(s, c));
                    }
                }
            }
        }
    }
    out
}

/// The `securityLabel` array for a label set, one CodeableConcept per label (PDSm style).
pub fn labels_to_json(labels: &BTreeSet<Label>) -> Value {
    Value::Array(
        labels
            .iter()
            .map(|(s, c)| serde_json::json!({ "coding": [{ "system": s, "code": c }] }))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Unit tests: one scenario per rule
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    // Placeholder codes (domain.md names none: see the matrix section above).
    const MEDECIN: &str = "medecin";
    const INFIRMIER: &str = "infirmier";
    const ASSISTANT_SOCIAL: &str = "assistant-social";
    const CR: &str = "compte-rendu";
    const ORDONNANCE: &str = "ordonnance";
    const BIOLOGIE: &str = "biologie";
    const ATTESTATION: &str = "attestation-residence";

    fn matrix() -> Matrix {
        let mut m = Matrix::default();
        // AC1: "Physicians may read every type except the 'attestation de résidence'."
        for t in [CR, ORDONNANCE, BIOLOGIE] {
            m.allow(MEDECIN, t);
        }
        m.forbid(MEDECIN, ATTESTATION);
        // "Pharmacists and nurses are slightly more restricted".
        for t in [ORDONNANCE, BIOLOGIE] {
            m.allow(INFIRMIER, t);
        }
        m.forbid(INFIRMIER, CR);
        // "social and medico-social professionals much more" (pair (ASSISTANT_SOCIAL, CR)
        // deliberately absent: missing means denied).
        m.allow(ASSISTANT_SOCIAL, ATTESTATION);
        m
    }

    fn filed() -> Time {
        utc(2025, 3, 1, 8, 0, 0)
    }
    fn now() -> Time {
        utc(2025, 3, 10, 9, 0, 0)
    }

    /// alice: adult, authorises dr-autorise, inf-autorise, as-autorise and dr-bloque (who is
    /// also blocked); dr-traitant is her médecin traitant; inf-confiance has equivalent
    /// rights. leo: a child, represented by marie, authorises dr-autorise. bob: nobody.
    fn world() -> Model {
        let mut m = Model::new(matrix());
        m.add_professional("dr-autorise", MEDECIN, false);
        m.add_professional("dr-traitant", MEDECIN, false);
        m.add_professional("dr-inconnu", MEDECIN, false);
        m.add_professional("dr-bloque", MEDECIN, false);
        m.add_professional("regulateur", MEDECIN, false);
        m.add_professional("inf-autorise", INFIRMIER, false);
        m.add_professional("inf-confiance", INFIRMIER, false);
        m.add_professional("inf-inconnu", INFIRMIER, false);
        m.add_professional("as-autorise", ASSISTANT_SOCIAL, true);
        let alice = m.add_patient("alice");
        for p in ["dr-autorise", "inf-autorise", "as-autorise", "dr-bloque"] {
            alice
                .authorisations
                .push(ProfessionalProvision::new(p, Validity::always()));
        }
        alice
            .blocks
            .push(ProfessionalProvision::new("dr-bloque", Validity::always()));
        alice.medecin_traitant.push(ProfessionalProvision::new(
            "dr-traitant",
            Validity::always(),
        ));
        alice.equivalent_rights.push(ProfessionalProvision::new(
            "inf-confiance",
            Validity::always(),
        ));
        let leo = m.add_patient("leo");
        leo.guardians
            .push(Guardianship::new("marie", Validity::always()));
        leo.authorisations.push(ProfessionalProvision::new(
            "dr-autorise",
            Validity::always(),
        ));
        m.add_patient("bob");
        m
    }

    fn by(pro: &str) -> Author {
        Author::Professional(pro.to_string())
    }
    fn cr_for(patient: &str, author: Author) -> Document {
        Document::new("d1", patient, author, CR, filed())
    }
    fn cr(author: &str) -> Document {
        cr_for("alice", by(author))
    }
    fn masked(author: &str) -> Document {
        cr(author).labelled(TRE_A07, MASQUE_PS)
    }
    fn sees(m: &Model, r: &Request, d: &Document) -> bool {
        decide(m, r, d).is_visible()
    }
    fn hidden(why: HiddenBecause) -> Decision {
        Decision::Hidden(why)
    }
    fn denied(why: Denial) -> Decision {
        Decision::Hidden(HiddenBecause::Record(why))
    }

    // --- Patient -------------------------------------------------------------------------

    #[test]
    fn patient_sees_own_whole_record_including_masked() {
        let m = world();
        let r = Request::patient("alice", now());
        assert!(sees(&m, &r, &cr("dr-autorise")));
        assert!(sees(&m, &r, &masked("dr-inconnu")));
        assert_eq!(
            decide_record(&m, &r, "alice"),
            RecordDecision::Granted(vec![Basis::Holder])
        );
    }

    #[test]
    fn patient_never_sees_another_patients_data() {
        let m = world();
        let r = Request::patient("bob", now());
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::OtherPatient)
        );
        // Not even by declaring an emergency.
        let r = Request::new(
            Actor::Patient("bob".into()),
            Purpose::Btg {
                reason: "urgence".into(),
                declared_at: now(),
            },
            now(),
        );
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::OtherPatient)
        );
    }

    #[test]
    fn unknown_patient_is_nobodys_record() {
        let m = world();
        let d = cr_for("zoe", by("dr-autorise"));
        assert_eq!(
            decide(&m, &Request::professional("dr-autorise", now()), &d),
            denied(Denial::UnknownPatient)
        );
        assert_eq!(
            decide(&m, &Request::patient("zoe", now()), &d),
            denied(Denial::UnknownPatient)
        );
    }

    #[test]
    fn invisible_patient_hidden_from_patient_before_one_month() {
        let m = world();
        let d = cr("dr-autorise").labelled(TRE_A07, INVISIBLE_PATIENT);
        // Filed 2025-03-01 08:00 UTC: hidden up to 2025-04-01 07:59:59.
        for t in [
            filed(),
            now(),
            utc(2025, 3, 31, 23, 59, 59),
            utc(2025, 4, 1, 7, 59, 59),
        ] {
            assert_eq!(
                decide(&m, &Request::patient("alice", t), &d),
                hidden(HiddenBecause::InvisiblePatient),
                "at {t}"
            );
        }
    }

    #[test]
    fn invisible_patient_becomes_visible_after_one_month() {
        let m = world();
        let d = cr("dr-autorise").labelled(TRE_A07, INVISIBLE_PATIENT);
        assert!(sees(
            &m,
            &Request::patient("alice", utc(2025, 4, 1, 8, 0, 0)),
            &d
        ));
        assert!(sees(
            &m,
            &Request::patient("alice", utc(2026, 1, 1, 0, 0, 0)),
            &d
        ));
    }

    #[test]
    fn one_month_is_a_calendar_month_clamped_to_the_month_end() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(civil_from_days(11017), (2000, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            add_one_month(utc(2025, 3, 15, 10, 30, 0)),
            utc(2025, 4, 15, 10, 30, 0)
        );
        assert_eq!(
            add_one_month(utc(2024, 1, 31, 10, 0, 0)),
            utc(2024, 2, 29, 10, 0, 0)
        );
        assert_eq!(
            add_one_month(utc(2023, 1, 31, 10, 0, 0)),
            utc(2023, 2, 28, 10, 0, 0)
        );
        assert_eq!(
            add_one_month(utc(2025, 12, 31, 23, 59, 59)),
            utc(2026, 1, 31, 23, 59, 59)
        );
        assert_eq!(
            add_one_month(utc(2025, 5, 31, 0, 0, 0)),
            utc(2025, 6, 30, 0, 0, 0)
        );
        // Leap years over a wide range: round trip every day.
        for day in days_from_civil(1899, 1, 1)..days_from_civil(2101, 1, 1) {
            let (y, mo, d) = civil_from_days(day);
            assert!(d >= 1 && d <= days_in_month(y, mo));
            assert_eq!(days_from_civil(y, mo, d), day);
        }
    }

    #[test]
    fn patient_notified_after_two_weeks_not_before() {
        assert!(!patient_should_be_notified(filed(), filed()));
        assert!(!patient_should_be_notified(filed(), filed() + 14 * DAY - 1));
        assert!(patient_should_be_notified(filed(), filed() + 14 * DAY));
        assert!(patient_should_be_notified(filed(), filed() + 40 * DAY));
        let d = cr("dr-autorise").labelled(TRE_A07, INVISIBLE_PATIENT);
        assert!(invisible_patient_notification_due(&d, filed() + 15 * DAY));
        // Label removed after the announcement consultation: nothing to tell.
        assert!(!invisible_patient_notification_due(
            &cr("dr-autorise"),
            filed() + 15 * DAY
        ));
    }

    #[test]
    fn invisible_labels_do_not_hide_from_professionals() {
        let m = world();
        let r = Request::professional("dr-autorise", now());
        assert!(sees(
            &m,
            &r,
            &cr("dr-inconnu").labelled(TRE_A07, INVISIBLE_PATIENT)
        ));
        let d = cr_for("leo", by("dr-inconnu")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert!(sees(&m, &r, &d));
    }

    // --- Legal representatives -----------------------------------------------------------

    #[test]
    fn guardian_with_active_consent_acts_for_the_child() {
        let m = world();
        let r = Request::representative("marie", now());
        assert!(sees(&m, &r, &cr_for("leo", by("dr-autorise"))));
        // Masking is aimed at professionals, not at the representative (A10).
        assert!(sees(
            &m,
            &r,
            &cr_for("leo", by("dr-autorise")).labelled(TRE_A07, MASQUE_PS)
        ));
        assert_eq!(
            decide_record(&m, &r, "leo"),
            RecordDecision::Granted(vec![Basis::LegalRepresentative])
        );
        // But she represents only leo.
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::NotRepresentative)
        );
    }

    #[test]
    fn guardian_cannot_see_invisible_representants_legaux() {
        let m = world();
        let d = cr_for("leo", by("dr-autorise")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert_eq!(
            decide(&m, &Request::representative("marie", now()), &d),
            hidden(HiddenBecause::InvisibleRepresentantsLegaux)
        );
        // Not even years later: there is no time limit on this label.
        assert!(!sees(
            &m,
            &Request::representative("marie", utc(2030, 1, 1, 0, 0, 0)),
            &d
        ));
    }

    #[test]
    fn minor_sees_own_invisible_representants_legaux_document() {
        let m = world();
        let d = cr_for("leo", by("dr-autorise")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert!(sees(&m, &Request::patient("leo", now()), &d));
    }

    #[test]
    fn guardian_is_also_subject_to_invisible_patient() {
        let m = world();
        let d = cr_for("leo", by("dr-autorise")).labelled(TRE_A07, INVISIBLE_PATIENT);
        assert_eq!(
            decide(&m, &Request::representative("marie", now()), &d),
            hidden(HiddenBecause::InvisiblePatient)
        );
        assert!(sees(
            &m,
            &Request::representative("marie", utc(2025, 4, 1, 8, 0, 0)),
            &d
        ));
    }

    #[test]
    fn guardian_without_an_active_consent_sees_nothing() {
        let mut m = world();
        let d = cr_for("leo", by("dr-autorise"));
        m.patient_mut("leo").guardians = vec![Guardianship::new("marie", Validity::inactive())];
        assert_eq!(
            decide(&m, &Request::representative("marie", now()), &d),
            denied(Denial::NotRepresentative)
        );
        m.patient_mut("leo").guardians = vec![Guardianship::new(
            "marie",
            Validity::between(None, Some(now() - 1)),
        )];
        assert_eq!(
            decide(&m, &Request::representative("marie", now()), &d),
            denied(Denial::NotRepresentative)
        );
    }

    // --- Professionals: authorisation, matrix, block ---------------------------------------

    #[test]
    fn unauthorised_professional_sees_nothing() {
        let m = world();
        let r = Request::professional("dr-inconnu", now());
        assert_eq!(
            decide_record(&m, &r, "alice"),
            RecordDecision::Denied(Denial::NotAuthorised)
        );
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::NotAuthorised)
        );
    }

    #[test]
    fn author_without_authorisation_reads_back_own_document_only_and_may_delete() {
        // A4 as amended (the issue: the author "always sees that document (and only it,
        // unless authorised)") and A20.
        let m = world();
        let r = Request::professional("dr-inconnu", now());
        let d = cr("dr-inconnu");
        assert_eq!(decide(&m, &r, &d), Decision::Visible);
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::NotAuthorised)
        );
        assert!(may_delete(&m, &r, &d));
    }

    #[test]
    fn authorised_professional_reads_only_types_the_matrix_allows() {
        let m = world();
        let nurse = Request::professional("inf-autorise", now());
        let ordonnance = Document::new("d2", "alice", by("dr-autorise"), ORDONNANCE, filed());
        assert!(sees(&m, &nurse, &ordonnance));
        assert_eq!(
            decide(&m, &nurse, &cr("dr-autorise")),
            hidden(HiddenBecause::Matrix)
        );
        // AC1: physicians read every type except the attestation de résidence.
        let attestation = Document::new("d3", "alice", by("as-autorise"), ATTESTATION, filed());
        assert_eq!(
            decide(
                &m,
                &Request::professional("dr-autorise", now()),
                &attestation
            ),
            hidden(HiddenBecause::Matrix)
        );
        assert!(sees(
            &m,
            &Request::professional("as-autorise", now()),
            &attestation
        ));
    }

    #[test]
    fn profession_type_missing_from_matrix_is_denied() {
        let m = world();
        // (assistant-social, compte-rendu) is absent from the matrix.
        assert_eq!(
            decide(
                &m,
                &Request::professional("as-autorise", now()),
                &cr("dr-autorise")
            ),
            hidden(HiddenBecause::Matrix)
        );
        let unknown_type = Document::new("d4", "alice", by("dr-inconnu"), "type-inconnu", filed());
        assert!(!sees(
            &m,
            &Request::professional("dr-autorise", now()),
            &unknown_type
        ));
    }

    #[test]
    fn author_passes_the_matrix_for_own_documents() {
        let m = world();
        // A nurse's own compte-rendu, though nurses may not read that type.
        assert!(sees(
            &m,
            &Request::professional("inf-autorise", now()),
            &cr("inf-autorise")
        ));
    }

    #[test]
    fn blocked_professional_sees_nothing_even_if_authorised() {
        let m = world();
        let r = Request::professional("dr-bloque", now());
        assert_eq!(
            decide_record(&m, &r, "alice"),
            RecordDecision::Denied(Denial::Blocked)
        );
        assert_eq!(decide(&m, &r, &cr("dr-autorise")), denied(Denial::Blocked));
        // Not through an app acting for them either, and not on their own documents.
        assert!(!sees(&m, &r.clone().through_app(), &cr("dr-autorise")));
        assert!(!sees(&m, &r, &cr("dr-bloque")));
        assert!(!may_delete(&m, &r, &cr("dr-bloque")));
    }

    #[test]
    fn block_beats_medecin_traitant_and_equivalent_rights() {
        let mut m = world();
        let alice = m.patient_mut("alice");
        alice.blocks.push(ProfessionalProvision::new(
            "dr-traitant",
            Validity::always(),
        ));
        alice.blocks.push(ProfessionalProvision::new(
            "inf-confiance",
            Validity::always(),
        ));
        for p in ["dr-traitant", "inf-confiance"] {
            assert_eq!(
                decide(&m, &Request::professional(p, now()), &masked("dr-autorise")),
                denied(Denial::Blocked)
            );
        }
        // A blocked médecin traitant is not told about emergency accesses (A18).
        assert_eq!(
            emergency_notification_recipients(&m, "alice", now()),
            vec![Recipient::Holder("alice".into())]
        );
    }

    #[test]
    fn unblocking_restores_previous_authorisation() {
        let mut m = world();
        m.patient_mut("alice").blocks = vec![ProfessionalProvision::new(
            "dr-bloque",
            Validity::between(None, Some(now())),
        )];
        // Block still in effect at its (inclusive) end, lifted just after.
        assert!(!sees(
            &m,
            &Request::professional("dr-bloque", now()),
            &cr("dr-autorise")
        ));
        assert!(sees(
            &m,
            &Request::professional("dr-bloque", now() + 1),
            &cr("dr-autorise")
        ));
        // Unblocking someone never authorised grants nothing.
        m.patient_mut("alice").blocks = vec![ProfessionalProvision::new(
            "dr-inconnu",
            Validity::inactive(),
        )];
        assert_eq!(
            decide(
                &m,
                &Request::professional("dr-inconnu", now()),
                &cr("dr-autorise")
            ),
            denied(Denial::NotAuthorised)
        );
    }

    #[test]
    fn expired_or_inactive_authorisation_grants_nothing() {
        let mut m = world();
        m.patient_mut("alice").authorisations = vec![
            ProfessionalProvision::new("dr-autorise", Validity::between(Some(now() + 1), None)),
            ProfessionalProvision::new("inf-autorise", Validity::inactive()),
        ];
        assert!(!sees(
            &m,
            &Request::professional("dr-autorise", now()),
            &cr("dr-inconnu")
        ));
        assert!(sees(
            &m,
            &Request::professional("dr-autorise", now() + 1),
            &cr("dr-inconnu")
        ));
        let ordonnance = Document::new("d2", "alice", by("dr-autorise"), ORDONNANCE, filed());
        assert!(!sees(
            &m,
            &Request::professional("inf-autorise", now()),
            &ordonnance
        ));
    }

    // --- Masking ------------------------------------------------------------------------

    #[test]
    fn masked_document_hidden_from_authorised_professional() {
        let m = world();
        assert_eq!(
            decide(
                &m,
                &Request::professional("dr-autorise", now()),
                &masked("dr-inconnu")
            ),
            hidden(HiddenBecause::MasquePs)
        );
        // The rest of the record stays visible.
        assert!(sees(
            &m,
            &Request::professional("dr-autorise", now()),
            &cr("dr-inconnu")
        ));
    }

    #[test]
    fn masked_document_visible_to_author() {
        let m = world();
        assert!(sees(
            &m,
            &Request::professional("dr-autorise", now()),
            &masked("dr-autorise")
        ));
    }

    #[test]
    fn masked_document_visible_to_medecin_traitant_without_explicit_authorisation() {
        let m = world();
        let r = Request::professional("dr-traitant", now());
        assert!(sees(&m, &r, &masked("dr-inconnu")));
        assert_eq!(
            decide_record(&m, &r, "alice"),
            RecordDecision::Granted(vec![Basis::MedecinTraitant])
        );
    }

    #[test]
    fn masked_document_visible_to_equivalent_rights_grantee_within_the_matrix() {
        let m = world();
        let r = Request::professional("inf-confiance", now());
        let masked_ordonnance =
            Document::new("d2", "alice", by("dr-autorise"), ORDONNANCE, filed())
                .labelled(TRE_A07, MASQUE_PS);
        assert!(sees(&m, &r, &masked_ordonnance));
        // Equivalent rights do not lift the matrix (A2, A3).
        assert_eq!(
            decide(&m, &r, &masked("dr-autorise")),
            hidden(HiddenBecause::Matrix)
        );
    }

    #[test]
    fn confidentiality_r_and_v_change_nothing() {
        let m = world();
        let r = Request::professional("dr-autorise", now());
        for (system, code) in [
            (V3_CONFIDENTIALITY, CONF_N),
            (V3_CONFIDENTIALITY, CONF_R),
            (V3_CONFIDENTIALITY, CONF_V),
            (TRE_A08, CONF_V),
        ] {
            assert!(
                sees(&m, &r, &cr("dr-inconnu").labelled(system, code)),
                "{code}"
            );
        }
        // Labels are a set: N alongside MASQUE_PS still masks.
        let d = masked("dr-inconnu").labelled(V3_CONFIDENTIALITY, CONF_N);
        assert_eq!(decide(&m, &r, &d), hidden(HiddenBecause::MasquePs));
    }

    #[test]
    fn label_system_must_match_exactly() {
        // A8: the misspelt "Status" system and the OID form are not TRE_A07 for the oracle;
        // the engine should refuse them on write.
        let m = world();
        let r = Request::professional("dr-autorise", now());
        let misspelt = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument";
        assert!(sees(
            &m,
            &r,
            &cr("dr-inconnu").labelled(misspelt, MASQUE_PS)
        ));
        assert!(sees(
            &m,
            &r,
            &cr("dr-inconnu").labelled("urn:oid:1.2.250.1.213.1.1.4.13", MASQUE_PS)
        ));
        assert!(!sees(
            &m,
            &r,
            &cr("dr-inconnu").labelled(TRE_A07, MASQUE_PS)
        ));
    }

    #[test]
    fn masque_psocial_hides_from_social_sector_only() {
        let m = world();
        let attestation = Document::new("d3", "alice", by("dr-inconnu"), ATTESTATION, filed())
            .labelled(TRE_A07, MASQUE_PSOCIAL);
        assert_eq!(
            decide(
                &m,
                &Request::professional("as-autorise", now()),
                &attestation
            ),
            hidden(HiddenBecause::MasquePsocial)
        );
        let d = cr("dr-inconnu").labelled(TRE_A07, MASQUE_PSOCIAL);
        assert!(sees(&m, &Request::professional("dr-autorise", now()), &d));
    }

    #[test]
    fn mask_everything_leaves_only_patient_and_representatives() {
        let mut m = world();
        m.patient_mut("alice")
            .mask_everything
            .push(Validity::always());
        m.patient_mut("leo")
            .mask_everything
            .push(Validity::always());
        let d = masked("dr-autorise");
        for r in [
            Request::professional("dr-traitant", now()),
            Request::professional("dr-autorise", now()),
            Request::btg("dr-inconnu", "inconscient", now(), now()),
            Request::samu_regulator("regulateur", now(), now()),
        ] {
            assert_eq!(
                decide(&m, &r, &d),
                denied(Denial::RecordMaskedEntirely),
                "{r:?}"
            );
        }
        assert!(sees(&m, &Request::patient("alice", now()), &d));
        assert!(sees(
            &m,
            &Request::representative("marie", now()),
            &cr_for("leo", by("dr-autorise"))
        ));
    }

    // --- Emergency access -----------------------------------------------------------------

    #[test]
    fn btg_grants_time_limited_access_with_notification() {
        let m = world();
        let declared = now();
        let r = Request::btg(
            "dr-inconnu",
            "patient inconscient, allergies ?",
            declared,
            now(),
        );
        assert!(sees(&m, &r, &cr("dr-autorise")));
        let record = decide_record(&m, &r, "alice");
        assert_eq!(record, RecordDecision::Granted(vec![Basis::BreakTheGlass]));
        assert!(emergency_notification_due(&record));
        let end = declared + m.emergency_access_duration;
        let mut late = r.clone();
        late.now = end - 1;
        assert!(sees(&m, &late, &cr("dr-autorise")));
        late.now = end;
        assert_eq!(
            decide(&m, &late, &cr("dr-autorise")),
            denied(Denial::EmergencyWindowClosed)
        );
        // A declaration dated in the future opens nothing yet.
        let early = Request::btg("dr-inconnu", "x", now() + HOUR, now());
        assert_eq!(
            decide(&m, &early, &cr("dr-autorise")),
            denied(Denial::EmergencyWindowClosed)
        );
    }

    #[test]
    fn btg_refused_when_patient_objected() {
        let mut m = world();
        m.patient_mut("alice")
            .emergency_objection
            .push(Validity::always());
        let r = Request::btg("dr-inconnu", "inconscient", now(), now());
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::EmergencyObjected)
        );
        // An authorised professional keeps their ordinary access, without emergency basis.
        let r = Request::btg("dr-autorise", "inconscient", now(), now());
        let record = decide_record(&m, &r, "alice");
        assert_eq!(record, RecordDecision::Granted(vec![Basis::Authorisation]));
        assert!(!emergency_notification_due(&record));
    }

    #[test]
    fn objection_recorded_during_an_open_window_cuts_access_at_once() {
        let mut m = world();
        let declared = now() - HOUR;
        m.patient_mut("alice")
            .emergency_objection
            .push(Validity::between(Some(now() - MINUTE), None));
        let r = Request::btg("dr-inconnu", "inconscient", declared, now());
        assert!(!sees(&m, &r, &cr("dr-autorise")));
    }

    #[test]
    fn btg_without_reason_is_refused_even_if_authorised() {
        let m = world();
        for who in ["dr-inconnu", "dr-autorise"] {
            let r = Request::btg(who, "   ", now(), now());
            assert_eq!(
                decide(&m, &r, &cr("dr-autorise")),
                denied(Denial::BtgWithoutReason)
            );
        }
    }

    #[test]
    fn masked_stays_masked_in_emergency() {
        let m = world();
        let btg = Request::btg("dr-inconnu", "inconscient", now(), now());
        assert_eq!(
            decide(&m, &btg, &masked("dr-autorise")),
            hidden(HiddenBecause::MasquePs)
        );
        let samu = Request::samu_regulator("regulateur", now(), now());
        assert_eq!(
            decide(&m, &samu, &masked("dr-autorise")),
            hidden(HiddenBecause::MasquePs)
        );
    }

    #[test]
    fn matrix_still_applies_in_emergency() {
        let m = world();
        let r = Request::btg("inf-inconnu", "malaise", now(), now());
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            hidden(HiddenBecause::Matrix)
        );
        let ordonnance = Document::new("d2", "alice", by("dr-autorise"), ORDONNANCE, filed());
        assert!(sees(&m, &r, &ordonnance));
    }

    #[test]
    fn blocked_professional_cannot_break_the_glass_nor_regulate() {
        let m = world();
        let btg = Request::btg("dr-bloque", "inconscient", now(), now());
        assert_eq!(
            decide(&m, &btg, &cr("dr-autorise")),
            denied(Denial::Blocked)
        );
        let samu = Request::samu_regulator("dr-bloque", now(), now());
        assert_eq!(
            decide(&m, &samu, &cr("dr-autorise")),
            denied(Denial::Blocked)
        );
    }

    #[test]
    fn samu_regulator_allowed_unless_express_objection() {
        let mut m = world();
        let r = Request::samu_regulator("regulateur", now(), now());
        assert!(sees(&m, &r, &cr("dr-autorise")));
        assert_eq!(
            decide_record(&m, &r, "alice"),
            RecordDecision::Granted(vec![Basis::Regulation])
        );
        // The (non-express) emergency objection does not stop the regulator (A15)...
        m.patient_mut("alice")
            .emergency_objection
            .push(Validity::always());
        assert!(sees(&m, &r, &cr("dr-autorise")));
        // ...the express objection does.
        m.patient_mut("alice")
            .regulation_objection
            .push(Validity::always());
        assert_eq!(
            decide(&m, &r, &cr("dr-autorise")),
            denied(Denial::RegulationObjected)
        );
    }

    #[test]
    fn express_regulation_objection_does_not_stop_btg() {
        let mut m = world();
        m.patient_mut("alice")
            .regulation_objection
            .push(Validity::always());
        assert!(sees(
            &m,
            &Request::btg("dr-inconnu", "inconscient", now(), now()),
            &cr("dr-autorise")
        ));
    }

    #[test]
    fn etreat_without_regulation_role_is_refused() {
        let m = world();
        for who in ["regulateur", "dr-autorise"] {
            let r = Request::new(
                Actor::Professional(who.into()),
                Purpose::Etreat {
                    regulation_role: false,
                    declared_at: now(),
                },
                now(),
            );
            assert_eq!(
                decide(&m, &r, &cr("dr-autorise")),
                denied(Denial::EtreatWithoutRegulationRole)
            );
        }
    }

    #[test]
    fn emergency_access_notifies_patient_and_medecin_traitant() {
        let m = world();
        assert_eq!(
            emergency_notification_recipients(&m, "alice", now()),
            vec![
                Recipient::Holder("alice".into()),
                Recipient::MedecinTraitant("dr-traitant".into())
            ]
        );
        assert_eq!(
            emergency_notification_recipients(&m, "leo", now()),
            vec![
                Recipient::Holder("leo".into()),
                Recipient::LegalRepresentative("marie".into())
            ]
        );
        // An authorised professional who also declares BTG is still an emergency access (A18).
        let r = Request::btg("dr-autorise", "inconscient", now(), now());
        let record = decide_record(&m, &r, "alice");
        assert_eq!(
            record,
            RecordDecision::Granted(vec![Basis::Authorisation, Basis::BreakTheGlass])
        );
        assert!(emergency_notification_due(&record));
        assert!(!emergency_notification_due(&decide_record(
            &m,
            &Request::professional("dr-autorise", now()),
            "alice"
        )));
    }

    // --- Writes ---------------------------------------------------------------------------

    #[test]
    fn filing_does_not_need_authorisation() {
        let m = world();
        assert!(may_file(
            &m,
            &Request::professional("dr-inconnu", now()),
            "alice"
        ));
        assert!(may_file(
            &m,
            &Request::professional("dr-bloque", now()),
            "alice"
        )); // A24
        assert!(may_file(&m, &Request::patient("alice", now()), "alice"));
        assert!(may_file(
            &m,
            &Request::representative("marie", now()),
            "leo"
        ));
        assert!(!may_file(&m, &Request::patient("bob", now()), "alice"));
        assert!(!may_file(
            &m,
            &Request::representative("marie", now()),
            "alice"
        ));
        assert!(!may_file(
            &m,
            &Request::professional("nobody", now()),
            "alice"
        ));
    }

    #[test]
    fn only_author_may_delete() {
        let m = world();
        let d = cr("dr-autorise");
        assert!(may_delete(
            &m,
            &Request::professional("dr-autorise", now()),
            &d
        ));
        // Those who see it may not: médecin traitant, patient, another authorised doctor.
        assert!(!may_delete(
            &m,
            &Request::professional("dr-traitant", now()),
            &d
        ));
        assert!(!may_delete(&m, &Request::patient("alice", now()), &d));
        assert!(!may_delete(
            &m,
            &Request::professional("inf-autorise", now()),
            &d
        ));
        // Documents filed by the patient side.
        let own = cr_for("alice", Author::PatientSide);
        assert!(may_delete(&m, &Request::patient("alice", now()), &own));
        assert!(!may_delete(
            &m,
            &Request::professional("dr-traitant", now()),
            &own
        ));
        let child = cr_for("leo", Author::PatientSide);
        assert!(may_delete(
            &m,
            &Request::representative("marie", now()),
            &child
        ));
        assert!(may_delete(&m, &Request::patient("leo", now()), &child));
    }

    #[test]
    fn professional_cannot_unmask_but_patient_can() {
        let m = world();
        let d = masked("dr-autorise");
        let unmasked: BTreeSet<Label> = [label(V3_CONFIDENTIALITY, CONF_N)].into_iter().collect();
        assert!(!may_change_labels(
            &m,
            &Request::professional("dr-autorise", now()),
            &d,
            &unmasked
        ));
        assert!(!may_change_labels(
            &m,
            &Request::professional("dr-traitant", now()),
            &d,
            &unmasked
        ));
        assert!(may_change_labels(
            &m,
            &Request::patient("alice", now()),
            &d,
            &unmasked
        ));
        // No app can unmask, even for the patient; an app may mask.
        assert!(!may_change_labels(
            &m,
            &Request::patient("alice", now()).through_app(),
            &d,
            &unmasked
        ));
        let plain = cr("dr-autorise");
        let masking: BTreeSet<Label> = [label(TRE_A07, MASQUE_PS)].into_iter().collect();
        assert!(may_change_labels(
            &m,
            &Request::patient("alice", now()).through_app(),
            &plain,
            &masking
        ));
        // The author may mask (AC4: "masked ... by a professional"); other professionals not.
        assert!(may_change_labels(
            &m,
            &Request::professional("dr-autorise", now()),
            &plain,
            &masking
        ));
        assert!(!may_change_labels(
            &m,
            &Request::professional("dr-traitant", now()),
            &plain,
            &masking
        ));
        // A representative unmasks for the child.
        let child = cr_for("leo", by("dr-autorise")).labelled(TRE_A07, MASQUE_PS);
        assert!(may_change_labels(
            &m,
            &Request::representative("marie", now()),
            &child,
            &BTreeSet::new()
        ));
    }

    #[test]
    fn only_author_sets_and_lifts_invisible_patient() {
        let m = world();
        let d = cr("dr-autorise").labelled(TRE_A07, INVISIBLE_PATIENT);
        assert!(may_change_labels(
            &m,
            &Request::professional("dr-autorise", now()),
            &d,
            &BTreeSet::new()
        ));
        // The patient cannot lift it, not even once it has become visible.
        let later = utc(2025, 5, 1, 0, 0, 0);
        assert!(sees(&m, &Request::patient("alice", later), &d));
        assert!(!may_change_labels(
            &m,
            &Request::patient("alice", later),
            &d,
            &BTreeSet::new()
        ));
        assert!(!may_change_labels(
            &m,
            &Request::professional("dr-traitant", now()),
            &d,
            &BTreeSet::new()
        ));
    }

    #[test]
    fn representative_cannot_touch_invisible_representants_legaux() {
        let m = world();
        let plain = cr_for("leo", by("dr-autorise"));
        let hide: BTreeSet<Label> = [label(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX)]
            .into_iter()
            .collect();
        assert!(!may_change_labels(
            &m,
            &Request::representative("marie", now()),
            &plain,
            &hide
        ));
        assert!(may_change_labels(
            &m,
            &Request::patient("leo", now()),
            &plain,
            &hide
        ));
        assert!(may_change_labels(
            &m,
            &Request::professional("dr-autorise", now()),
            &plain,
            &hide
        ));
    }

    #[test]
    fn only_patient_or_representative_writes_consents_and_no_app_lifts_a_block() {
        let m = world();
        assert!(may_write_consent(
            &m,
            &Request::patient("alice", now()),
            "alice",
            ConsentChange::Block
        ));
        assert!(may_write_consent(
            &m,
            &Request::patient("alice", now()),
            "alice",
            ConsentChange::Unblock
        ));
        assert!(may_write_consent(
            &m,
            &Request::representative("marie", now()),
            "leo",
            ConsentChange::Unblock
        ));
        assert!(!may_write_consent(
            &m,
            &Request::patient("bob", now()),
            "alice",
            ConsentChange::Block
        ));
        for p in ["dr-traitant", "dr-autorise", "dr-bloque"] {
            assert!(!may_write_consent(
                &m,
                &Request::professional(p, now()),
                "alice",
                ConsentChange::Unblock
            ));
            assert!(!may_write_consent(
                &m,
                &Request::professional(p, now()),
                "alice",
                ConsentChange::Authorise
            ));
        }
        let app = Request::patient("alice", now()).through_app();
        assert!(may_write_consent(&m, &app, "alice", ConsentChange::Block));
        assert!(!may_write_consent(
            &m,
            &app,
            "alice",
            ConsentChange::Unblock
        ));
        assert!(!may_write_consent(
            &m,
            &app,
            "alice",
            ConsentChange::UnmaskEverything
        ));
    }

    #[test]
    fn security_labels_json_round_trip() {
        let resource = serde_json::json!({
            "resourceType": "DocumentReference",
            "securityLabel": [
                { "coding": [{ "system": V3_CONFIDENTIALITY, "code": "N" }] },
                { "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }, { "code": "no-system" }] },
                { "coding": [{ "system": TRE_A07, "code": "INVISIBLE_PATIENT" }] }
            ]
        });
        let labels = labels_from_json(&resource);
        let expected: BTreeSet<Label> = [
            label(V3_CONFIDENTIALITY, CONF_N),
            label(TRE_A07, MASQUE_PS),
            label(TRE_A07, INVISIBLE_PATIENT),
        ]
        .into_iter()
        .collect();
        assert_eq!(labels, expected);
        let back = serde_json::json!({ "securityLabel": labels_to_json(&labels) });
        assert_eq!(labels_from_json(&back), expected);
        assert!(labels_from_json(&serde_json::json!({})).is_empty());
    }
}
