DROP TABLE search_snapshot;
