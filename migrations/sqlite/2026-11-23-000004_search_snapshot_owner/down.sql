ALTER TABLE search_snapshot DROP COLUMN page_size;
