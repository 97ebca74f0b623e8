//! rows: the rows of the resource tables as the repository reads them.

use diesel::prelude::*;

use super::schema::{resource_versions, resources};

/// The current version of a resource (the `resources` table).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = resources)]
pub struct CurrentRow {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub content: String,
}

/// One version in the history (the `resource_versions` table).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resource_versions)]
pub struct VersionRow {
    pub seq: i64,
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: String,
    pub content: String,
}

/// Which slice of the history to list, newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub since_us: Option<i64>,
    /// Only versions with `seq` below this (keyset paging).
    pub before_seq: Option<i64>,
    pub limit: i64,
}
