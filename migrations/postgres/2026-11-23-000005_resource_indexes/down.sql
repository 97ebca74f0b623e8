DROP INDEX resources_last_updated;
DROP INDEX resources_live;
