DROP INDEX resources_last_updated;
