-- Later pages of a search are served only to whoever ran it (`owner`: the requester's
-- principal), and render as the first page did: `query` keeps the search as understood
-- ("Type?canonical-query"), whose _include/_revinclude, _summary and _elements apply to
-- every page; `page_size` is the page size it ran with: later pages are cut the same way,
-- and a link asking for another size or offset is refused as edited.
ALTER TABLE search_snapshot ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE search_snapshot ADD COLUMN query TEXT NOT NULL DEFAULT '';
ALTER TABLE search_snapshot ADD COLUMN page_size BIGINT NOT NULL DEFAULT 0;
