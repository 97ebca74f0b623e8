//! An independent oracle of issue 16 ("Patient control, second round"), built on top of the
//! issue-5 oracle `crate::consent_oracle` (referred to below as "the base oracle"; its
//! ambiguity numbers A1–A27 are cited as such).
//!
//! Written only from `../shared/domain.md` (quoted as "AC#"), the service's own documents
//! (`../shared/seeds/`, quoted as "Seed"), the base oracle, and the text of issue 16 (quoted
//! as "Issue"). It was written WITHOUT reading Carnet's engine, so that the engine and the
//! oracle cannot share a bug. Pure functions, no I/O, no HTTP, no clock: every request
//! carries `now`. Times are `i64` seconds since the Unix epoch, UTC.
//!
//! # What it adds, rule by rule
//!
//! - Emergency access, `EmergencyDefault`, `btg_rule`, `btg_opens_record`,
//!   `purpose_from_login`. Issue: "the patient's rules say whether professionals may break
//!   the glass (allowed by a permit provision with purpose BTG, objected to by a deny with
//!   purpose BTG). The deployment chooses the default (the seed's opt-in: only if the patient
//!   allowed it; or the opt-out of article L1111-17: unless the patient objected) with one
//!   setting; the default follows the seed. The SAMU regulating doctor's role (ETREAT) comes
//!   from the professional's login." Seed 000: "En cas d'urgence, si l'assuré l'a autorisé,
//!   les professionnels de santé pourront accéder aux documents." AC6: "unless that person
//!   objected beforehand".
//! - Who granted an authorisation, `Grant`, `Grantor`, `decide_clinical`. Issue: "a parent
//!   (legal representative) who authorises a professional must not open to that professional
//!   the child's INVISIBLE_REPRESENTANTS_LEGAUX documents (which the parent does not see)."
//! - Requesters beyond the base actors, `Requester`, `establishment_may_act_for`,
//!   `trace_actors`. Issue: "A registered establishment client obtains a token for one of
//!   its professionals with a JWT bearer grant whose sub is the professional's national
//!   identifier — only for professionals the directory lists at that establishment (a
//!   PractitionerRole whose organization is the establishment's). The token then carries that
//!   professional: the patient's rules, blocks, masks and the matrice d'habilitation apply to
//!   it exactly as to the professional's own login, and traces name both the professional
//!   and the establishment." AC7: "every action is traced with date, time and actor
//!   (professional, establishment or digital service)."
//! - Filing backend, registry and development tokens, `may_file_as`, `may_access_account`,
//!   `patient_search_by_identifier`, `decide_record_as`. Issue: "A backend service with no
//!   professional (client_credentials) files data (creates documents, Binaries,
//!   Immunizations, Appointments for a patient), finds the Patient it files for by
//!   identifier (INS) and reads that Patient resource, and reads back only what it filed
//!   itself, never the rest of the record. A client registered as the registry (identity and
//!   account management: Patient, RelatedPerson, guardianship, lifecycle) reads and writes
//!   those, and no clinical data. No client of any kind reads documents past the patient's
//!   rules. Development tokens may keep full access for tests."
//! - Care team, `may_declare_care_team`, `record_care_team`, `withdraw_care_team`. Issue:
//!   "The care team (AC1): a professional records that the patient was informed and did not
//!   object — a Consent the professional writes, naming themselves, with its own provenance —
//!   and is then authorised like a professional the patient authorised; the patient is
//!   notified, sees it in their rules, and can withdraw it or block them. A blocked
//!   professional cannot record it." AC1: "A professional in the patient's care team is
//!   deemed authorised once the patient has been informed and has not objected."
//! - Mask everything. Issue: "the patient can make the whole record visible only to
//!   themselves (and their representative), emergencies included, and undo it." AC4: "MES
//!   also lets the patient mask all documents, emergencies included; the record is then
//!   visible only to the patient and the profile administrator." The base oracle models it
//!   (`PatientRules::mask_everything`, A19); this module makes it bind every new requester.
//! - Session notices, `session_starts`, `access_notices`, `access_notices_with_grants`.
//!   Issue: "a notice for each new access session of a professional (not only the very first
//!   access ever) — say what a session is". Seed 000: "Reçoit une notification dès qu'un
//!   professionnel se connecte."
//! - Label equivalence, `normalise_label`. Issue: "a label under an equivalent system (the
//!   OID form of TRE_A07, urn:oid:1.2.250.1.213.1.1.4.13) must be recognised". §4:
//!   "TRE_A07-StatutVisibiliteDocument: https://mos.esante.gouv.fr/…, OID
//!   1.2.250.1.213.1.1.4.13".
//! - History of a deleted resource, `labels_for_version`, `union_of_versions`. Issue: "a
//!   resource masked and then deleted must keep, in its older versions, the strictest labels
//!   the resource ever had until its deletion".
//! - Binary, `decide_binary`. Issue: "a Binary whose securityContext is the Patient is judged
//!   with the labels of the document that points to it".
//!
//! # How it sits on the base oracle
//!
//! `ControlModel` wraps the base `Model` with what issue 16 adds (emergency permits and the
//! default, grants with their grantor, care-team declarations, the directory of
//! PractitionerRoles, registered clients, patient identifiers). `ControlModel::
//! effective_model` folds all of it back into a base `Model` for one instant, and every
//! decision about a person (patient, representative, professional, professional through an
//! establishment) is `crate::consent_oracle::decide` on that model, on a document whose labels
//! were normalised, plus the grantor rule for INVISIBLE_REPRESENTANTS_LEGAUX. Grants written
//! directly in the base model's `PatientRules` count as granted by the holder.
//!
//! # Ambiguities and the choice this oracle makes
//!
//! Each is a product choice where the sources are silent; an engine that chooses otherwise
//! must be matched by a deliberate change here.
//!
//! - B1 Emergency default. `EmergencyDefault::default()` is `OptIn` (Issue: "the default
//!   follows the seed"). This reverses the base oracle, which follows AC6's opt-out (its
//!   "Contradictions"); under `OptOut` and without issue-16 data this module gives exactly the
//!   base oracle's answers (a unit test checks it). A permit and a deny both in effect: the
//!   DENY wins (the more protective reading; the patient lifts it by ending the deny).
//!   Permits and denies are evaluated at `now` (A17), so a permit that ends, or a deny
//!   written, during an open emergency window cuts the access at once.
//! - B2 Scope of the setting. It governs BTG only. The SAMU regulating doctor keeps AC6's
//!   rule ("may access it unless the person expressly objected beforehand", R1111-48)
//!   whatever the default, and the BTG permit/deny does not touch regulation (A15).
//! - B3 Mask everything and blocks beat a permit (AC4 "emergencies included"; A5). Order of
//!   refusals: unknown patient, unknown professional, blank reason, blocked, record masked
//!   entirely, deny, no permit under opt-in, window closed (the base oracle's order).
//! - B4 Regulation role. From the professional's own login, the caller must build the purpose
//!   with `purpose_from_login` (the login's claim; the request cannot claim the role).
//!   Through an establishment there is no professional login: the role comes from the
//!   directory, a PractitionerRole at that establishment flagged `regulation` (a SAMU centre
//!   is an establishment; AC6's "centre de régulation mode" is software). A role claimed in
//!   the establishment's request is ignored.
//! - B5 Grantors. The principle: a grant cannot open what its grantor cannot see. A grant by
//!   a legal representative (authorisation, equivalent rights, médecin-traitant designation)
//!   opens the record but not INVISIBLE_REPRESENTANTS_LEGAUX documents, nor does it lift
//!   MASQUE_PS on them. A professional who also has a basis not granted by a representative
//!   (the holder's own grant, a care-team declaration, an emergency, authorship) sees them as
//!   before. The care-team declaration and emergencies are the law's bases (AC1, AC6), not
//!   the parent's, so they do open such documents (the label targets representatives; the
//!   base oracle: it "does not concern professionals"). Hazard: under opt-in, the BTG permit
//!   itself may have been written by a parent; the oracle does not track its author. A
//!   representative's grant survives the end of the guardianship (it is the patient's rule;
//!   the patient sees it and can withdraw it).
//! - B6 Establishments. "May act for" is checked when the token is obtained AND at every
//!   request (a PractitionerRole that ended stops the establishment at once, as Consents do).
//!   A PractitionerRole's `active` and `period` form a `Validity`. The format of `sub`
//!   ("8"+RPPS or "0"+ADELI, §3) is not checked: professional ids are opaque here. A
//!   document filed through an establishment is authored by the named professional; the
//!   establishment gets no author privilege for its other professionals (AC4 says masked
//!   data stays visible to "the professional or establishment that filed it"; with issue 16
//!   an establishment never files without a named professional). The establishment is not an
//!   "app acting for the user" (`via_app` is left as the request says).
//! - B7 Filing backend. Reads: Patient search only with an INS token `system|value`, system
//!   INS-NIR (urn:oid:1.2.250.1.213.1.4.8) or INS-NIA (urn:oid:1.2.250.1.213.1.4.9), exact
//!   value, no bare value; Patient read by id only for the patients it "files for", which the
//!   caller passes (`Requester::Backend::files_for`: those it found by INS or filed for), so
//!   that enumerating ids reveals nothing; its own filings, where masks do not apply (it is
//!   their author, AC4) but mask everything does ("no client of any kind reads documents past
//!   the patient's rules"). Nothing else: no RelatedPerson, no Consent, no trace, no other
//!   filer's data. Writes: CREATE of DocumentReference, Binary, Immunization, Appointment for
//!   a known patient, blocks and mask everything notwithstanding (A24: filing is not
//!   reading); no update, delete, label change or Consent (the issue says only "files").
//! - B8 Registry. Read and write (create, update, delete) Patient, RelatedPerson,
//!   guardianship Consents and lifecycle data of any patient, and Patient search by any
//!   identifier. Never the patient's other rules (authorisations, blocks, masks, emergency,
//!   care team: "only the patient (or their representative) writes them", issue 5), nor
//!   traces, nor anything filed.
//! - B9 Development tokens keep everything (Issue: "may keep"), writes and care-team
//!   declarations included. Whether a deployment accepts them is configuration, outside the
//!   oracle.
//! - B10 Care team. The declaration is an authorisation (`Basis::Authorisation`), not the
//!   médecin traitant's rights: MASQUE_PS and the matrix still apply. It runs from its
//!   recording, open-ended, until withdrawn. Only a professional, by their own login or
//!   through an establishment that may act for them, may record it, naming themselves only.
//!   Refused when blocked (Issue), and refused again once the patient side withdrew a
//!   declaration of that professional (a withdrawal is the patient's objection; otherwise
//!   the professional could re-declare at once and "withdraw" would mean nothing); the
//!   patient can still authorise explicitly. A professional may withdraw their own
//!   declaration; that is no objection. Allowed while the record is masked entirely (it
//!   opens nothing until the mask is undone). "Informed" cannot be checked: the declaration
//!   is the professional's word, traced. Notified: the holder and active representatives.
//! - B11 Sessions. A new session starts at a professional's first access to a record, after
//!   `SESSION_SILENCE` (1 hour) or more without any access by that professional to that
//!   record (measured from the previous access, not from the session's start), and, with
//!   `access_notices_with_grants`, whenever the access rests on a different grant than the
//!   previous one (a new authorisation, care-team declaration or emergency declaration).
//!   1 hour because a "connection" in the seed's sense is a consultation: an hour of silence
//!   means the professional left the record. Counted: granted reads only (not refused
//!   attempts, not filings), per (professional, record), whatever the channel (own login or
//!   any establishment). Recipients: the holder and active representatives. Hazard: for a
//!   minor in confidential care (AC8), a notice to the parent names the professional.
//! - B12 Labels. Only the `urn:oid:` form of the TRE_A07 OID is an equivalent system (FHIR
//!   systems are URIs; a bare OID is not). The HL7 Confidentiality OID maps to
//!   v3-Confidentiality (no effect on access, A7). The misspelt "Status…" system (§4: a PDSm
//!   example's typo) is NOT equivalent: the engine should reject it on write. Codes are case
//!   sensitive. This overrides the base oracle's A8 for the OID form.
//! - B13 Binary with the Patient as securityContext. Judged as EVERY document that points to
//!   it (all must be visible: the strictest wins); a pointing document of another patient is
//!   also judged as a document of the securityContext patient; with no pointing document, as
//!   an unlabelled document of that patient with no type, filed by the Binary's filer (the
//!   matrix then hides it from every professional but its filer). A backend reads a Binary it
//!   filed, like any own filing.
//! - B14 History. For the versions up to a resource's last deletion (DELETE or
//!   entered-in-error), the judging labels are the union of the labels of all those versions
//!   and of the current version; later versions (a re-created resource) are judged by the
//!   current labels (A21). Read literally, labels removed before the deletion still count: a
//!   document masked, unmasked by the patient, then deleted keeps its older versions masked.
//!
//! # What the base oracle's API lacks or contradicts (kept unchanged; handled here)
//!
//! - No BTG permit and no default: `PatientRules::emergency_objection` is the deny list; the
//!   base follows opt-out, issue 16 defaults to opt-in.
//! - A8 and its test `label_system_must_match_exactly` say the OID form does not mask; issue
//!   16 says it must. `base::may_change_labels` would even let an author REMOVE a MASQUE_PS
//!   written under the OID (it sees an ordinary label): a unit test below shows the door.
//! - A21 (current labels judge every version) leaks the older versions of a deleted resource.
//! - A25 (no care-team presumption), A27 (no establishments, no access notices) and
//!   `may_write_consent` (no professional writes a Consent) are superseded.
//! - Provisions carry no grantor; `Basis` has no care-team basis (a declaration shows as
//!   `Authorisation`); `Author` has no backend or establishment (a backend author is the
//!   sentinel `BACKEND_AUTHOR_PREFIX` + client id, which no professional id may use);
//!   `Actor` has no system client; `ConsentChange` has no emergency permit; `Document` has no
//!   resource kind; Binaries are not modelled; `Purpose::Etreat::regulation_role` is
//!   supplied by the caller (B4).

#![allow(dead_code)]

use crate::consent_oracle::{
    self as base, Actor, Author, Basis, Decision, Denial, Document, HiddenBecause, Label, Model,
    ProfessionalProvision, Purpose, Recipient, RecordDecision, Request, Time, Validity, HOUR,
    INVISIBLE_REPRESENTANTS_LEGAUX, TRE_A07, V3_CONFIDENTIALITY,
};
use std::collections::{BTreeSet, HashMap};

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/// §4: TRE_A07-StatutVisibiliteDocument has "OID 1.2.250.1.213.1.1.4.13"; Issue: "the OID
/// form of TRE_A07, urn:oid:1.2.250.1.213.1.1.4.13".
pub const TRE_A07_OID: &str = "urn:oid:1.2.250.1.213.1.1.4.13";
/// §4: TRE_A08-HL7Confidentiality, "OID 2.16.840.1.113883.5.25" (the HL7 v3 Confidentiality
/// code system).
pub const HL7_CONFIDENTIALITY_OID: &str = "urn:oid:2.16.840.1.113883.5.25";
/// §3, FR Core `identifier[INS-NIR]`: "system urn:oid:1.2.250.1.213.1.4.8".
pub const INS_NIR_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";
/// §3, FR Core `identifier[INS-NIA]`: "system urn:oid:1.2.250.1.213.1.4.9".
pub const INS_NIA_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.9";
/// PRODUCT CHOICE (B11): silence after which a professional's next access opens a new
/// session, hence a new notice.
pub const SESSION_SILENCE: Time = HOUR;
/// The base `Author` has no backend variant: a backend's filings carry this prefix plus the
/// client id as "professional" author, an id that is never a known professional.
pub const BACKEND_AUTHOR_PREFIX: &str = "backend-client:";

// ---------------------------------------------------------------------------------------
// Labels (B12)
// ---------------------------------------------------------------------------------------

/// Issue: "a label under an equivalent system (the OID form of TRE_A07,
/// urn:oid:1.2.250.1.213.1.1.4.13) must be recognised". The canonical system for an
/// equivalent one; any other system is returned unchanged.
pub fn normalise_system(system: &str) -> &str {
    match system {
        TRE_A07_OID => TRE_A07,
        HL7_CONFIDENTIALITY_OID => V3_CONFIDENTIALITY,
        other => other,
    }
}

/// One label with its system made canonical; the code is kept as is (case sensitive).
pub fn normalise_label(l: &Label) -> Label {
    (normalise_system(&l.0).to_string(), l.1.clone())
}

/// §4: "The securityLabel should therefore be treated as a set", after normalisation.
pub fn normalise_labels(labels: &BTreeSet<Label>) -> BTreeSet<Label> {
    labels.iter().map(normalise_label).collect()
}

/// `base::labels_from_json`, then normalised.
pub fn normalised_labels_from_json(resource: &serde_json::Value) -> BTreeSet<Label> {
    normalise_labels(&base::labels_from_json(resource))
}

/// A copy of the document with normalised labels, ready for `base::decide`.
pub fn normalised(doc: &Document) -> Document {
    let mut d = doc.clone();
    d.labels = normalise_labels(&doc.labels);
    d
}

// ---------------------------------------------------------------------------------------
// Emergency access (B1–B4)
// ---------------------------------------------------------------------------------------

/// Issue: "The deployment chooses the default (the seed's opt-in: only if the patient
/// allowed it; or the opt-out of article L1111-17: unless the patient objected) with one
/// setting; the default follows the seed."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmergencyDefault {
    /// Seed 000: "En cas d'urgence, si l'assuré l'a autorisé".
    #[default]
    OptIn,
    /// AC6 (L1111-17): "unless that person objected beforehand".
    OptOut,
}

/// What the patient's rules say about breaking the glass, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtgRule {
    Permitted,
    /// A deny provision with purpose BTG is in effect (it beats a permit: B1).
    Objected,
    /// Opt-in and no permit provision with purpose BTG in effect.
    NotPermitted,
}

/// Issue: "allowed by a permit provision with purpose BTG, objected to by a deny with
/// purpose BTG", with the deployment's default when neither is in effect (B1).
pub fn btg_rule(
    permits: &[Validity],
    denies: &[Validity],
    default: EmergencyDefault,
    now: Time,
) -> BtgRule {
    if denies.iter().any(|v| v.in_effect_at(now)) {
        return BtgRule::Objected;
    }
    if permits.iter().any(|v| v.in_effect_at(now)) {
        return BtgRule::Permitted;
    }
    match default {
        EmergencyDefault::OptIn => BtgRule::NotPermitted,
        EmergencyDefault::OptOut => BtgRule::Permitted,
    }
}

/// Why a BTG declaration does not open the record by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtgRefusal {
    UnknownPatient,
    UnknownProfessional,
    /// Issue 5: "purpose of use BTG, with a written reason" (A16).
    WithoutReason,
    Blocked,
    /// AC4: "mask all documents, emergencies included".
    RecordMaskedEntirely,
    Objected,
    NotPermitted,
    /// Issue 5: "time-limited access" (A14).
    WindowClosed,
}

/// Does this BTG declaration open the patient's record (is `Basis::BreakTheGlass` among the
/// bases)? Other bases (an authorisation...) are not considered: see `decide_record_as`.
/// Order of refusals: B3.
pub fn btg_opens_record(
    cm: &ControlModel,
    professional: &str,
    patient: &str,
    reason: &str,
    declared_at: Time,
    now: Time,
) -> Result<(), BtgRefusal> {
    let rules = cm
        .base
        .patients
        .get(patient)
        .ok_or(BtgRefusal::UnknownPatient)?;
    if !cm.base.professionals.contains_key(professional) {
        return Err(BtgRefusal::UnknownProfessional);
    }
    if reason.trim().is_empty() {
        return Err(BtgRefusal::WithoutReason);
    }
    if rules.is_blocked(professional, now) {
        return Err(BtgRefusal::Blocked);
    }
    if rules.masked_entirely(now) {
        return Err(BtgRefusal::RecordMaskedEntirely);
    }
    match cm.btg_rule_for(patient, now) {
        Some(BtgRule::Objected) => return Err(BtgRefusal::Objected),
        Some(BtgRule::NotPermitted) => return Err(BtgRefusal::NotPermitted),
        _ => {}
    }
    if !(declared_at <= now && now < declared_at + cm.base.emergency_access_duration) {
        return Err(BtgRefusal::WindowClosed);
    }
    Ok(())
}

/// The purpose a professional's client declares. There is deliberately no way to declare
/// the regulation role here: Issue: "The SAMU regulating doctor's role (ETREAT) comes from
/// the professional's login".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredPurpose {
    Normal,
    Btg { reason: String, declared_at: Time },
    Etreat { declared_at: Time },
}

/// The base `Purpose`, with the regulation role taken from the login (B4).
pub fn purpose_from_login(declared: &DeclaredPurpose, login_regulation_role: bool) -> Purpose {
    match declared {
        DeclaredPurpose::Normal => Purpose::Normal,
        DeclaredPurpose::Btg {
            reason,
            declared_at,
        } => Purpose::Btg {
            reason: reason.clone(),
            declared_at: *declared_at,
        },
        DeclaredPurpose::Etreat { declared_at } => Purpose::Etreat {
            regulation_role: login_regulation_role,
            declared_at: *declared_at,
        },
    }
}

// ---------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------

/// Issue: "a PractitionerRole whose organization is the establishment's".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerRole {
    pub professional: String,
    pub organization: String,
    /// A regulating-doctor role (SAMU centre 15): the source of ETREAT's regulation role
    /// through an establishment (B4).
    pub regulation: bool,
    /// PractitionerRole.active and .period (B6).
    pub validity: Validity,
}

/// A registered client (not a person's login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKind {
    /// Issue: "A registered establishment client", for the organisation it represents.
    Establishment { organization: String },
    /// Issue: "A backend service with no professional (client_credentials)".
    Backend,
    /// Issue: "A client registered as the registry".
    Registry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    Authorisation,
    EquivalentRights,
    MedecinTraitant,
}

/// Who wrote a grant (B5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantor {
    Holder,
    LegalRepresentative(String),
}

/// An authorisation, equivalent-rights grant or médecin-traitant designation, with its
/// grantor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub patient: String,
    pub professional: String,
    pub kind: GrantKind,
    pub grantor: Grantor,
    pub validity: Validity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// By the holder or an active representative: stands as an objection (B10).
    ByPatientSide,
    /// By the declaring professional themself.
    ByProfessional,
}

/// Issue: "a Consent the professional writes, naming themselves, with its own provenance".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareTeamDeclaration {
    pub patient: String,
    /// The professional the Consent names, who is also the one who wrote it.
    pub professional: String,
    /// The organisation of the establishment it was recorded through, if any.
    pub through: Option<String>,
    pub recorded_at: Time,
    pub validity: Validity,
    pub withdrawn: Option<Withdrawal>,
}

impl CareTeamDeclaration {
    pub fn in_effect_at(&self, now: Time) -> bool {
        self.withdrawn.is_none() && self.validity.in_effect_at(now)
    }
}

/// The base model plus what issue 16 adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlModel {
    /// Grants in its `PatientRules` count as the holder's; its `emergency_objection` lists
    /// are the deny-BTG provisions.
    pub base: Model,
    pub emergency_default: EmergencyDefault,
    /// Permit provisions with purpose BTG, per patient.
    pub emergency_permits: HashMap<String, Vec<Validity>>,
    pub grants: Vec<Grant>,
    pub care_team: Vec<CareTeamDeclaration>,
    pub directory: Vec<PractitionerRole>,
    pub clients: HashMap<String, ClientKind>,
    /// Patient identifiers (system, value), e.g. the INS.
    pub identifiers: HashMap<String, Vec<(String, String)>>,
}

impl ControlModel {
    pub fn new(base: Model) -> Self {
        ControlModel {
            base,
            emergency_default: EmergencyDefault::default(),
            emergency_permits: HashMap::new(),
            grants: Vec::new(),
            care_team: Vec::new(),
            directory: Vec::new(),
            clients: HashMap::new(),
            identifiers: HashMap::new(),
        }
    }
    pub fn permit_emergency(&mut self, patient: &str, validity: Validity) {
        self.emergency_permits
            .entry(patient.to_string())
            .or_default()
            .push(validity);
    }
    pub fn grant(
        &mut self,
        patient: &str,
        professional: &str,
        kind: GrantKind,
        grantor: Grantor,
        validity: Validity,
    ) {
        self.grants.push(Grant {
            patient: patient.to_string(),
            professional: professional.to_string(),
            kind,
            grantor,
            validity,
        });
    }
    pub fn list_role(
        &mut self,
        professional: &str,
        organization: &str,
        regulation: bool,
        validity: Validity,
    ) {
        self.directory.push(PractitionerRole {
            professional: professional.to_string(),
            organization: organization.to_string(),
            regulation,
            validity,
        });
    }
    pub fn register_client(&mut self, client: &str, kind: ClientKind) {
        self.clients.insert(client.to_string(), kind);
    }
    pub fn add_identifier(&mut self, patient: &str, system: &str, value: &str) {
        self.identifiers
            .entry(patient.to_string())
            .or_default()
            .push((system.to_string(), value.to_string()));
    }

    /// The patient's BTG rule at `now`; None for an unknown patient.
    pub fn btg_rule_for(&self, patient: &str, now: Time) -> Option<BtgRule> {
        let rules = self.base.patients.get(patient)?;
        let permits = self
            .emergency_permits
            .get(patient)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Some(btg_rule(
            permits,
            &rules.emergency_objection,
            self.emergency_default,
            now,
        ))
    }

    /// The base model as it stands at `now`: grants added to the patients' rules (those of
    /// legal representatives only if `with_representative_grants`), care-team declarations
    /// in effect added as authorisations (B10), and each patient's emergency objection
    /// replaced by the outcome of `btg_rule` (none when permitted, a standing one otherwise).
    pub fn effective_model(&self, now: Time, with_representative_grants: bool) -> Model {
        let mut m = self.base.clone();
        for g in &self.grants {
            if !with_representative_grants && matches!(g.grantor, Grantor::LegalRepresentative(_)) {
                continue;
            }
            if let Some(rules) = m.patients.get_mut(g.patient.as_str()) {
                let p = ProfessionalProvision::new(&g.professional, g.validity.clone());
                match g.kind {
                    GrantKind::Authorisation => rules.authorisations.push(p),
                    GrantKind::EquivalentRights => rules.equivalent_rights.push(p),
                    GrantKind::MedecinTraitant => rules.medecin_traitant.push(p),
                }
            }
        }
        for d in &self.care_team {
            if d.in_effect_at(now) {
                if let Some(rules) = m.patients.get_mut(d.patient.as_str()) {
                    rules.authorisations.push(ProfessionalProvision::new(
                        &d.professional,
                        Validity::always(),
                    ));
                }
            }
        }
        for (id, rules) in m.patients.iter_mut() {
            let open = self.btg_rule_for(id, now) == Some(BtgRule::Permitted);
            rules.emergency_objection = if open {
                Vec::new()
            } else {
                vec![Validity::always()]
            };
        }
        m
    }
}

// ---------------------------------------------------------------------------------------
// Requesters and resources
// ---------------------------------------------------------------------------------------

/// Who is asking, beyond the base `Actor`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// A person's own login: the base request (patient, representative, professional). For a
    /// professional, build `purpose` with `purpose_from_login` (B4).
    Login(Request),
    /// An establishment client's token for one of its professionals (JWT bearer grant, sub =
    /// the professional). `request.actor` must be `Actor::Professional`.
    Establishment { client: String, request: Request },
    /// A filing backend (client_credentials). `files_for`: the patients it found by INS or
    /// filed for (B7).
    Backend {
        client: String,
        files_for: BTreeSet<String>,
        now: Time,
    },
    /// The registry client.
    Registry { client: String, now: Time },
    /// A development system token.
    Development { now: Time },
}

impl Requester {
    pub fn now(&self) -> Time {
        match self {
            Requester::Login(r) | Requester::Establishment { request: r, .. } => r.now,
            Requester::Backend { now, .. }
            | Requester::Registry { now, .. }
            | Requester::Development { now } => *now,
        }
    }
    pub fn establishment(client: &str, request: Request) -> Self {
        Requester::Establishment {
            client: client.to_string(),
            request,
        }
    }
    pub fn backend(client: &str, files_for: &[&str], now: Time) -> Self {
        Requester::Backend {
            client: client.to_string(),
            files_for: files_for.iter().map(|p| p.to_string()).collect(),
            now,
        }
    }
    pub fn registry(client: &str, now: Time) -> Self {
        Requester::Registry {
            client: client.to_string(),
            now,
        }
    }
}

/// The kinds of filed (clinical) data. Issue: "creates documents, Binaries, Immunizations,
/// Appointments for a patient".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    DocumentReference,
    Binary,
    Immunization,
    Appointment,
    /// Any other clinical resource (List, Observation...).
    OtherClinical,
}

impl ResourceKind {
    /// B7: the four kinds the issue names.
    pub fn backend_may_file(self) -> bool {
        !matches!(self, ResourceKind::OtherClinical)
    }
}

/// Who filed a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filer {
    Professional(String),
    /// Through an establishment's token: authored by the professional (B6).
    ThroughEstablishment {
        organization: String,
        professional: String,
    },
    PatientSide,
    /// A backend service, by client id.
    Backend(String),
}

impl Filer {
    /// The base oracle's `Author` for this filer.
    pub fn author(&self) -> Author {
        match self {
            Filer::Professional(p)
            | Filer::ThroughEstablishment {
                professional: p, ..
            } => Author::Professional(p.clone()),
            Filer::PatientSide => Author::PatientSide,
            Filer::Backend(c) => Author::Professional(format!("{BACKEND_AUTHOR_PREFIX}{c}")),
        }
    }
}

/// A filed resource: a base `Document` (for a non-document resource, `type_code` is the key
/// the matrix would use), its kind and its filer. The filer decides the author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledResource {
    pub kind: ResourceKind,
    pub document: Document,
    pub filer: Filer,
}

impl FiledResource {
    pub fn new(
        kind: ResourceKind,
        id: &str,
        patient: &str,
        filer: Filer,
        type_code: &str,
        filed_at: Time,
    ) -> Self {
        let document = Document::new(id, patient, filer.author(), type_code, filed_at);
        FiledResource {
            kind,
            document,
            filer,
        }
    }
    pub fn labelled(mut self, system: &str, code: &str) -> Self {
        self.document = self.document.labelled(system, code);
        self
    }
    pub fn patient(&self) -> &str {
        self.document.patient.as_str()
    }
    /// What `base::decide` judges: labels normalised, author from the filer.
    pub fn oracle_document(&self) -> Document {
        let mut d = normalised(&self.document);
        d.author = self.filer.author();
        d
    }
}

/// Issue: "a Binary whose securityContext is the Patient is judged with the labels of the
/// document that points to it".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityContext {
    /// The Binary's securityContext is this DocumentReference.
    Document(FiledResource),
    /// The securityContext is the Patient; `pointing` are the documents whose attachment
    /// points to the Binary.
    Patient {
        patient: String,
        pointing: Vec<FiledResource>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryResource {
    pub id: String,
    pub filer: Filer,
    pub filed_at: Time,
    pub context: SecurityContext,
}

impl BinaryResource {
    pub fn patient(&self) -> &str {
        match &self.context {
            SecurityContext::Document(d) => d.document.patient.as_str(),
            SecurityContext::Patient { patient, .. } => patient.as_str(),
        }
    }
    /// The Binary itself as a filed resource: unlabelled, no type (B13).
    pub fn as_filed(&self) -> FiledResource {
        FiledResource::new(
            ResourceKind::Binary,
            &self.id,
            self.patient(),
            self.filer.clone(),
            "",
            self.filed_at,
        )
    }
}

/// Account and identity data, and the rest of what is not filed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountResource {
    Patient,
    RelatedPerson,
    /// The Consent that makes a RelatedPerson a guardian (issue 5).
    Guardianship,
    /// Patient.active, closure (§2, `dmp-fermeture`).
    Lifecycle,
    /// The patient's other rules: authorisations, blocks, masks, emergency, care team.
    PatientRules,
    /// AuditEvent / Provenance.
    Traces,
}

impl AccountResource {
    /// Issue: "identity and account management: Patient, RelatedPerson, guardianship,
    /// lifecycle".
    pub fn is_identity(self) -> bool {
        matches!(
            self,
            AccountResource::Patient
                | AccountResource::RelatedPerson
                | AccountResource::Guardianship
                | AccountResource::Lifecycle
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

// ---------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    /// The base oracle's reason.
    Rule(HiddenBecause),
    /// BTG under opt-in without a permit in effect (B1).
    EmergencyNotPermitted,
    /// The client is not registered with the kind it acts as.
    UnknownClient,
    /// Issue: "only for professionals the directory lists at that establishment".
    NotActingForProfessional,
    /// Issue: the backend "reads back only what it filed itself".
    NotOwnFiling,
    /// Issue: the registry reads "no clinical data".
    NoClinicalAccess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Visible,
    Hidden(Hidden),
}

impl Outcome {
    pub fn is_visible(&self) -> bool {
        matches!(self, Outcome::Visible)
    }
}

/// Record-level access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordAccess {
    /// A person, with the base oracle's bases.
    Granted(Vec<Basis>),
    /// A backend: its own filings, nothing else (B7).
    OwnFilingsOnly,
    /// A development token (B9).
    Everything,
    Denied(Hidden),
}

impl RecordAccess {
    pub fn bases(&self) -> &[Basis] {
        match self {
            RecordAccess::Granted(b) => b,
            _ => &[],
        }
    }
}

enum Resolved<'a> {
    Person(Request),
    Backend { client: &'a str, now: Time },
    Registry,
    Development,
}

fn establishment_organization<'a>(cm: &'a ControlModel, client: &str) -> Option<&'a str> {
    match cm.clients.get(client) {
        Some(ClientKind::Establishment { organization }) => Some(organization.as_str()),
        _ => None,
    }
}

/// Issue: an establishment obtains a token for a professional "only for professionals the
/// directory lists at that establishment (a PractitionerRole whose organization is the
/// establishment's)". Also checked at each request (B6).
pub fn establishment_may_act_for(
    cm: &ControlModel,
    client: &str,
    professional: &str,
    now: Time,
) -> bool {
    let org = match establishment_organization(cm, client) {
        Some(o) => o,
        None => return false,
    };
    cm.base.professionals.contains_key(professional)
        && cm.directory.iter().any(|r| {
            r.professional == professional && r.organization == org && r.validity.in_effect_at(now)
        })
}

/// B4: through an establishment, the regulation role comes from the directory.
pub fn establishment_regulation_role(
    cm: &ControlModel,
    client: &str,
    professional: &str,
    now: Time,
) -> bool {
    let org = match establishment_organization(cm, client) {
        Some(o) => o,
        None => return false,
    };
    cm.directory.iter().any(|r| {
        r.professional == professional
            && r.organization == org
            && r.regulation
            && r.validity.in_effect_at(now)
    })
}

/// Reduces a requester to a base request, or to a system client.
fn resolve<'a>(cm: &ControlModel, req: &'a Requester) -> Result<Resolved<'a>, Hidden> {
    match req {
        Requester::Login(r) => Ok(Resolved::Person(r.clone())),
        Requester::Establishment { client, request } => {
            if establishment_organization(cm, client).is_none() {
                return Err(Hidden::UnknownClient);
            }
            let pro = match &request.actor {
                Actor::Professional(p) => p.as_str(),
                _ => return Err(Hidden::NotActingForProfessional),
            };
            if !establishment_may_act_for(cm, client, pro, request.now) {
                return Err(Hidden::NotActingForProfessional);
            }
            let mut r = request.clone();
            if let Purpose::Etreat {
                regulation_role, ..
            } = &mut r.purpose
            {
                *regulation_role = establishment_regulation_role(cm, client, pro, request.now);
            }
            Ok(Resolved::Person(r))
        }
        Requester::Backend { client, now, .. } => {
            if matches!(cm.clients.get(client.as_str()), Some(ClientKind::Backend)) {
                Ok(Resolved::Backend {
                    client: client.as_str(),
                    now: *now,
                })
            } else {
                Err(Hidden::UnknownClient)
            }
        }
        Requester::Registry { client, .. } => {
            if matches!(cm.clients.get(client.as_str()), Some(ClientKind::Registry)) {
                Ok(Resolved::Registry)
            } else {
                Err(Hidden::UnknownClient)
            }
        }
        Requester::Development { .. } => Ok(Resolved::Development),
    }
}

fn from_base(cm: &ControlModel, patient: &str, now: Time, d: Decision) -> Outcome {
    match d {
        Decision::Visible => Outcome::Visible,
        Decision::Hidden(HiddenBecause::Record(Denial::EmergencyObjected))
            if cm.btg_rule_for(patient, now) == Some(BtgRule::NotPermitted) =>
        {
            Outcome::Hidden(Hidden::EmergencyNotPermitted)
        }
        Decision::Hidden(h) => Outcome::Hidden(Hidden::Rule(h)),
    }
}

/// A person's view of one (normalised) document: `base::decide` on the effective model,
/// then the grantor rule (B5): Issue: a parent "who authorises a professional must not open
/// to that professional the child's INVISIBLE_REPRESENTANTS_LEGAUX documents".
pub fn decide_person(cm: &ControlModel, r: &Request, doc: &Document) -> Outcome {
    let full = base::decide(&cm.effective_model(r.now, true), r, doc);
    let outcome = from_base(cm, &doc.patient, r.now, full);
    if outcome != Outcome::Visible {
        return outcome;
    }
    if let Actor::Professional(p) = &r.actor {
        if doc.has(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX) && !doc.authored_by(p) {
            let restricted = base::decide(&cm.effective_model(r.now, false), r, doc);
            if !restricted.is_visible() {
                return Outcome::Hidden(Hidden::Rule(HiddenBecause::InvisibleRepresentantsLegaux));
            }
        }
    }
    Outcome::Visible
}

/// Issue: the backend "reads back only what it filed itself, never the rest of the record";
/// "No client of any kind reads documents past the patient's rules" (mask everything, B7).
fn backend_reads_back(cm: &ControlModel, client: &str, res: &FiledResource, now: Time) -> Outcome {
    if !matches!(&res.filer, Filer::Backend(c) if c == client) {
        return Outcome::Hidden(Hidden::NotOwnFiling);
    }
    match cm.base.patients.get(res.patient()) {
        None => Outcome::Hidden(Hidden::Rule(HiddenBecause::Record(Denial::UnknownPatient))),
        Some(rules) if rules.masked_entirely(now) => Outcome::Hidden(Hidden::Rule(
            HiddenBecause::Record(Denial::RecordMaskedEntirely),
        )),
        Some(_) => Outcome::Visible,
    }
}

/// May the requester read this filed resource (through any channel)? Issue: through an
/// establishment "the patient's rules, blocks, masks and the matrice d'habilitation apply to
/// it exactly as to the professional's own login"; the backend reads back only its own; the
/// registry reads "no clinical data"; development tokens "may keep full access".
pub fn decide_clinical(cm: &ControlModel, req: &Requester, res: &FiledResource) -> Outcome {
    match resolve(cm, req) {
        Err(h) => Outcome::Hidden(h),
        Ok(Resolved::Development) => Outcome::Visible,
        Ok(Resolved::Registry) => Outcome::Hidden(Hidden::NoClinicalAccess),
        Ok(Resolved::Backend { client, now }) => backend_reads_back(cm, client, res, now),
        Ok(Resolved::Person(r)) => decide_person(cm, &r, &res.oracle_document()),
    }
}

/// The resources whose decisions judge a Binary (B13).
pub fn binary_judges(bin: &BinaryResource) -> Vec<FiledResource> {
    match &bin.context {
        SecurityContext::Document(d) => vec![d.clone()],
        SecurityContext::Patient { pointing, .. } if pointing.is_empty() => vec![bin.as_filed()],
        SecurityContext::Patient { patient, pointing } => {
            let mut out = Vec::new();
            for d in pointing {
                out.push(d.clone());
                if d.document.patient != *patient {
                    let mut c = d.clone();
                    c.document.patient = patient.clone();
                    out.push(c);
                }
            }
            out
        }
    }
}

/// Issue: "a Binary whose securityContext is the Patient is judged with the labels of the
/// document that points to it" (B13).
pub fn decide_binary(cm: &ControlModel, req: &Requester, bin: &BinaryResource) -> Outcome {
    match resolve(cm, req) {
        Err(h) => Outcome::Hidden(h),
        Ok(Resolved::Development) => Outcome::Visible,
        Ok(Resolved::Registry) => Outcome::Hidden(Hidden::NoClinicalAccess),
        Ok(Resolved::Backend { client, now }) => {
            backend_reads_back(cm, client, &bin.as_filed(), now)
        }
        Ok(Resolved::Person(r)) => {
            for j in binary_judges(bin) {
                let o = decide_person(cm, &r, &j.oracle_document());
                if o != Outcome::Visible {
                    return o;
                }
            }
            Outcome::Visible
        }
    }
}

/// Record-level access of any requester (for $everything, compartment search, count...).
pub fn decide_record_as(cm: &ControlModel, req: &Requester, patient: &str) -> RecordAccess {
    match resolve(cm, req) {
        Err(h) => RecordAccess::Denied(h),
        Ok(Resolved::Development) => RecordAccess::Everything,
        Ok(Resolved::Registry) => RecordAccess::Denied(Hidden::NoClinicalAccess),
        Ok(Resolved::Backend { now, .. }) => match cm.base.patients.get(patient) {
            None => {
                RecordAccess::Denied(Hidden::Rule(HiddenBecause::Record(Denial::UnknownPatient)))
            }
            Some(rules) if rules.masked_entirely(now) => RecordAccess::Denied(Hidden::Rule(
                HiddenBecause::Record(Denial::RecordMaskedEntirely),
            )),
            Some(_) => RecordAccess::OwnFilingsOnly,
        },
        Ok(Resolved::Person(r)) => {
            match base::decide_record(&cm.effective_model(r.now, true), &r, patient) {
                RecordDecision::Granted(b) => RecordAccess::Granted(b),
                RecordDecision::Denied(Denial::EmergencyObjected)
                    if cm.btg_rule_for(patient, r.now) == Some(BtgRule::NotPermitted) =>
                {
                    RecordAccess::Denied(Hidden::EmergencyNotPermitted)
                }
                RecordDecision::Denied(d) => {
                    RecordAccess::Denied(Hidden::Rule(HiddenBecause::Record(d)))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// History of a deleted resource (B14)
// ---------------------------------------------------------------------------------------

/// One version of a resource: its labels, and whether it is a deletion (a DELETE tombstone
/// or a status set to entered-in-error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionState {
    pub labels: BTreeSet<Label>,
    pub deletion: bool,
}

impl VersionState {
    pub fn live(labels: BTreeSet<Label>) -> Self {
        VersionState {
            labels,
            deletion: false,
        }
    }
    pub fn deleted(labels: BTreeSet<Label>) -> Self {
        VersionState {
            labels,
            deletion: true,
        }
    }
}

/// The union of the (normalised) labels of all the given versions: the labels that judge the
/// older versions of a deleted resource.
pub fn union_of_versions(versions: &[VersionState]) -> BTreeSet<Label> {
    versions
        .iter()
        .flat_map(|v| normalise_labels(&v.labels))
        .collect()
}

/// Issue: "a resource masked and then deleted must keep, in its older versions, the
/// strictest labels the resource ever had until its deletion". The labels that judge version
/// `index` (0 = first) of a resource whose versions are `versions`, oldest first (B14).
pub fn labels_for_version(versions: &[VersionState], index: usize) -> BTreeSet<Label> {
    let mut out = versions
        .last()
        .map(|v| normalise_labels(&v.labels))
        .unwrap_or_default();
    if let Some(last_deletion) = versions.iter().rposition(|v| v.deletion) {
        if index <= last_deletion {
            out.extend(union_of_versions(&versions[..=last_deletion]));
        }
    }
    out
}

/// May the requester read version `index` of a resource whose last live state is `res`?
pub fn decide_version(
    cm: &ControlModel,
    req: &Requester,
    res: &FiledResource,
    versions: &[VersionState],
    index: usize,
) -> Outcome {
    let mut judged = res.clone();
    judged.document.labels = labels_for_version(versions, index);
    decide_clinical(cm, req, &judged)
}

// ---------------------------------------------------------------------------------------
// Writes and account data
// ---------------------------------------------------------------------------------------

/// Filing. Issue 5 / AC2 for persons (`base::may_file`, through an establishment only for
/// its listed professionals); Issue 16 for the backend ("files data (creates documents,
/// Binaries, Immunizations, Appointments for a patient)", B7); never the registry.
pub fn may_file_as(cm: &ControlModel, req: &Requester, patient: &str, kind: ResourceKind) -> bool {
    match resolve(cm, req) {
        Err(_) => false,
        Ok(Resolved::Development) => true,
        Ok(Resolved::Registry) => false,
        Ok(Resolved::Backend { .. }) => {
            kind.backend_may_file() && cm.base.patients.contains_key(patient)
        }
        Ok(Resolved::Person(r)) => base::may_file(&cm.effective_model(r.now, true), &r, patient),
    }
}

/// Deletion: `base::may_delete` for persons (AC9); a backend only creates (B7).
pub fn may_delete_as(cm: &ControlModel, req: &Requester, res: &FiledResource) -> bool {
    match resolve(cm, req) {
        Err(_) | Ok(Resolved::Registry) | Ok(Resolved::Backend { .. }) => false,
        Ok(Resolved::Development) => true,
        Ok(Resolved::Person(r)) => {
            base::may_delete(&cm.effective_model(r.now, true), &r, &res.oracle_document())
        }
    }
}

/// Label changes: `base::may_change_labels` on normalised labels, on both sides (B12), by
/// someone who sees the resource under this module's rules.
pub fn may_change_labels_as(
    cm: &ControlModel,
    req: &Requester,
    res: &FiledResource,
    new_labels: &BTreeSet<Label>,
) -> bool {
    match resolve(cm, req) {
        Err(_) | Ok(Resolved::Registry) | Ok(Resolved::Backend { .. }) => false,
        Ok(Resolved::Development) => true,
        Ok(Resolved::Person(r)) => {
            let doc = res.oracle_document();
            decide_person(cm, &r, &doc).is_visible()
                && base::may_change_labels(
                    &cm.effective_model(r.now, true),
                    &r,
                    &doc,
                    &normalise_labels(new_labels),
                )
        }
    }
}

/// Account data for the system clients (B7, B8, B9). Issue: the registry "reads and writes
/// those, and no clinical data"; the backend "finds the Patient it files for by identifier
/// (INS) and reads that Patient resource". None for persons: not this oracle's rule.
pub fn may_access_account(
    cm: &ControlModel,
    req: &Requester,
    access: Access,
    what: AccountResource,
    patient: &str,
) -> Option<bool> {
    match req {
        Requester::Development { .. } => Some(true),
        Requester::Registry { client, .. } => Some(
            matches!(cm.clients.get(client.as_str()), Some(ClientKind::Registry))
                && what.is_identity(),
        ),
        Requester::Backend {
            client, files_for, ..
        } => Some(
            matches!(cm.clients.get(client.as_str()), Some(ClientKind::Backend))
                && access == Access::Read
                && what == AccountResource::Patient
                && files_for.contains(patient)
                && cm.base.patients.contains_key(patient),
        ),
        Requester::Login(_) | Requester::Establishment { .. } => None,
    }
}

fn patients_with_identifier(cm: &ControlModel, system: Option<&str>, value: &str) -> Vec<String> {
    let mut out: Vec<String> = cm
        .identifiers
        .iter()
        .filter(|(_, ids)| {
            ids.iter()
                .any(|(s, v)| v == value && system.is_none_or(|want| s == want))
        })
        .map(|(p, _)| p.clone())
        .collect();
    out.sort();
    out
}

/// `GET Patient?identifier=[system|]value` by a system client: the matching patient ids,
/// sorted. The backend only with an INS system (B7); the registry and development tokens
/// with any. None for persons: not this oracle's rule.
pub fn patient_search_by_identifier(
    cm: &ControlModel,
    req: &Requester,
    system: Option<&str>,
    value: &str,
) -> Option<Vec<String>> {
    match resolve(cm, req) {
        Ok(Resolved::Development) | Ok(Resolved::Registry) => {
            Some(patients_with_identifier(cm, system, value))
        }
        Ok(Resolved::Backend { .. }) => Some(match system {
            Some(s) if s == INS_NIR_SYSTEM || s == INS_NIA_SYSTEM => {
                patients_with_identifier(cm, Some(s), value)
            }
            _ => Vec::new(),
        }),
        Err(_) => match req {
            Requester::Backend { .. } | Requester::Registry { .. } => Some(Vec::new()),
            _ => None,
        },
        Ok(Resolved::Person(_)) => None,
    }
}

/// Writing the emergency permit or deny (Issue: "the patient's rules say whether
/// professionals may break the glass"): the holder or an active representative, like the
/// base oracle's other Consents (A23; a permit is a relaxation, allowed through an app like
/// an authorisation); development tokens.
pub fn may_write_emergency_rule(cm: &ControlModel, req: &Requester, patient: &str) -> bool {
    match req {
        Requester::Development { .. } => true,
        Requester::Login(r) => base::decide_record(&cm.base, r, patient)
            .bases()
            .iter()
            .any(|b| matches!(b, Basis::Holder | Basis::LegalRepresentative)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Traces (AC7)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceActor {
    Patient(String),
    LegalRepresentative(String),
    Professional(String),
    Establishment(String),
    /// A backend or registry client.
    Client(String),
    Development,
}

fn person_trace(actor: &Actor) -> TraceActor {
    match actor {
        Actor::Patient(p) => TraceActor::Patient(p.clone()),
        Actor::LegalRepresentative(p) => TraceActor::LegalRepresentative(p.clone()),
        Actor::Professional(p) => TraceActor::Professional(p.clone()),
    }
}

/// Issue: "traces name both the professional and the establishment". AC7: "actor
/// (professional, establishment or digital service)".
pub fn trace_actors(cm: &ControlModel, req: &Requester) -> Vec<TraceActor> {
    match req {
        Requester::Login(r) => vec![person_trace(&r.actor)],
        Requester::Establishment { client, request } => vec![
            person_trace(&request.actor),
            match establishment_organization(cm, client) {
                Some(o) => TraceActor::Establishment(o.to_string()),
                None => TraceActor::Client(client.clone()),
            },
        ],
        Requester::Backend { client, .. } | Requester::Registry { client, .. } => {
            vec![TraceActor::Client(client.clone())]
        }
        Requester::Development { .. } => vec![TraceActor::Development],
    }
}

// ---------------------------------------------------------------------------------------
// Care team (B10)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CareTeamRefusal {
    UnknownPatient,
    UnknownProfessional,
    /// Issue: "A blocked professional cannot record it."
    Blocked,
    /// The patient side withdrew a declaration of this professional (B10).
    PatientWithdrewIt,
    /// Only a professional records it.
    NotAProfessional,
    /// Issue: "naming themselves".
    NamesAnotherProfessional,
    NotActingForProfessional,
}

/// Issue: "a professional records that the patient was informed and did not object [...]
/// A blocked professional cannot record it." Evaluated at `now`.
pub fn may_declare_care_team(
    cm: &ControlModel,
    professional: &str,
    patient: &str,
    now: Time,
) -> Result<(), CareTeamRefusal> {
    let rules = cm
        .base
        .patients
        .get(patient)
        .ok_or(CareTeamRefusal::UnknownPatient)?;
    if !cm.base.professionals.contains_key(professional) {
        return Err(CareTeamRefusal::UnknownProfessional);
    }
    if rules.is_blocked(professional, now) {
        return Err(CareTeamRefusal::Blocked);
    }
    if cm.care_team.iter().any(|d| {
        d.patient == patient
            && d.professional == professional
            && d.withdrawn == Some(Withdrawal::ByPatientSide)
    }) {
        return Err(CareTeamRefusal::PatientWithdrewIt);
    }
    Ok(())
}

/// The same for a requester writing a declaration that names `named`.
pub fn may_declare_care_team_as(
    cm: &ControlModel,
    req: &Requester,
    patient: &str,
    named: &str,
) -> Result<(), CareTeamRefusal> {
    match req {
        Requester::Development { .. } => Ok(()),
        Requester::Login(r) => match &r.actor {
            Actor::Professional(p) => {
                if p.as_str() != named {
                    return Err(CareTeamRefusal::NamesAnotherProfessional);
                }
                may_declare_care_team(cm, p, patient, r.now)
            }
            _ => Err(CareTeamRefusal::NotAProfessional),
        },
        Requester::Establishment { client, request } => match &request.actor {
            Actor::Professional(p) => {
                if !establishment_may_act_for(cm, client, p, request.now) {
                    return Err(CareTeamRefusal::NotActingForProfessional);
                }
                if p.as_str() != named {
                    return Err(CareTeamRefusal::NamesAnotherProfessional);
                }
                may_declare_care_team(cm, p, patient, request.now)
            }
            _ => Err(CareTeamRefusal::NotActingForProfessional),
        },
        Requester::Backend { .. } | Requester::Registry { .. } => {
            Err(CareTeamRefusal::NotAProfessional)
        }
    }
}

/// Records the declaration if allowed. Its effect: "is then authorised like a professional
/// the patient authorised" (via `ControlModel::effective_model`).
pub fn record_care_team(
    cm: &mut ControlModel,
    req: &Requester,
    patient: &str,
    named: &str,
) -> Result<(), CareTeamRefusal> {
    may_declare_care_team_as(cm, req, patient, named)?;
    let through = match req {
        Requester::Establishment { client, .. } => {
            establishment_organization(cm, client).map(str::to_string)
        }
        _ => None,
    };
    let now = req.now();
    cm.care_team.push(CareTeamDeclaration {
        patient: patient.to_string(),
        professional: named.to_string(),
        through,
        recorded_at: now,
        validity: Validity::between(Some(now), None),
        withdrawn: None,
    });
    Ok(())
}

/// Issue: "with its own provenance": the professional, and the establishment if recorded
/// through one.
pub fn care_team_provenance(decl: &CareTeamDeclaration) -> Vec<TraceActor> {
    let mut out = vec![TraceActor::Professional(decl.professional.clone())];
    if let Some(org) = &decl.through {
        out.push(TraceActor::Establishment(org.clone()));
    }
    out
}

/// Issue: "the patient is notified, sees it in their rules". The professionals whose
/// declaration is in effect, sorted.
pub fn care_team_in_rules(cm: &ControlModel, patient: &str, now: Time) -> Vec<String> {
    let mut out: Vec<String> = cm
        .care_team
        .iter()
        .filter(|d| d.patient == patient && d.in_effect_at(now))
        .map(|d| d.professional.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The holder and the active representatives, sorted (B10, B11).
pub fn patient_side_recipients(cm: &ControlModel, patient: &str, now: Time) -> Vec<Recipient> {
    let rules = match cm.base.patients.get(patient) {
        Some(r) => r,
        None => return Vec::new(),
    };
    let mut out = vec![Recipient::Holder(patient.to_string())];
    for g in &rules.guardians {
        if g.validity.in_effect_at(now) {
            out.push(Recipient::LegalRepresentative(g.representative.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Issue: "the patient is notified" of a care-team declaration.
pub fn care_team_notice_recipients(cm: &ControlModel, patient: &str, now: Time) -> Vec<Recipient> {
    patient_side_recipients(cm, patient, now)
}

/// Issue: the patient "can withdraw it". Who may, and as what: the holder or an active
/// representative (also through an app: withdrawing restricts), the declaring professional;
/// a development token counts as the patient side. None: not allowed.
pub fn may_withdraw_care_team(
    cm: &ControlModel,
    req: &Requester,
    decl: &CareTeamDeclaration,
) -> Option<Withdrawal> {
    match req {
        Requester::Development { .. } => Some(Withdrawal::ByPatientSide),
        Requester::Login(r) => match &r.actor {
            Actor::Patient(me) if *me == decl.patient => Some(Withdrawal::ByPatientSide),
            Actor::LegalRepresentative(person)
                if cm
                    .base
                    .patients
                    .get(decl.patient.as_str())
                    .is_some_and(|p| p.represented_by(person, r.now)) =>
            {
                Some(Withdrawal::ByPatientSide)
            }
            Actor::Professional(p) if *p == decl.professional => Some(Withdrawal::ByProfessional),
            _ => None,
        },
        Requester::Establishment { client, request } => match &request.actor {
            Actor::Professional(p)
                if *p == decl.professional
                    && establishment_may_act_for(cm, client, p, request.now) =>
            {
                Some(Withdrawal::ByProfessional)
            }
            _ => None,
        },
        Requester::Backend { .. } | Requester::Registry { .. } => None,
    }
}

/// Withdraws every declaration in effect of `professional` for `patient` the requester may
/// withdraw; true if any was.
pub fn withdraw_care_team(
    cm: &mut ControlModel,
    req: &Requester,
    patient: &str,
    professional: &str,
) -> bool {
    let now = req.now();
    let mut changed = false;
    for i in 0..cm.care_team.len() {
        let who = {
            let d = &cm.care_team[i];
            if d.patient != patient || d.professional != professional || !d.in_effect_at(now) {
                continue;
            }
            may_withdraw_care_team(cm, req, d)
        };
        if let Some(w) = who {
            cm.care_team[i].withdrawn = Some(w);
            changed = true;
        }
    }
    changed
}

// ---------------------------------------------------------------------------------------
// Access notices (B11)
// ---------------------------------------------------------------------------------------

/// The professional whose session an access belongs to (own login or any establishment);
/// None for anyone else: only professionals' accesses are announced.
pub fn session_professional(req: &Requester) -> Option<String> {
    match req {
        Requester::Login(r) | Requester::Establishment { request: r, .. } => match &r.actor {
            Actor::Professional(p) => Some(p.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The start of each session in a professional's granted reads of one record (any order):
/// a new session when `silence` or more has passed since the previous access (B11).
pub fn session_starts(times: &[Time], silence: Time) -> Vec<Time> {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut starts = Vec::new();
    let mut previous: Option<Time> = None;
    for t in sorted {
        match previous {
            Some(p) if t - p < silence => {}
            _ => starts.push(t),
        }
        previous = Some(t);
    }
    starts
}

/// Issue: "a notice for each new access session of a professional (not only the very first
/// access ever)". Seed 000: "Reçoit une notification dès qu'un professionnel se connecte."
/// The number of notices, with `SESSION_SILENCE`.
pub fn access_notices(times: &[Time]) -> usize {
    session_starts(times, SESSION_SILENCE).len()
}

/// The same with another silence (to align with the engine's setting).
pub fn access_notices_with_silence(times: &[Time], silence: Time) -> usize {
    session_starts(times, silence).len()
}

/// A granted read and the grant it rests on (any stable key: the authorisation or
/// care-team Consent's id, "btg:<declared_at>"...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    pub at: Time,
    pub grant: String,
}

/// Sessions that also restart on a new grant (B11: "e.g. a new grant, or after some hours
/// of silence").
pub fn access_notices_with_grants(events: &[AccessEvent], silence: Time) -> usize {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.at);
    let mut notices = 0;
    let mut previous: Option<&AccessEvent> = None;
    for e in &sorted {
        let new_session = match previous {
            None => true,
            Some(p) => e.at - p.at >= silence || e.grant != p.grant,
        };
        if new_session {
            notices += 1;
        }
        previous = Some(e);
    }
    notices
}

/// Who receives an access notice (B11).
pub fn access_notice_recipients(cm: &ControlModel, patient: &str, now: Time) -> Vec<Recipient> {
    patient_side_recipients(cm, patient, now)
}

// ---------------------------------------------------------------------------------------
// Unit tests: one scenario per rule
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent_oracle::{
        label, utc, Guardianship, Matrix, CONF_N, DAY, INVISIBLE_PATIENT, MASQUE_PS, MINUTE,
    };

    // Placeholder codes and ids (domain.md names none for the matrix; the INS values are
    // made up and stand for nobody).
    const MEDECIN: &str = "medecin";
    const INFIRMIER: &str = "infirmier";
    const CR: &str = "compte-rendu";
    const ORDONNANCE: &str = "ordonnance";
    const CHU: &str = "chu";
    const CHU_CLIENT: &str = "chu-client";
    const SAMU: &str = "samu";
    const SAMU_CLIENT: &str = "samu-client";
    const LABO: &str = "labo-client";
    const AUTRE_LABO: &str = "autre-labo-client";
    const REGISTRE: &str = "registre-client";
    const ALICE_NIR: &str = "2990199000001";
    const LEO_NIA: &str = "1240175000002";
    const MISSPELT_TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument";

    fn t0() -> Time {
        utc(2025, 3, 10, 9, 0, 0)
    }

    /// alice: adult, authorises dr-ville and dr-bloque (who is also blocked). leo: a child,
    /// represented by marie, authorises nobody. bob: nobody. dr-hopital, inf-hopital and
    /// dr-bloque are listed at the CHU, regulateur at the SAMU with the regulation role.
    fn world() -> ControlModel {
        let mut matrix = Matrix::default();
        matrix.allow(MEDECIN, CR);
        matrix.allow(MEDECIN, ORDONNANCE);
        matrix.allow(INFIRMIER, ORDONNANCE);
        matrix.forbid(INFIRMIER, CR);
        let mut m = Model::new(matrix);
        for p in [
            "dr-ville",
            "dr-hopital",
            "dr-bloque",
            "dr-inconnu",
            "regulateur",
        ] {
            m.add_professional(p, MEDECIN, false);
        }
        m.add_professional("inf-hopital", INFIRMIER, false);
        let alice = m.add_patient("alice");
        for p in ["dr-ville", "dr-bloque"] {
            alice
                .authorisations
                .push(ProfessionalProvision::new(p, Validity::always()));
        }
        alice
            .blocks
            .push(ProfessionalProvision::new("dr-bloque", Validity::always()));
        let leo = m.add_patient("leo");
        leo.guardians
            .push(Guardianship::new("marie", Validity::always()));
        m.add_patient("bob");
        let mut cm = ControlModel::new(m);
        cm.register_client(
            CHU_CLIENT,
            ClientKind::Establishment {
                organization: CHU.into(),
            },
        );
        cm.register_client(
            SAMU_CLIENT,
            ClientKind::Establishment {
                organization: SAMU.into(),
            },
        );
        cm.register_client(LABO, ClientKind::Backend);
        cm.register_client(AUTRE_LABO, ClientKind::Backend);
        cm.register_client(REGISTRE, ClientKind::Registry);
        for p in ["dr-hopital", "inf-hopital", "dr-bloque"] {
            cm.list_role(p, CHU, false, Validity::always());
        }
        cm.list_role("regulateur", SAMU, true, Validity::always());
        cm.add_identifier("alice", INS_NIR_SYSTEM, ALICE_NIR);
        cm.add_identifier("leo", INS_NIA_SYSTEM, LEO_NIA);
        cm.add_identifier("bob", "urn:oid:1.2.3.4", "local-42");
        cm
    }

    fn by(p: &str) -> Filer {
        Filer::Professional(p.to_string())
    }
    fn doc(patient: &str, filer: Filer) -> FiledResource {
        FiledResource::new(
            ResourceKind::DocumentReference,
            "d1",
            patient,
            filer,
            CR,
            t0() - DAY,
        )
    }
    fn login(r: Request) -> Requester {
        Requester::Login(r)
    }
    fn pro(id: &str) -> Requester {
        login(Request::professional(id, t0()))
    }
    fn patient(id: &str) -> Requester {
        login(Request::patient(id, t0()))
    }
    fn via_chu(id: &str) -> Requester {
        Requester::establishment(CHU_CLIENT, Request::professional(id, t0()))
    }
    fn btg(id: &str) -> Requester {
        login(Request::btg(id, "inconscient", t0(), t0()))
    }
    fn hidden(h: Hidden) -> Outcome {
        Outcome::Hidden(h)
    }
    fn rule(h: HiddenBecause) -> Outcome {
        Outcome::Hidden(Hidden::Rule(h))
    }
    fn record(d: Denial) -> Outcome {
        rule(HiddenBecause::Record(d))
    }
    fn sees(cm: &ControlModel, req: &Requester, res: &FiledResource) -> bool {
        decide_clinical(cm, req, res).is_visible()
    }
    fn set(labels: &[(&str, &str)]) -> BTreeSet<Label> {
        labels.iter().map(|(s, c)| label(s, c)).collect()
    }

    // --- Labels (B12) ---------------------------------------------------------------------

    #[test]
    fn tre_a07_under_its_oid_is_tre_a07() {
        assert_eq!(
            normalise_label(&label(TRE_A07_OID, MASQUE_PS)),
            label(TRE_A07, MASQUE_PS)
        );
        assert_eq!(
            normalise_label(&label(HL7_CONFIDENTIALITY_OID, CONF_N)),
            label(V3_CONFIDENTIALITY, CONF_N)
        );
        // Not equivalent: the misspelt system, a bare OID, another case of code.
        for l in [
            label(MISSPELT_TRE_A07, MASQUE_PS),
            label("1.2.250.1.213.1.1.4.13", MASQUE_PS),
            label(TRE_A07, "masque_ps"),
        ] {
            assert_eq!(normalise_label(&l), l);
        }
        let json = serde_json::json!({
            "securityLabel": [{ "coding": [{ "system": TRE_A07_OID, "code": INVISIBLE_PATIENT }] }]
        });
        assert_eq!(
            normalised_labels_from_json(&json),
            set(&[(TRE_A07, INVISIBLE_PATIENT)])
        );
    }

    #[test]
    fn a_mask_under_the_oid_masks() {
        let cm = world();
        let oid_masked = doc("alice", by("dr-inconnu")).labelled(TRE_A07_OID, MASQUE_PS);
        assert_eq!(
            decide_clinical(&cm, &pro("dr-ville"), &oid_masked),
            rule(HiddenBecause::MasquePs)
        );
        // The base oracle alone does not see it (its A8): the door this module closes.
        assert!(base::decide(
            &cm.base,
            &Request::professional("dr-ville", t0()),
            &oid_masked.document
        )
        .is_visible());
        // The misspelt system still masks nothing (B12).
        let misspelt = doc("alice", by("dr-inconnu")).labelled(MISSPELT_TRE_A07, MASQUE_PS);
        assert!(sees(&cm, &pro("dr-ville"), &misspelt));
    }

    #[test]
    fn an_author_cannot_remove_a_mask_written_under_the_oid() {
        let cm = world();
        let d = doc("alice", by("dr-ville")).labelled(TRE_A07_OID, MASQUE_PS);
        let none = BTreeSet::new();
        // The base oracle takes it for an ordinary label, which the author may remove.
        assert!(base::may_change_labels(
            &cm.base,
            &Request::professional("dr-ville", t0()),
            &d.document,
            &none
        ));
        assert!(!may_change_labels_as(&cm, &pro("dr-ville"), &d, &none));
        assert!(may_change_labels_as(&cm, &patient("alice"), &d, &none));
        // Unmasking by writing N under the HL7 OID is still an unmasking.
        let n_oid = set(&[(HL7_CONFIDENTIALITY_OID, CONF_N)]);
        assert!(!may_change_labels_as(&cm, &pro("dr-ville"), &d, &n_oid));
    }

    // --- Emergency access (B1–B4) --------------------------------------------------------

    #[test]
    fn the_default_follows_the_seed_opt_in() {
        let cm = world();
        assert_eq!(EmergencyDefault::default(), EmergencyDefault::OptIn);
        assert_eq!(cm.emergency_default, EmergencyDefault::OptIn);
        let d = doc("alice", by("dr-ville"));
        assert_eq!(
            decide_clinical(&cm, &btg("dr-inconnu"), &d),
            hidden(Hidden::EmergencyNotPermitted)
        );
        assert_eq!(
            btg_opens_record(&cm, "dr-inconnu", "alice", "inconscient", t0(), t0()),
            Err(BtgRefusal::NotPermitted)
        );
        assert_eq!(
            decide_record_as(&cm, &btg("dr-inconnu"), "alice"),
            RecordAccess::Denied(Hidden::EmergencyNotPermitted)
        );
        // An authorised professional keeps their ordinary access, without the BTG basis.
        assert_eq!(
            decide_record_as(&cm, &btg("dr-ville"), "alice"),
            RecordAccess::Granted(vec![Basis::Authorisation])
        );
    }

    #[test]
    fn a_permit_opens_under_opt_in_and_a_deny_beats_it() {
        let mut cm = world();
        let d = doc("alice", by("dr-ville"));
        cm.permit_emergency("alice", Validity::always());
        assert!(sees(&cm, &btg("dr-inconnu"), &d));
        assert_eq!(
            decide_record_as(&cm, &btg("dr-inconnu"), "alice"),
            RecordAccess::Granted(vec![Basis::BreakTheGlass])
        );
        cm.base
            .patient_mut("alice")
            .emergency_objection
            .push(Validity::always());
        assert_eq!(
            decide_clinical(&cm, &btg("dr-inconnu"), &d),
            record(Denial::EmergencyObjected)
        );
        assert_eq!(
            btg_opens_record(&cm, "dr-inconnu", "alice", "inconscient", t0(), t0()),
            Err(BtgRefusal::Objected)
        );
        // A permit that ended, or not active, permits nothing.
        let mut cm = world();
        cm.permit_emergency("alice", Validity::between(None, Some(t0() - 1)));
        cm.permit_emergency("alice", Validity::inactive());
        assert_eq!(
            decide_clinical(&cm, &btg("dr-inconnu"), &d),
            hidden(Hidden::EmergencyNotPermitted)
        );
    }

    #[test]
    fn opt_out_opens_unless_the_patient_objected() {
        let mut cm = world();
        cm.emergency_default = EmergencyDefault::OptOut;
        let d = doc("alice", by("dr-ville"));
        assert!(sees(&cm, &btg("dr-inconnu"), &d));
        cm.base
            .patient_mut("alice")
            .emergency_objection
            .push(Validity::always());
        assert_eq!(
            decide_clinical(&cm, &btg("dr-inconnu"), &d),
            record(Denial::EmergencyObjected)
        );
    }

    #[test]
    fn mask_everything_and_blocks_beat_a_permit() {
        let mut cm = world();
        cm.permit_emergency("alice", Validity::always());
        let d = doc("alice", by("dr-ville"));
        assert_eq!(
            decide_clinical(&cm, &btg("dr-bloque"), &d),
            record(Denial::Blocked)
        );
        assert_eq!(
            btg_opens_record(&cm, "dr-bloque", "alice", "inconscient", t0(), t0()),
            Err(BtgRefusal::Blocked)
        );
        cm.base
            .patient_mut("alice")
            .mask_everything
            .push(Validity::between(None, Some(t0())));
        assert_eq!(
            decide_clinical(&cm, &btg("dr-inconnu"), &d),
            record(Denial::RecordMaskedEntirely)
        );
        assert_eq!(
            btg_opens_record(&cm, "dr-inconnu", "alice", "inconscient", t0(), t0()),
            Err(BtgRefusal::RecordMaskedEntirely)
        );
        // Undone (the mask ended at t0): the permit applies again.
        let later = login(Request::btg("dr-inconnu", "inconscient", t0(), t0() + 1));
        assert!(sees(&cm, &later, &d));
    }

    #[test]
    fn the_window_still_closes() {
        let mut cm = world();
        cm.permit_emergency("alice", Validity::always());
        let end = t0() + cm.base.emergency_access_duration;
        assert_eq!(
            btg_opens_record(&cm, "dr-inconnu", "alice", "x", t0(), end - 1),
            Ok(())
        );
        assert_eq!(
            btg_opens_record(&cm, "dr-inconnu", "alice", "x", t0(), end),
            Err(BtgRefusal::WindowClosed)
        );
        assert_eq!(
            btg_opens_record(&cm, "dr-inconnu", "alice", " ", t0(), t0()),
            Err(BtgRefusal::WithoutReason)
        );
    }

    #[test]
    fn btg_refusal_agrees_with_the_record_decision() {
        for default in [EmergencyDefault::OptIn, EmergencyDefault::OptOut] {
            for permit in [false, true] {
                for deny in [false, true] {
                    for mask in [false, true] {
                        let mut cm = world();
                        cm.emergency_default = default;
                        if permit {
                            cm.permit_emergency("alice", Validity::always());
                        }
                        let rules = cm.base.patient_mut("alice");
                        if deny {
                            rules.emergency_objection.push(Validity::always());
                        }
                        if mask {
                            rules.mask_everything.push(Validity::always());
                        }
                        for who in ["dr-inconnu", "dr-ville", "dr-bloque"] {
                            for declared in [t0(), t0() - 5 * HOUR] {
                                let req = login(Request::btg(who, "malaise", declared, t0()));
                                let opens =
                                    btg_opens_record(&cm, who, "alice", "malaise", declared, t0())
                                        .is_ok();
                                let bases = decide_record_as(&cm, &req, "alice");
                                assert_eq!(
                                    opens,
                                    bases.bases().contains(&Basis::BreakTheGlass),
                                    "{default:?} permit={permit} deny={deny} mask={mask} {who} {declared}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn samu_regulation_does_not_depend_on_the_emergency_default() {
        let mut cm = world();
        let d = doc("alice", by("dr-ville"));
        let samu = login(Request::samu_regulator("regulateur", t0(), t0()));
        assert!(sees(&cm, &samu, &d)); // opt-in, no permit
        cm.base
            .patient_mut("alice")
            .emergency_objection
            .push(Validity::always());
        assert!(sees(&cm, &samu, &d)); // the BTG deny does not stop regulation (A15)
        cm.base
            .patient_mut("alice")
            .regulation_objection
            .push(Validity::always());
        assert_eq!(
            decide_clinical(&cm, &samu, &d),
            record(Denial::RegulationObjected)
        );
    }

    #[test]
    fn the_regulation_role_comes_from_the_login_not_the_request() {
        let cm = world();
        let d = doc("alice", by("dr-ville"));
        let declared = DeclaredPurpose::Etreat { declared_at: t0() };
        assert_eq!(
            purpose_from_login(&declared, false),
            Purpose::Etreat {
                regulation_role: false,
                declared_at: t0()
            }
        );
        let without = Request::new(
            Actor::Professional("regulateur".into()),
            purpose_from_login(&declared, false),
            t0(),
        );
        assert_eq!(
            decide_clinical(&cm, &login(without), &d),
            record(Denial::EtreatWithoutRegulationRole)
        );
        let with = Request::new(
            Actor::Professional("regulateur".into()),
            purpose_from_login(&declared, true),
            t0(),
        );
        assert!(sees(&cm, &login(with), &d));
        // Through an establishment the directory decides, whatever the request claims.
        let claims = Request::samu_regulator("dr-hopital", t0(), t0());
        assert_eq!(
            decide_clinical(&cm, &Requester::establishment(CHU_CLIENT, claims), &d),
            record(Denial::EtreatWithoutRegulationRole)
        );
        let claims_nothing = Request::new(
            Actor::Professional("regulateur".into()),
            Purpose::Etreat {
                regulation_role: false,
                declared_at: t0(),
            },
            t0(),
        );
        assert!(sees(
            &cm,
            &Requester::establishment(SAMU_CLIENT, claims_nothing),
            &d
        ));
    }

    #[test]
    fn opt_out_without_issue_16_data_is_the_issue_5_oracle() {
        let mut cm = world();
        cm.emergency_default = EmergencyDefault::OptOut;
        let requests = [
            Request::patient("alice", t0()),
            Request::patient("bob", t0()),
            Request::representative("marie", t0()),
            Request::professional("dr-ville", t0()),
            Request::professional("dr-bloque", t0()),
            Request::professional("dr-inconnu", t0()),
            Request::professional("inf-hopital", t0()),
            Request::btg("dr-inconnu", "inconscient", t0(), t0()),
            Request::btg("dr-inconnu", "", t0(), t0()),
            Request::samu_regulator("regulateur", t0(), t0()),
        ];
        let docs = [
            doc("alice", by("dr-ville")),
            doc("alice", by("dr-inconnu")).labelled(TRE_A07, MASQUE_PS),
            doc("alice", by("dr-inconnu")).labelled(TRE_A07, INVISIBLE_PATIENT),
            doc("leo", by("dr-ville")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX),
            doc("alice", Filer::PatientSide),
        ];
        for r in &requests {
            for d in &docs {
                let expected = match base::decide(&cm.base, r, &d.document) {
                    Decision::Visible => Outcome::Visible,
                    Decision::Hidden(h) => rule(h),
                };
                assert_eq!(
                    decide_clinical(&cm, &login(r.clone()), d),
                    expected,
                    "{r:?} {d:?}"
                );
            }
        }
    }

    // --- Grantors and INVISIBLE_REPRESENTANTS_LEGAUX (B5) --------------------------------

    #[test]
    fn a_parents_authorisation_does_not_open_the_childs_hidden_documents() {
        let mut cm = world();
        cm.grant(
            "leo",
            "dr-ville",
            GrantKind::Authorisation,
            Grantor::LegalRepresentative("marie".into()),
            Validity::always(),
        );
        let plain = doc("leo", by("dr-inconnu"));
        let secret = plain
            .clone()
            .labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        let secret_oid = plain
            .clone()
            .labelled(TRE_A07_OID, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert!(sees(&cm, &pro("dr-ville"), &plain));
        for d in [&secret, &secret_oid] {
            assert_eq!(
                decide_clinical(&cm, &pro("dr-ville"), d),
                rule(HiddenBecause::InvisibleRepresentantsLegaux)
            );
            // Nor to the parent herself.
            assert_eq!(
                decide_clinical(&cm, &login(Request::representative("marie", t0())), d),
                rule(HiddenBecause::InvisibleRepresentantsLegaux)
            );
        }
        // The child's own authorisation opens them.
        cm.grant(
            "leo",
            "dr-ville",
            GrantKind::Authorisation,
            Grantor::Holder,
            Validity::always(),
        );
        assert!(sees(&cm, &pro("dr-ville"), &secret));
    }

    #[test]
    fn a_parents_grant_of_rights_does_not_lift_masks_on_hidden_documents() {
        let mut cm = world();
        cm.grant(
            "leo",
            "dr-ville",
            GrantKind::EquivalentRights,
            Grantor::LegalRepresentative("marie".into()),
            Validity::always(),
        );
        let masked = doc("leo", by("dr-inconnu")).labelled(TRE_A07, MASQUE_PS);
        assert!(sees(&cm, &pro("dr-ville"), &masked));
        let masked_secret = masked
            .clone()
            .labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert_eq!(
            decide_clinical(&cm, &pro("dr-ville"), &masked_secret),
            rule(HiddenBecause::InvisibleRepresentantsLegaux)
        );
        // The child's authorisation alone does not lift MASQUE_PS either.
        cm.grant(
            "leo",
            "dr-ville",
            GrantKind::Authorisation,
            Grantor::Holder,
            Validity::always(),
        );
        assert!(!sees(&cm, &pro("dr-ville"), &masked_secret));
        assert!(sees(
            &cm,
            &pro("dr-ville"),
            &doc("leo", by("dr-inconnu")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX)
        ));
    }

    #[test]
    fn authors_care_team_and_emergencies_still_open_hidden_documents() {
        let mut cm = world();
        cm.grant(
            "leo",
            "dr-ville",
            GrantKind::Authorisation,
            Grantor::LegalRepresentative("marie".into()),
            Validity::always(),
        );
        let own = doc("leo", by("dr-ville")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert!(sees(&cm, &pro("dr-ville"), &own));
        let secret = doc("leo", by("dr-hopital")).labelled(TRE_A07, INVISIBLE_REPRESENTANTS_LEGAUX);
        assert_eq!(
            record_care_team(&mut cm, &pro("dr-inconnu"), "leo", "dr-inconnu"),
            Ok(())
        );
        assert!(sees(&cm, &pro("dr-inconnu"), &secret));
        cm.permit_emergency("leo", Validity::always());
        assert!(sees(
            &cm,
            &login(Request::btg("dr-ville", "inconscient", t0(), t0())),
            &secret
        ));
    }

    // --- Establishments (B6) --------------------------------------------------------------

    #[test]
    fn an_establishment_acts_only_for_its_listed_professionals() {
        let mut cm = world();
        assert!(establishment_may_act_for(
            &cm,
            CHU_CLIENT,
            "dr-hopital",
            t0()
        ));
        assert!(!establishment_may_act_for(
            &cm,
            CHU_CLIENT,
            "dr-ville",
            t0()
        ));
        assert!(!establishment_may_act_for(
            &cm,
            SAMU_CLIENT,
            "dr-hopital",
            t0()
        ));
        assert!(!establishment_may_act_for(&cm, LABO, "dr-hopital", t0()));
        assert!(!establishment_may_act_for(
            &cm,
            "inconnu",
            "dr-hopital",
            t0()
        ));
        cm.list_role("fantome", CHU, false, Validity::always());
        assert!(!establishment_may_act_for(&cm, CHU_CLIENT, "fantome", t0()));
        // A role that ended stops the establishment at once.
        cm.directory = vec![PractitionerRole {
            professional: "dr-hopital".into(),
            organization: CHU.into(),
            regulation: false,
            validity: Validity::between(None, Some(t0() - 1)),
        }];
        assert!(establishment_may_act_for(
            &cm,
            CHU_CLIENT,
            "dr-hopital",
            t0() - 1
        ));
        assert!(!establishment_may_act_for(
            &cm,
            CHU_CLIENT,
            "dr-hopital",
            t0()
        ));
        cm.base
            .patient_mut("alice")
            .authorisations
            .push(ProfessionalProvision::new("dr-hopital", Validity::always()));
        assert_eq!(
            decide_clinical(&cm, &via_chu("dr-hopital"), &doc("alice", by("dr-ville"))),
            hidden(Hidden::NotActingForProfessional)
        );
    }

    #[test]
    fn through_an_establishment_a_professional_is_judged_as_by_their_own_login() {
        let mut cm = world();
        cm.base
            .patient_mut("alice")
            .authorisations
            .push(ProfessionalProvision::new("dr-hopital", Validity::always()));
        let docs = [
            doc("alice", by("dr-ville")),
            doc("alice", by("dr-ville")).labelled(TRE_A07, MASQUE_PS),
            doc("alice", by("dr-hopital")).labelled(TRE_A07, MASQUE_PS),
            FiledResource::new(
                ResourceKind::DocumentReference,
                "d2",
                "alice",
                by("dr-ville"),
                ORDONNANCE,
                t0(),
            ),
        ];
        for p in ["dr-hopital", "inf-hopital", "dr-bloque"] {
            for d in &docs {
                assert_eq!(
                    decide_clinical(&cm, &via_chu(p), d),
                    decide_clinical(&cm, &pro(p), d),
                    "{p} {d:?}"
                );
            }
        }
        assert_eq!(
            decide_clinical(&cm, &via_chu("dr-bloque"), &docs[0]),
            record(Denial::Blocked)
        );
        // Not for a patient, nor for a professional the CHU does not employ.
        let not_a_pro = Requester::establishment(CHU_CLIENT, Request::patient("alice", t0()));
        assert_eq!(
            decide_clinical(&cm, &not_a_pro, &docs[0]),
            hidden(Hidden::NotActingForProfessional)
        );
        assert_eq!(
            decide_clinical(&cm, &via_chu("dr-ville"), &docs[0]),
            hidden(Hidden::NotActingForProfessional)
        );
        // Filing, and the trace names both.
        assert!(may_file_as(
            &cm,
            &via_chu("dr-hopital"),
            "alice",
            ResourceKind::DocumentReference
        ));
        assert!(!may_file_as(
            &cm,
            &via_chu("dr-ville"),
            "alice",
            ResourceKind::DocumentReference
        ));
        assert_eq!(
            trace_actors(&cm, &via_chu("dr-hopital")),
            vec![
                TraceActor::Professional("dr-hopital".into()),
                TraceActor::Establishment(CHU.into())
            ]
        );
        assert_eq!(
            trace_actors(&cm, &pro("dr-ville")),
            vec![TraceActor::Professional("dr-ville".into())]
        );
    }

    #[test]
    fn a_document_filed_through_an_establishment_is_its_professionals() {
        let cm = world();
        let filed = FiledResource::new(
            ResourceKind::DocumentReference,
            "d3",
            "alice",
            Filer::ThroughEstablishment {
                organization: CHU.into(),
                professional: "dr-hopital".into(),
            },
            CR,
            t0(),
        )
        .labelled(TRE_A07, MASQUE_PS);
        assert!(sees(&cm, &via_chu("dr-hopital"), &filed)); // author (A4 amended)
        assert!(sees(&cm, &pro("dr-hopital"), &filed));
        // No author privilege for the establishment's other professionals.
        assert!(!sees(&cm, &via_chu("inf-hopital"), &filed));
        assert!(may_delete_as(&cm, &via_chu("dr-hopital"), &filed));
        assert!(!may_delete_as(&cm, &via_chu("inf-hopital"), &filed));
    }

    // --- Backend, registry, development (B7–B9) ------------------------------------------

    #[test]
    fn a_backend_files_and_reads_back_only_what_it_filed() {
        let cm = world();
        let labo = Requester::backend(LABO, &["alice"], t0());
        for kind in [
            ResourceKind::DocumentReference,
            ResourceKind::Binary,
            ResourceKind::Immunization,
            ResourceKind::Appointment,
        ] {
            assert!(may_file_as(&cm, &labo, "alice", kind), "{kind:?}");
            assert!(may_file_as(&cm, &labo, "leo", kind), "{kind:?}");
        }
        assert!(!may_file_as(
            &cm,
            &labo,
            "alice",
            ResourceKind::OtherClinical
        ));
        assert!(!may_file_as(
            &cm,
            &labo,
            "zoe",
            ResourceKind::DocumentReference
        ));
        let own = FiledResource::new(
            ResourceKind::Immunization,
            "i1",
            "alice",
            Filer::Backend(LABO.into()),
            CR,
            t0(),
        )
        .labelled(TRE_A07, MASQUE_PS);
        assert!(sees(&cm, &labo, &own));
        let theirs = FiledResource::new(
            ResourceKind::Immunization,
            "i2",
            "alice",
            Filer::Backend(AUTRE_LABO.into()),
            CR,
            t0(),
        );
        assert_eq!(
            decide_clinical(&cm, &labo, &theirs),
            hidden(Hidden::NotOwnFiling)
        );
        assert_eq!(
            decide_clinical(&cm, &labo, &doc("alice", by("dr-ville"))),
            hidden(Hidden::NotOwnFiling)
        );
        assert_eq!(
            decide_record_as(&cm, &labo, "alice"),
            RecordAccess::OwnFilingsOnly
        );
        // It only creates.
        assert!(!may_delete_as(&cm, &labo, &own));
        assert!(!may_change_labels_as(&cm, &labo, &own, &BTreeSet::new()));
        assert_eq!(
            may_declare_care_team_as(&cm, &labo, "alice", "dr-ville"),
            Err(CareTeamRefusal::NotAProfessional)
        );
        // Its filings give no professional an author's privilege.
        assert_eq!(
            decide_clinical(&cm, &pro("dr-ville"), &own),
            rule(HiddenBecause::MasquePs)
        );
        // An unregistered client is nobody.
        let pirate = Requester::backend("pirate", &["alice"], t0());
        assert_eq!(
            decide_clinical(&cm, &pirate, &own),
            hidden(Hidden::UnknownClient)
        );
        assert!(!may_file_as(
            &cm,
            &pirate,
            "alice",
            ResourceKind::DocumentReference
        ));
        assert_eq!(
            trace_actors(&cm, &labo),
            vec![TraceActor::Client(LABO.into())]
        );
    }

    #[test]
    fn a_backend_finds_its_patient_by_ins_and_reads_only_that_patient() {
        let cm = world();
        let labo = Requester::backend(LABO, &["alice"], t0());
        let search = |system: Option<&str>, value: &str| {
            patient_search_by_identifier(&cm, &labo, system, value)
        };
        assert_eq!(
            search(Some(INS_NIR_SYSTEM), ALICE_NIR),
            Some(vec!["alice".to_string()])
        );
        assert_eq!(
            search(Some(INS_NIA_SYSTEM), LEO_NIA),
            Some(vec!["leo".to_string()])
        );
        assert_eq!(search(None, ALICE_NIR), Some(Vec::new()));
        assert_eq!(search(Some(INS_NIA_SYSTEM), ALICE_NIR), Some(Vec::new()));
        assert_eq!(
            search(Some("urn:oid:1.2.3.4"), "local-42"),
            Some(Vec::new())
        );
        let read = |what: AccountResource, access: Access, p: &str| {
            may_access_account(&cm, &labo, access, what, p)
        };
        assert_eq!(
            read(AccountResource::Patient, Access::Read, "alice"),
            Some(true)
        );
        assert_eq!(
            read(AccountResource::Patient, Access::Read, "leo"),
            Some(false)
        );
        assert_eq!(
            read(AccountResource::Patient, Access::Write, "alice"),
            Some(false)
        );
        for what in [
            AccountResource::RelatedPerson,
            AccountResource::Guardianship,
            AccountResource::Lifecycle,
            AccountResource::PatientRules,
            AccountResource::Traces,
        ] {
            assert_eq!(read(what, Access::Read, "alice"), Some(false), "{what:?}");
        }
        // A person's access to account data is not this oracle's rule.
        assert_eq!(
            may_access_account(
                &cm,
                &patient("alice"),
                Access::Read,
                AccountResource::Patient,
                "alice"
            ),
            None
        );
    }

    #[test]
    fn the_registry_manages_identity_and_reads_no_clinical_data() {
        let cm = world();
        let reg = Requester::registry(REGISTRE, t0());
        for what in [
            AccountResource::Patient,
            AccountResource::RelatedPerson,
            AccountResource::Guardianship,
            AccountResource::Lifecycle,
        ] {
            for access in [Access::Read, Access::Write] {
                assert_eq!(
                    may_access_account(&cm, &reg, access, what, "leo"),
                    Some(true),
                    "{what:?} {access:?}"
                );
            }
        }
        for what in [AccountResource::PatientRules, AccountResource::Traces] {
            assert_eq!(
                may_access_account(&cm, &reg, Access::Read, what, "leo"),
                Some(false)
            );
        }
        assert_eq!(
            patient_search_by_identifier(&cm, &reg, Some("urn:oid:1.2.3.4"), "local-42"),
            Some(vec!["bob".to_string()])
        );
        assert_eq!(
            patient_search_by_identifier(&cm, &reg, None, ALICE_NIR),
            Some(vec!["alice".to_string()])
        );
        let d = doc("alice", by("dr-ville"));
        assert_eq!(
            decide_clinical(&cm, &reg, &d),
            hidden(Hidden::NoClinicalAccess)
        );
        assert_eq!(
            decide_record_as(&cm, &reg, "alice"),
            RecordAccess::Denied(Hidden::NoClinicalAccess)
        );
        assert!(!may_file_as(
            &cm,
            &reg,
            "alice",
            ResourceKind::DocumentReference
        ));
        assert!(!may_write_emergency_rule(&cm, &reg, "alice"));
        // A registry client presenting itself as a backend is refused.
        let wrong = Requester::backend(REGISTRE, &["alice"], t0());
        assert_eq!(
            decide_clinical(&cm, &wrong, &d),
            hidden(Hidden::UnknownClient)
        );
        assert_eq!(
            may_access_account(&cm, &wrong, Access::Read, AccountResource::Patient, "alice"),
            Some(false)
        );
    }

    #[test]
    fn a_development_token_has_everything() {
        let mut cm = world();
        cm.base
            .patient_mut("alice")
            .mask_everything
            .push(Validity::always());
        let dev = Requester::Development { now: t0() };
        let d = doc("alice", by("dr-ville")).labelled(TRE_A07, MASQUE_PS);
        assert!(sees(&cm, &dev, &d));
        assert_eq!(
            decide_record_as(&cm, &dev, "alice"),
            RecordAccess::Everything
        );
        assert!(may_file_as(&cm, &dev, "alice", ResourceKind::OtherClinical));
        assert!(may_delete_as(&cm, &dev, &d));
        assert_eq!(
            may_access_account(
                &cm,
                &dev,
                Access::Write,
                AccountResource::PatientRules,
                "alice"
            ),
            Some(true)
        );
        assert_eq!(trace_actors(&cm, &dev), vec![TraceActor::Development]);
    }

    // --- Mask everything ------------------------------------------------------------------

    #[test]
    fn no_client_reads_past_mask_everything_and_undoing_restores() {
        let mut cm = world();
        cm.permit_emergency("alice", Validity::always());
        cm.base
            .patient_mut("alice")
            .authorisations
            .push(ProfessionalProvision::new("dr-hopital", Validity::always()));
        assert_eq!(
            record_care_team(&mut cm, &pro("dr-inconnu"), "alice", "dr-inconnu"),
            Ok(())
        );
        let own = FiledResource::new(
            ResourceKind::DocumentReference,
            "d4",
            "alice",
            Filer::Backend(LABO.into()),
            CR,
            t0(),
        );
        let d = doc("alice", by("dr-ville"));
        let labo = Requester::backend(LABO, &["alice"], t0());
        let cases: Vec<(Requester, &FiledResource)> = vec![
            (pro("dr-ville"), &d),
            (via_chu("dr-hopital"), &d),
            (btg("dr-inconnu"), &d),
            (pro("dr-inconnu"), &d),
            (labo.clone(), &own),
        ];
        for (req, res) in &cases {
            assert!(sees(&cm, req, res), "before: {req:?}");
        }
        cm.base
            .patient_mut("alice")
            .mask_everything
            .push(Validity::between(None, Some(t0())));
        for (req, res) in &cases {
            assert_eq!(
                decide_clinical(&cm, req, res),
                record(Denial::RecordMaskedEntirely),
                "{req:?}"
            );
        }
        assert!(sees(&cm, &patient("alice"), &d));
        // Filing goes on (A24).
        assert!(may_file_as(
            &cm,
            &labo,
            "alice",
            ResourceKind::DocumentReference
        ));
        // The mask ended at t0: everything is back one second later.
        let later = |r: &Requester| -> Requester {
            match r {
                Requester::Login(q) => {
                    let mut q = q.clone();
                    q.now = t0() + 1;
                    Requester::Login(q)
                }
                Requester::Establishment { client, request } => {
                    let mut q = request.clone();
                    q.now = t0() + 1;
                    Requester::Establishment {
                        client: client.clone(),
                        request: q,
                    }
                }
                Requester::Backend {
                    client, files_for, ..
                } => Requester::Backend {
                    client: client.clone(),
                    files_for: files_for.clone(),
                    now: t0() + 1,
                },
                other => other.clone(),
            }
        };
        for (req, res) in &cases {
            assert!(sees(&cm, &later(req), res), "after: {req:?}");
        }
    }

    #[test]
    fn the_representative_keeps_the_masked_record() {
        let mut cm = world();
        cm.base
            .patient_mut("leo")
            .mask_everything
            .push(Validity::always());
        let d = doc("leo", by("dr-ville"));
        assert!(sees(
            &cm,
            &login(Request::representative("marie", t0())),
            &d
        ));
        assert!(sees(&cm, &patient("leo"), &d));
        assert_eq!(
            decide_clinical(
                &cm,
                &login(Request::samu_regulator("regulateur", t0(), t0())),
                &d
            ),
            record(Denial::RecordMaskedEntirely)
        );
    }

    // --- Care team (B10) ------------------------------------------------------------------

    #[test]
    fn a_care_team_declaration_authorises_like_the_patient_would() {
        let mut cm = world();
        let d = doc("alice", by("dr-ville"));
        let masked = d.clone().labelled(TRE_A07, MASQUE_PS);
        assert_eq!(
            decide_clinical(&cm, &pro("dr-inconnu"), &d),
            record(Denial::NotAuthorised)
        );
        assert_eq!(
            may_declare_care_team(&cm, "dr-inconnu", "alice", t0()),
            Ok(())
        );
        assert_eq!(
            record_care_team(&mut cm, &pro("dr-inconnu"), "alice", "dr-inconnu"),
            Ok(())
        );
        assert!(sees(&cm, &pro("dr-inconnu"), &d));
        assert_eq!(
            decide_clinical(&cm, &pro("dr-inconnu"), &masked),
            rule(HiddenBecause::MasquePs)
        );
        assert_eq!(
            decide_record_as(&cm, &pro("dr-inconnu"), "alice"),
            RecordAccess::Granted(vec![Basis::Authorisation])
        );
        assert_eq!(
            care_team_in_rules(&cm, "alice", t0()),
            vec!["dr-inconnu".to_string()]
        );
        assert_eq!(
            care_team_notice_recipients(&cm, "alice", t0()),
            vec![Recipient::Holder("alice".into())]
        );
        assert_eq!(
            care_team_provenance(cm.care_team.last().unwrap()),
            vec![TraceActor::Professional("dr-inconnu".into())]
        );
        // The patient withdraws it: access ends, and it cannot be recorded again.
        assert!(withdraw_care_team(
            &mut cm,
            &patient("alice"),
            "alice",
            "dr-inconnu"
        ));
        assert_eq!(
            decide_clinical(&cm, &pro("dr-inconnu"), &d),
            record(Denial::NotAuthorised)
        );
        assert!(care_team_in_rules(&cm, "alice", t0()).is_empty());
        assert_eq!(
            may_declare_care_team(&cm, "dr-inconnu", "alice", t0()),
            Err(CareTeamRefusal::PatientWithdrewIt)
        );
    }

    #[test]
    fn a_blocked_professional_cannot_record_it_and_a_block_cuts_it() {
        let mut cm = world();
        assert_eq!(
            may_declare_care_team(&cm, "dr-bloque", "alice", t0()),
            Err(CareTeamRefusal::Blocked)
        );
        assert_eq!(
            record_care_team(&mut cm, &via_chu("dr-bloque"), "alice", "dr-bloque"),
            Err(CareTeamRefusal::Blocked)
        );
        assert!(cm.care_team.is_empty());
        // Declared, then blocked: nothing; unblocked: the declaration applies again (A6).
        assert_eq!(
            record_care_team(&mut cm, &pro("dr-inconnu"), "alice", "dr-inconnu"),
            Ok(())
        );
        cm.base
            .patient_mut("alice")
            .blocks
            .push(ProfessionalProvision::new(
                "dr-inconnu",
                Validity::between(None, Some(t0())),
            ));
        let d = doc("alice", by("dr-ville"));
        assert_eq!(
            decide_clinical(&cm, &pro("dr-inconnu"), &d),
            record(Denial::Blocked)
        );
        assert!(sees(
            &cm,
            &login(Request::professional("dr-inconnu", t0() + 1)),
            &d
        ));
    }

    #[test]
    fn only_the_professional_records_it_naming_themselves() {
        let mut cm = world();
        assert_eq!(
            may_declare_care_team_as(&cm, &pro("dr-inconnu"), "alice", "dr-ville"),
            Err(CareTeamRefusal::NamesAnotherProfessional)
        );
        assert_eq!(
            may_declare_care_team_as(&cm, &patient("alice"), "alice", "dr-inconnu"),
            Err(CareTeamRefusal::NotAProfessional)
        );
        assert_eq!(
            may_declare_care_team_as(&cm, &Requester::registry(REGISTRE, t0()), "alice", "x"),
            Err(CareTeamRefusal::NotAProfessional)
        );
        assert_eq!(
            may_declare_care_team_as(&cm, &via_chu("dr-ville"), "alice", "dr-ville"),
            Err(CareTeamRefusal::NotActingForProfessional)
        );
        assert_eq!(
            may_declare_care_team(&cm, "personne", "alice", t0()),
            Err(CareTeamRefusal::UnknownProfessional)
        );
        assert_eq!(
            may_declare_care_team(&cm, "dr-inconnu", "zoe", t0()),
            Err(CareTeamRefusal::UnknownPatient)
        );
        // Through the CHU, for the child: provenance names both; the parent is told.
        assert_eq!(
            record_care_team(&mut cm, &via_chu("dr-hopital"), "leo", "dr-hopital"),
            Ok(())
        );
        let decl = cm.care_team.last().unwrap().clone();
        assert_eq!(
            care_team_provenance(&decl),
            vec![
                TraceActor::Professional("dr-hopital".into()),
                TraceActor::Establishment(CHU.into())
            ]
        );
        assert_eq!(
            care_team_notice_recipients(&cm, "leo", t0()),
            vec![
                Recipient::Holder("leo".into()),
                Recipient::LegalRepresentative("marie".into())
            ]
        );
        // Who may withdraw it.
        let marie = login(Request::representative("marie", t0()));
        assert_eq!(
            may_withdraw_care_team(&cm, &marie, &decl),
            Some(Withdrawal::ByPatientSide)
        );
        assert_eq!(
            may_withdraw_care_team(&cm, &patient("leo"), &decl),
            Some(Withdrawal::ByPatientSide)
        );
        assert_eq!(
            may_withdraw_care_team(
                &cm,
                &login(Request::patient("leo", t0()).through_app()),
                &decl
            ),
            Some(Withdrawal::ByPatientSide)
        );
        assert_eq!(may_withdraw_care_team(&cm, &patient("alice"), &decl), None);
        assert_eq!(may_withdraw_care_team(&cm, &pro("dr-ville"), &decl), None);
        // The professional withdraws their own: no objection, they may record it again.
        assert!(withdraw_care_team(
            &mut cm,
            &pro("dr-hopital"),
            "leo",
            "dr-hopital"
        ));
        assert_eq!(
            cm.care_team.last().unwrap().withdrawn,
            Some(Withdrawal::ByProfessional)
        );
        assert_eq!(
            may_declare_care_team(&cm, "dr-hopital", "leo", t0()),
            Ok(())
        );
        assert!(!withdraw_care_team(&mut cm, &marie, "leo", "dr-hopital"));
    }

    #[test]
    fn a_care_team_declaration_under_mask_everything_opens_nothing() {
        let mut cm = world();
        cm.base
            .patient_mut("alice")
            .mask_everything
            .push(Validity::always());
        assert_eq!(
            record_care_team(&mut cm, &pro("dr-inconnu"), "alice", "dr-inconnu"),
            Ok(())
        );
        assert_eq!(
            decide_clinical(&cm, &pro("dr-inconnu"), &doc("alice", by("dr-ville"))),
            record(Denial::RecordMaskedEntirely)
        );
    }

    // --- Access notices (B11) -------------------------------------------------------------

    #[test]
    fn one_notice_per_session_not_only_the_first_access_ever() {
        let t = t0();
        assert_eq!(access_notices(&[]), 0);
        assert_eq!(access_notices(&[t]), 1);
        // Each gap under an hour: one session, however long it lasts.
        assert_eq!(
            access_notices(&[t, t + 10 * MINUTE, t + 69 * MINUTE, t + 128 * MINUTE]),
            1
        );
        assert_eq!(access_notices(&[t, t + HOUR - 1]), 1);
        assert_eq!(access_notices(&[t, t + HOUR]), 2);
        assert_eq!(access_notices(&[t, t]), 1);
        // Back next week: announced again.
        assert_eq!(access_notices(&[t, t + 7 * DAY]), 2);
        // Order does not matter.
        assert_eq!(access_notices(&[t + 5 * HOUR, t, t + DAY]), 3);
        assert_eq!(
            session_starts(&[t + 5 * HOUR, t, t + 10 * MINUTE], SESSION_SILENCE),
            vec![t, t + 5 * HOUR]
        );
        assert_eq!(access_notices_with_silence(&[t, t + HOUR], 4 * HOUR), 1);
    }

    #[test]
    fn a_new_grant_starts_a_new_session() {
        let t = t0();
        let ev = |at: Time, g: &str| AccessEvent {
            at,
            grant: g.to_string(),
        };
        assert_eq!(
            access_notices_with_grants(
                &[
                    ev(t, "auth-1"),
                    ev(t + MINUTE, "auth-1"),
                    ev(t + 2 * MINUTE, "btg-1"),
                    ev(t + 3 * MINUTE, "btg-1"),
                    ev(t + 3 * HOUR, "btg-1"),
                ],
                SESSION_SILENCE
            ),
            3
        );
        assert_eq!(access_notices_with_grants(&[], SESSION_SILENCE), 0);
    }

    #[test]
    fn sessions_belong_to_professionals_and_notices_go_to_the_patient_side() {
        let cm = world();
        assert_eq!(
            session_professional(&via_chu("dr-hopital")),
            Some("dr-hopital".to_string())
        );
        assert_eq!(
            session_professional(&pro("dr-hopital")),
            Some("dr-hopital".to_string())
        );
        assert_eq!(session_professional(&patient("alice")), None);
        assert_eq!(
            session_professional(&Requester::backend(LABO, &[], t0())),
            None
        );
        assert_eq!(
            access_notice_recipients(&cm, "leo", t0()),
            vec![
                Recipient::Holder("leo".into()),
                Recipient::LegalRepresentative("marie".into())
            ]
        );
        assert!(access_notice_recipients(&cm, "zoe", t0()).is_empty());
    }

    // --- Binary (B13) ---------------------------------------------------------------------

    fn binary(filer: Filer, context: SecurityContext) -> BinaryResource {
        BinaryResource {
            id: "b1".into(),
            filer,
            filed_at: t0(),
            context,
        }
    }
    fn pointed(patient: &str, pointing: Vec<FiledResource>) -> SecurityContext {
        SecurityContext::Patient {
            patient: patient.into(),
            pointing,
        }
    }

    #[test]
    fn a_binary_of_the_patient_is_judged_as_the_documents_pointing_to_it() {
        let cm = world();
        let plain = doc("alice", by("dr-inconnu"));
        let masked = plain.clone().labelled(TRE_A07_OID, MASQUE_PS);
        let b = binary(by("dr-inconnu"), pointed("alice", vec![masked.clone()]));
        assert_eq!(
            decide_binary(&cm, &pro("dr-ville"), &b),
            rule(HiddenBecause::MasquePs)
        );
        assert!(decide_binary(&cm, &patient("alice"), &b).is_visible());
        assert!(decide_binary(&cm, &pro("dr-inconnu"), &b).is_visible()); // the author
                                                                          // Two documents point to it: the strictest decides.
        let two = binary(
            by("dr-inconnu"),
            pointed("alice", vec![plain.clone(), masked.clone()]),
        );
        assert_eq!(
            decide_binary(&cm, &pro("dr-ville"), &two),
            rule(HiddenBecause::MasquePs)
        );
        // The document as securityContext.
        let ctx = binary(by("dr-inconnu"), SecurityContext::Document(masked.clone()));
        assert_eq!(
            decide_binary(&cm, &pro("dr-ville"), &ctx),
            rule(HiddenBecause::MasquePs)
        );
        assert!(decide_binary(
            &cm,
            &pro("dr-ville"),
            &binary(by("dr-inconnu"), pointed("alice", vec![plain]))
        )
        .is_visible());
    }

    #[test]
    fn an_orphan_or_foreign_binary_is_judged_strictly() {
        let cm = world();
        let orphan = binary(by("dr-inconnu"), pointed("alice", Vec::new()));
        assert_eq!(
            decide_binary(&cm, &pro("dr-ville"), &orphan),
            rule(HiddenBecause::Matrix)
        );
        assert!(decide_binary(&cm, &patient("alice"), &orphan).is_visible());
        assert!(decide_binary(&cm, &pro("dr-inconnu"), &orphan).is_visible());
        // A document of bob pointing to alice's Binary: judged for both patients.
        let foreign = binary(
            by("dr-inconnu"),
            pointed("alice", vec![doc("bob", by("dr-inconnu"))]),
        );
        assert_eq!(
            decide_binary(&cm, &pro("dr-ville"), &foreign),
            record(Denial::NotAuthorised)
        );
        // A backend reads the Binary it filed, not another's.
        let filed = binary(
            Filer::Backend(LABO.into()),
            pointed(
                "alice",
                vec![doc("alice", by("dr-inconnu")).labelled(TRE_A07, MASQUE_PS)],
            ),
        );
        assert!(
            decide_binary(&cm, &Requester::backend(LABO, &["alice"], t0()), &filed).is_visible()
        );
        assert_eq!(
            decide_binary(
                &cm,
                &Requester::backend(AUTRE_LABO, &["alice"], t0()),
                &filed
            ),
            hidden(Hidden::NotOwnFiling)
        );
        assert_eq!(
            decide_binary(&cm, &Requester::registry(REGISTRE, t0()), &filed),
            hidden(Hidden::NoClinicalAccess)
        );
    }

    // --- History (B14) --------------------------------------------------------------------

    #[test]
    fn a_masked_then_deleted_resource_keeps_its_older_versions_masked() {
        let cm = world();
        let live = doc("alice", by("dr-inconnu"));
        let n = set(&[(V3_CONFIDENTIALITY, CONF_N)]);
        let masked = set(&[(TRE_A07, MASQUE_PS)]);
        let versions = vec![
            VersionState::live(n.clone()),
            VersionState::live(masked.clone()),
            VersionState::deleted(BTreeSet::new()), // a DELETE tombstone
        ];
        assert_eq!(
            union_of_versions(&versions),
            set(&[(V3_CONFIDENTIALITY, CONF_N), (TRE_A07, MASQUE_PS)])
        );
        for i in 0..3 {
            assert!(labels_for_version(&versions, i).contains(&label(TRE_A07, MASQUE_PS)));
        }
        assert_eq!(
            decide_version(&cm, &pro("dr-ville"), &live, &versions, 0),
            rule(HiddenBecause::MasquePs)
        );
        assert!(decide_version(&cm, &patient("alice"), &live, &versions, 0).is_visible());
        // Under the OID, and deleted by entered-in-error: the same.
        let versions = vec![
            VersionState::live(n.clone()),
            VersionState::live(set(&[(TRE_A07_OID, MASQUE_PS)])),
            VersionState::deleted(n.clone()),
        ];
        assert_eq!(
            decide_version(&cm, &pro("dr-ville"), &live, &versions, 0),
            rule(HiddenBecause::MasquePs)
        );
    }

    #[test]
    fn history_labels_for_resources_not_deleted_and_recreated() {
        let cm = world();
        let live = doc("alice", by("dr-inconnu"));
        let n = set(&[(V3_CONFIDENTIALITY, CONF_N)]);
        let masked = set(&[(TRE_A07, MASQUE_PS)]);
        // Not deleted: the current labels judge every version (A21).
        let unmasked = vec![
            VersionState::live(masked.clone()),
            VersionState::live(n.clone()),
        ];
        assert_eq!(labels_for_version(&unmasked, 0), n);
        assert!(decide_version(&cm, &pro("dr-ville"), &live, &unmasked, 0).is_visible());
        // Masked, unmasked, then deleted: the literal rule keeps the mask on older versions.
        let mut deleted = unmasked.clone();
        deleted.push(VersionState::deleted(n.clone()));
        assert_eq!(
            decide_version(&cm, &pro("dr-ville"), &live, &deleted, 1),
            rule(HiddenBecause::MasquePs)
        );
        // Re-created after the deletion: older versions stay masked, the new one is judged
        // by its own (current) labels.
        let recreated = vec![
            VersionState::live(masked.clone()),
            VersionState::deleted(BTreeSet::new()),
            VersionState::live(n.clone()),
        ];
        assert!(!decide_version(&cm, &pro("dr-ville"), &live, &recreated, 0).is_visible());
        assert!(decide_version(&cm, &pro("dr-ville"), &live, &recreated, 2).is_visible());
        assert!(labels_for_version(&[], 0).is_empty());
    }

    #[test]
    fn emergency_rules_are_written_by_the_patient_side() {
        let cm = world();
        assert!(may_write_emergency_rule(&cm, &patient("alice"), "alice"));
        assert!(may_write_emergency_rule(
            &cm,
            &login(Request::representative("marie", t0())),
            "leo"
        ));
        assert!(!may_write_emergency_rule(&cm, &patient("bob"), "alice"));
        assert!(!may_write_emergency_rule(&cm, &pro("dr-ville"), "alice"));
        assert!(!may_write_emergency_rule(
            &cm,
            &via_chu("dr-hopital"),
            "alice"
        ));
    }
}
