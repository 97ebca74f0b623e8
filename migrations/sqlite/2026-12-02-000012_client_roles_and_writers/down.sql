ALTER TABLE oauth_grants DROP COLUMN regulation;
ALTER TABLE oauth_authorizations DROP COLUMN regulation;
ALTER TABLE resource_versions DROP COLUMN writer;
ALTER TABLE oauth_clients DROP COLUMN organization;
ALTER TABLE oauth_clients DROP COLUMN role;
