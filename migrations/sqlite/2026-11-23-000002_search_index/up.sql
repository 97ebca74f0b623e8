-- Lookup indexes cover the id, so a search clause is answered from the index alone.
-- The token lookup index of the first migration is replaced by a covering one.
DROP INDEX search_token_lookup;
CREATE INDEX search_token_lookup ON search_token (resource_type, param, code, system, id);

-- Search indexes of the current versions, one table per parameter kind (tokens are in
-- search_token since the first migration). Written in the same transaction as the version.

-- String parameters: value_norm is folded (lower case, no accents) for the default and
-- :contains searches, value_exact is the text as written for :exact.
CREATE TABLE search_string (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    value_norm TEXT NOT NULL,
    value_exact TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, param, value_exact)
);
CREATE INDEX search_string_lookup ON search_string (resource_type, param, value_norm, id);

-- Date parameters: the range [start_us, end_us) the value covers, in µs since the epoch.
CREATE TABLE search_date (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    start_us BIGINT NOT NULL,
    end_us BIGINT NOT NULL,
    PRIMARY KEY (resource_type, id, param, start_us, end_us)
);
CREATE INDEX search_date_lookup ON search_date (resource_type, param, start_us, end_us, id);

-- Reference parameters: the target (type, id) and the reference as written.
CREATE TABLE search_reference (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, param, url)
);
CREATE INDEX search_reference_lookup ON search_reference (resource_type, param, target_id, target_type, id);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id);
