DROP TABLE search_reference;
DROP TABLE search_date;
DROP TABLE search_string;
DROP INDEX search_token_lookup;
CREATE INDEX search_token_lookup ON search_token (resource_type, param, code, system);
