-- The ordered (type, id) list of a search result that spans several pages, taken when its
-- first page is served: later pages read from here, so that a client paging through a
-- result sees every resource that matched at the start exactly once, whatever is written
-- meanwhile. One row per search (the list as text, one "Type/id" per line).
CREATE TABLE search_snapshot (
    search_id TEXT NOT NULL PRIMARY KEY,
    created_us BIGINT NOT NULL,
    total BIGINT NOT NULL,
    refs TEXT NOT NULL
);
CREATE INDEX search_snapshot_age ON search_snapshot (created_us);
