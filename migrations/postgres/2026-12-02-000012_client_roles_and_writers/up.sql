-- What a registered client is, beyond its scopes: '' an app or a backend service that
-- files data, 'registry' the identity and account registry, 'establishment' a hospital or
-- practice system that obtains tokens for its professionals (JWT bearer grant, RFC 7523),
-- the Organization it is being `organization` (an id).
ALTER TABLE oauth_clients ADD COLUMN role TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_clients ADD COLUMN organization TEXT;
-- Who wrote each version (`Patient/x`, `Practitioner/x`, `client/c`; NULL before this
-- migration): a backend service reads back what it filed itself, and nothing else.
ALTER TABLE resource_versions ADD COLUMN writer TEXT;
-- A professional's login that the provider vouched is the SAMU regulating doctor's (its
-- configured `regulation` claim): only such a grant may declare purpose_of_use=ETREAT.
ALTER TABLE oauth_authorizations ADD COLUMN regulation BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE oauth_grants ADD COLUMN regulation BOOLEAN NOT NULL DEFAULT FALSE;
