-- _lastUpdated searches and sorts, and type-level history, without scanning the type.
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);
