-- SMART App Launch: authorization requests in progress, the grants they end in (with their
-- authorization code), and the refresh tokens of each grant. Codes and refresh tokens are
-- kept as SHA-256 hashes only.

-- From the app's /authorize request, through the upstream login, to the consent screen.
CREATE TABLE oauth_authorizations (
    id TEXT NOT NULL PRIMARY KEY,   -- random, names the request in the consent page's URL
    browser TEXT NOT NULL,          -- SHA-256 of the cookie binding it to one browser
    csrf TEXT NOT NULL,             -- the consent form's anti-forgery value
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,                     -- the app's state, given back with the code
    nonce TEXT,                     -- the app's nonce, put in its ID token
    code_challenge TEXT NOT NULL,   -- PKCE S256
    provider TEXT,                  -- the upstream identity provider chosen
    upstream_state TEXT UNIQUE,
    upstream_nonce TEXT,
    upstream_verifier TEXT,
    subject TEXT,                   -- once logged in: Patient/ID or Practitioner/ID
    expires_us BIGINT NOT NULL
);
CREATE INDEX oauth_authorizations_expires ON oauth_authorizations (expires_us);

-- What a user (or a backend client) granted an app. Every access token names its grant:
-- revoking the grant (revocation, reuse of a code or of a refresh token) stops them at once.
CREATE TABLE oauth_grants (
    id TEXT NOT NULL PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,          -- Patient/ID, Practitioner/ID or client/ID
    patient TEXT,                   -- the patient in context
    scope TEXT NOT NULL,
    nonce TEXT,
    redirect_uri TEXT NOT NULL,     -- '' for client_credentials
    code_hash TEXT UNIQUE,          -- NULL for client_credentials
    code_challenge TEXT,
    code_expires_us BIGINT NOT NULL,
    code_used BOOLEAN NOT NULL,
    revoked BOOLEAN NOT NULL,
    created_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL      -- after this nothing issued from it is valid
);
CREATE INDEX oauth_grants_expires ON oauth_grants (expires_us);

CREATE TABLE oauth_refresh_tokens (
    hash TEXT NOT NULL PRIMARY KEY,
    grant_id TEXT NOT NULL,
    expires_us BIGINT NOT NULL,
    used BOOLEAN NOT NULL
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);
