-- _lastUpdated searches and sorts, and type-level history, without scanning the type.
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);
-- The live-row check of every search (`resource_type`, `id`, `deleted`) answered from an
-- index instead of reading each matching row with its content.
CREATE INDEX resources_live ON resources (resource_type, id, deleted, last_updated);
