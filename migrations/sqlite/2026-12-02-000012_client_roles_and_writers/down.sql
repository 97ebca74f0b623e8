ALTER TABLE resource_versions DROP COLUMN writer;
ALTER TABLE oauth_clients DROP COLUMN organization;
ALTER TABLE oauth_clients DROP COLUMN role;
