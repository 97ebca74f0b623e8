-- Notices to the patient (Communications written by Carnet), once each: the key says what
-- makes a notice unique (a professional's first access to a record, an emergency access,
-- a new document). A notice may be due later (the two-week notice of an INVISIBLE_PATIENT
-- document): it is kept here until written.
CREATE TABLE notices (
    notice_key TEXT NOT NULL PRIMARY KEY,
    patient TEXT NOT NULL,
    due_us BIGINT NOT NULL,
    content TEXT NOT NULL,      -- the Communication to write when due
    written BOOLEAN NOT NULL
);
CREATE INDEX notices_due ON notices (written, due_us);

-- Active rest-hook Subscriptions, as the matcher needs them (the resource is the truth).
CREATE TABLE subscriptions (
    id TEXT NOT NULL PRIMARY KEY,
    resource_type TEXT NOT NULL, -- the type its criteria search
    criteria TEXT NOT NULL,
    owner TEXT NOT NULL          -- JSON: who created it, whose rules its notifications obey
);
CREATE INDEX subscriptions_type ON subscriptions (resource_type);

-- Notifications to send, kept until the subscriber answers 2xx (retried with backoff).
CREATE TABLE deliveries (
    seq BIGSERIAL PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_us BIGINT NOT NULL,
    lease_until_us BIGINT NOT NULL, -- a node sending it holds it until then
    claim TEXT NOT NULL,
    last_error TEXT NOT NULL,
    created_us BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_us);
