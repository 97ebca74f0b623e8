-- Current version of every resource (what read serves), one row per (type, id).
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL, -- microseconds since the Unix epoch, UTC
    deleted BOOLEAN NOT NULL,
    content TEXT NOT NULL,        -- the stored JSON, served as is ('' for a tombstone)
    PRIMARY KEY (resource_type, id)
);

-- Every version ever written, deletes included (tombstones); seq orders the whole server's history.
CREATE TABLE resource_versions (
    seq BIGSERIAL PRIMARY KEY,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    method TEXT NOT NULL,         -- POST, PUT or DELETE
    content TEXT NOT NULL,
    UNIQUE (resource_type, id, version_id)
);
CREATE INDEX resource_versions_by_type ON resource_versions (resource_type, seq);
CREATE INDEX resource_versions_by_instance ON resource_versions (resource_type, id, seq);

-- Token index of the current versions (identifier for now; the search issue adds the others).
CREATE TABLE search_token (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT NOT NULL,         -- '' when the token has no system
    code TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, param, system, code)
);
CREATE INDEX search_token_lookup ON search_token (resource_type, param, code, system);
