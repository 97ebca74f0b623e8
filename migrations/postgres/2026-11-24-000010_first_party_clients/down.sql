ALTER TABLE oauth_clients DROP COLUMN first_party;
