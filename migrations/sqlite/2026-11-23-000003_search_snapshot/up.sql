-- The ordered ids of a search result that spans several pages, taken when its first page
-- is served: later pages read from here, so that a client paging through a result sees
-- every resource that matched at the start exactly once, whatever is written meanwhile.
CREATE TABLE search_snapshot (
    search_id TEXT NOT NULL,
    pos BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (search_id, pos)
);
CREATE INDEX search_snapshot_age ON search_snapshot (created_us);
