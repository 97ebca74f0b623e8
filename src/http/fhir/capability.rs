//! capability: the CapabilityStatement, generated from what the server really implements.
//!
//! The list of interactions here is the list of routes in `http`; a test reads the
//! statement and exercises every interaction it advertises.

use serde_json::{json, Value};

use crate::fhir::resource_types::SUPPORTED;
use crate::fhir::search_params::{ParamType, REGISTRY};

/// The search parameters a type really supports (number and quantity are not indexed).
fn search_params(rtype: &str) -> Vec<Value> {
    REGISTRY
        .by_type
        .get(rtype)
        .map(|params| {
            params
                .values()
                .filter(|p| !matches!(p.kind, ParamType::Number | ParamType::Quantity))
                .map(|p| {
                    let kind = match p.kind {
                        ParamType::Token => "token",
                        ParamType::String => "string",
                        ParamType::Date => "date",
                        ParamType::Reference => "reference",
                        ParamType::Uri => "uri",
                        ParamType::Number => "number",
                        ParamType::Quantity => "quantity",
                    };
                    json!({"name": p.code, "definition": p.url, "type": kind})
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The interactions every supported type implements (see `http::routes`).
pub const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// The whole-system interactions.
pub const SYSTEM_INTERACTIONS: &[&str] = &["transaction", "batch", "history-system"];

/// `endpoints`: the authorization server's endpoints (advertised in `rest.security`).
pub fn capability_statement(
    base_url: &str,
    endpoints: &crate::oauth::Endpoints,
    software_version: &str,
    date: &str,
) -> Value {
    let resources: Vec<Value> = SUPPORTED
        .iter()
        .map(|t| {
            // AuditEvents are append-only: no update, no delete.
            let append_only = *t == "AuditEvent";
            let mut interactions: Vec<Value> = TYPE_INTERACTIONS
                .iter()
                .filter(|i| !(append_only && matches!(**i, "update" | "delete")))
                .map(|i| json!({"code": i}))
                .collect();
            // JSON Patch of status, securityLabel and the archive extension (PDSm).
            if *t == "DocumentReference" {
                interactions.push(json!({"code": "patch"}));
            }
            let profile = match *t {
                "Consent" => crate::consent::profile::PROFILE_URL.to_string(),
                _ => format!("http://hl7.org/fhir/StructureDefinition/{t}"),
            };
            let mut entry = json!({
                "type": t,
                "profile": profile,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": !append_only,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": search_params(t),
            });
            if *t == "AuditEvent" {
                entry["documentation"] = json!("The access trail, served from Carnet's access log: every access to patient data, allowed or refused, one AuditEvent per request, record, outcome and labels (and for a professional, one of what they asked), durable before the response. Append-only; created only by Carnet and by backend services (kept as posted). Seen by the patient (and representatives), the médecin traitant, and each professional for their own accesses, never telling more than its viewer may see. Searched by the parameters listed (no chains, no _include); newest first unless _sort says otherwise; not part of the system history.");
            }
            if *t == "Patient" {
                entry["operation"] = json!([{"name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "The patient's record (the Patient and its compartment, AuditEvents excepted), each resource through the patient's rules; _count, _since, _type."}]);
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Carnet",
        "kind": "instance",
        "software": {"name": "Carnet", "version": software_version},
        "implementation": {"description": "Carnet FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "rest": [{
            "mode": "server",
            "documentation": "Conditional create (If-None-Exist) takes any search parameter listed here. Subscriptions: the rest-hook channel only (https, or http on a loopback address), criteria a search of any type but AuditEvent and Subscription, payload application/fhir+json or none; notifications obey the patient's rules for the Subscription's owner, are retried with backoff (1 s doubling up to 1 h) until the subscriber answers 2xx, and a Subscription is seen and changed by its owner only. Carnet's notices to the patient (a professional's first access, every emergency access, a new document, the two-week notice of an INVISIBLE_PATIENT document) are Communications with a category from urn:carnet:notice; their recipient may only set `received`.",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "Every interaction but metadata and .well-known/smart-configuration needs a bearer access token signed by this server (ES256), carrying SMART v2 scopes (patient/, user/, system/; v1 .read/.write accepted); a token bound to a patient reaches that patient's compartment only (or, for a legal representative, their child's). Then the patient's rules decide every access (Consents of Carnet's Consent profile, the médecin traitant, the document labels MASQUE_PS / INVISIBLE_PATIENT / INVISIBLE_REPRESENTANTS_LEGAUX, the matrice d'habilitation, emergency access with purpose_of_use BTG or ETREAT), and every access to patient data leaves an AuditEvent. Apps registered with `carnet client add` use the SMART App Launch (standalone): authorization code with PKCE S256, the person logging in through the configured OpenID Connect provider (patients: FranceConnect; professionals: Pro Santé Connect) and approving the scopes on a consent screen; refresh tokens rotate (offline_access/online_access); public clients or private_key_jwt (RS384/ES384). Backend services use client_credentials with a private_key_jwt assertion and system/ scopes. Tokens can be revoked and introspected; see .well-known/smart-configuration.",
                "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        {"url": "authorize", "valueUri": endpoints.authorize},
                        {"url": "token", "valueUri": endpoints.token},
                        {"url": "revoke", "valueUri": endpoints.revoke},
                        {"url": "introspect", "valueUri": endpoints.introspect}]}]
            },
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
        }]
    })
}
