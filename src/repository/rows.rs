//! rows: small conversions and checks every interaction shares: stored rows as
//! [`StoredResource`]s, ids, the server-owned parts of a resource, validation on the way in.

use serde_json::{json, Value};

use super::storage;
use crate::error::FhirError;
use crate::fhir::{instant, resource_types, validate};
use crate::resource::StoredResource;

pub(super) fn from_current(row: storage::CurrentRow) -> StoredResource {
    StoredResource {
        resource_type: row.resource_type,
        id: row.id,
        version_id: row.version_id,
        last_updated_us: row.last_updated,
        deleted: row.deleted,
        content: row.content,
        method: None,
    }
}

/// An id that cannot be a FHIR id names nothing here (and never reaches the database).
pub(super) fn check_id(rtype: &str, id: &str) -> Result<(), FhirError> {
    if resource_types::is_valid_id(id) {
        Ok(())
    } else {
        Err(not_found(rtype, id))
    }
}

pub(super) fn from_version(row: storage::VersionRow) -> StoredResource {
    StoredResource {
        resource_type: row.resource_type,
        id: row.id,
        version_id: row.version_id,
        last_updated_us: row.last_updated,
        deleted: row.deleted,
        content: row.content,
        method: Some(row.method),
    }
}

/// The id of a resource created by the server: a UUID version 7 (time-ordered, 74 random
/// bits). Time order keeps the primary keys and the index rows of new resources at the end
/// of their B-trees, so an ingest dirties a few pages instead of one per resource and
/// index (random v4 UUIDs made SQLite's ingest mostly page writes).
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(super) fn not_found(rtype: &str, id: &str) -> FhirError {
    FhirError::hidden(rtype, id)
}

pub(super) fn lost_race(rtype: &str, id: &str, if_match: Option<i64>) -> FhirError {
    match if_match {
        Some(v) => FhirError::PreconditionFailed(format!(
            "If-Match W/\"{v}\": {rtype}/{id} was changed by another request"
        )),
        None => FhirError::Conflict(format!(
            "{rtype}/{id} was changed by another request at the same time; retry"
        )),
    }
}

/// Whether two versions of a resource say the same thing (`meta.versionId` and
/// `meta.lastUpdated` aside, which every write sets).
pub(super) fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                v.as_object_mut().map(|o| o.remove("meta"));
            }
        }
        v
    };
    strip(a) == strip(b)
}

pub fn check_type(rtype: &str) -> Result<(), FhirError> {
    if resource_types::is_supported(rtype) {
        Ok(())
    } else {
        Err(FhirError::UnsupportedType(rtype.to_string()))
    }
}

/// Validates a resource posted to `/{rtype}` (its id, if any, is ignored).
pub(super) fn validate_as(rtype: &str, resource: Value) -> Result<Value, FhirError> {
    check_resource_type(rtype, &resource)?;
    validate::validate(resource)
}

/// Validates a resource put to `/{rtype}/{id}`: its id must be that id.
pub(super) fn validate_for_update(
    rtype: &str,
    id: &str,
    resource: Value,
) -> Result<Value, FhirError> {
    check_resource_type(rtype, &resource)?;
    if !resource_types::is_valid_id(id) {
        return Err(FhirError::BadRequest(format!(
            "'{id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"
        )));
    }
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
                format!("{rtype}.id"),
                format!("the resource id '{body_id}' does not match the id '{id}' in the URL"),
            )]))
        }
        None => {
            return Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
                format!("{rtype}.id"),
                "an update must carry the resource id",
            )]))
        }
    }
    validate::validate(resource)
}

pub(super) fn check_resource_type(rtype: &str, resource: &Value) -> Result<(), FhirError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rtype => Ok(()),
        Some(t) => Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
            "resourceType",
            format!("a {t} was sent to the {rtype} endpoint"),
        )])),
        None => Err(FhirError::Invalid(vec![crate::error::Issue::invalid(
            "resourceType",
            "the resource has no resourceType",
        )])),
    }
}

/// Sets the server-owned parts of a resource: id, meta.versionId, meta.lastUpdated.
pub(super) fn stamp(resource: &mut Value, id: &str, version_id: i64, now_us: i64) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    // Rebuild the object so that `id` and `meta` come right after `resourceType`.
    let old = std::mem::take(obj);
    let mut meta = old
        .get("meta")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    meta.remove("versionId");
    meta.remove("lastUpdated");
    let mut new_meta = serde_json::Map::new();
    new_meta.insert("versionId".into(), json!(version_id.to_string()));
    new_meta.insert("lastUpdated".into(), json!(instant::format_us(now_us)));
    new_meta.extend(meta);
    obj.insert(
        "resourceType".into(),
        old.get("resourceType").cloned().unwrap_or(Value::Null),
    );
    obj.insert("id".into(), json!(id));
    obj.insert("meta".into(), Value::Object(new_meta));
    for (k, v) in old {
        if k != "resourceType" && k != "id" && k != "meta" {
            obj.insert(k, v);
        }
    }
}
