DROP TABLE access_log_entity;
DROP TABLE access_log;
