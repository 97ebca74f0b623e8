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
        writer -> Nullable<Text>,
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

diesel::table! {
    search_string (resource_type, id, param, value_exact) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        value_norm -> Text,
        value_exact -> Text,
    }
}

diesel::table! {
    search_date (resource_type, id, param, start_us, end_us) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        start_us -> BigInt,
        end_us -> BigInt,
    }
}

diesel::table! {
    search_reference (resource_type, id, param, url) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        target_type -> Text,
        target_id -> Text,
        url -> Text,
    }
}

diesel::table! {
    search_snapshot (search_id) {
        search_id -> Text,
        created_us -> BigInt,
        total -> BigInt,
        refs -> Text,
        owner -> Text,
        query -> Text,
        page_size -> BigInt,
    }
}

diesel::table! {
    oauth_clients (client_id) {
        client_id -> Text,
        name -> Text,
        confidential -> Bool,
        redirect_uris -> Text,
        scopes -> Text,
        jwks -> Text,
        suspended -> Bool,
        created_us -> BigInt,
        first_party -> Bool,
        role -> Text,
        organization -> Nullable<Text>,
    }
}

diesel::table! {
    oauth_assertions (jti) {
        jti -> Text,
        client_id -> Text,
        exp_us -> BigInt,
    }
}

diesel::table! {
    oauth_authorizations (id) {
        id -> Text,
        browser -> Text,
        csrf -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        state -> Nullable<Text>,
        nonce -> Nullable<Text>,
        code_challenge -> Text,
        provider -> Nullable<Text>,
        upstream_state -> Nullable<Text>,
        upstream_nonce -> Nullable<Text>,
        upstream_verifier -> Nullable<Text>,
        subject -> Nullable<Text>,
        expires_us -> BigInt,
        regulation -> Bool,
    }
}

diesel::table! {
    oauth_grants (id) {
        id -> Text,
        client_id -> Text,
        subject -> Text,
        patient -> Nullable<Text>,
        scope -> Text,
        nonce -> Nullable<Text>,
        redirect_uri -> Text,
        code_hash -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        code_expires_us -> BigInt,
        regulation -> Bool,
        code_used -> Bool,
        revoked -> Bool,
        created_us -> BigInt,
        expires_us -> BigInt,
    }
}

diesel::table! {
    oauth_refresh_tokens (hash) {
        hash -> Text,
        grant_id -> Text,
        expires_us -> BigInt,
        used -> Bool,
    }
}

diesel::allow_tables_to_appear_in_same_query!(oauth_grants, oauth_clients);
diesel::allow_tables_to_appear_in_same_query!(search_token, resources);

diesel::table! {
    notices (notice_key) {
        notice_key -> Text,
        patient -> Text,
        due_us -> BigInt,
        content -> Text,
        written -> Bool,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Text,
        resource_type -> Text,
        criteria -> Text,
        owner -> Text,
    }
}

diesel::table! {
    deliveries (seq) {
        seq -> BigInt,
        subscription_id -> Text,
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        attempts -> Integer,
        next_attempt_us -> BigInt,
        lease_until_us -> BigInt,
        claim -> Text,
        last_error -> Text,
        created_us -> BigInt,
    }
}

diesel::table! {
    rules_versions (patient) {
        patient -> Text,
        stamp -> Text,
    }
}

diesel::table! {
    access_log (seq) {
        seq -> BigInt,
        id -> Text,
        recorded -> BigInt,
        patient -> Nullable<Text>,
        agent -> Nullable<Text>,
        client -> Text,
        establishment -> Nullable<Text>,
        event_type -> Text,
        interaction -> Text,
        action -> Text,
        outcome -> Text,
        entities -> Text,
        detail -> Text,
        labels -> Text,
        content -> Nullable<Text>,
    }
}

diesel::table! {
    access_log_entity (reference, id) {
        reference -> Text,
        id -> Text,
    }
}
