ALTER TABLE search_snapshot DROP COLUMN query;
ALTER TABLE search_snapshot DROP COLUMN owner;
