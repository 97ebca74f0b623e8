//! diesel's view of the tables created by `migrations/{sqlite,postgres}`.

diesel::table! {
    resources (resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        content -> Text,
    }
}

diesel::table! {
    resource_versions (seq) {
        seq -> BigInt,
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        method -> Text,
        content -> Text,
    }
}

diesel::table! {
    search_token (resource_type, id, param, system, code) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        system -> Text,
        code -> Text,
    }
}
