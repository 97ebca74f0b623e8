DROP TABLE oauth_assertions;
DROP TABLE oauth_clients;
