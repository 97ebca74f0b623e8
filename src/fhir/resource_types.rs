//! resource_types: the FHIR resource types Carnet serves (the dossier of Mon espace santé).

/// Every type the REST API accepts; any other answers 404 "not supported".
pub const SUPPORTED: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "RelatedPerson",
    "DocumentReference",
    "Binary",
    "Immunization",
    "Appointment",
    "Consent",
    "AuditEvent",
    "Communication",
    "Subscription",
];

pub fn is_supported(resource_type: &str) -> bool {
    SUPPORTED.contains(&resource_type)
}

/// A FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
