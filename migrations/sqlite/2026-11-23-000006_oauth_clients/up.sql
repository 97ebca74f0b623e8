-- The registry of client applications (the catalogue and hospital systems): only these can
-- obtain tokens, with at most their registered scopes; a suspended client's tokens stop
-- working at once (checked on every request).
CREATE TABLE oauth_clients (
    client_id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    confidential BOOLEAN NOT NULL,
    redirect_uris TEXT NOT NULL, -- JSON array
    scopes TEXT NOT NULL,        -- space-separated, the most the client may be granted
    jwks TEXT NOT NULL,          -- JSON Web Key Set of a confidential client ('' otherwise)
    suspended BOOLEAN NOT NULL,
    created_us BIGINT NOT NULL
);
-- Client assertions already used (their jti), kept until they expire: a replayed
-- assertion is refused.
CREATE TABLE oauth_assertions (
    jti TEXT NOT NULL PRIMARY KEY,
    client_id TEXT NOT NULL,
    exp_us BIGINT NOT NULL
);
CREATE INDEX oauth_assertions_exp ON oauth_assertions (exp_us);
