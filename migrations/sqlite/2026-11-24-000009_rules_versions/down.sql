DROP TABLE rules_versions;
