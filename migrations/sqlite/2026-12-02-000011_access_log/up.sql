-- The access trail (issue 15): one narrow row per access decision group, never a FHIR
-- resource of the generic store. AuditEvents are materialised from these rows. Append-only:
-- nothing in Carnet updates or deletes a row.
CREATE TABLE access_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,        -- the AuditEvent id
    recorded BIGINT NOT NULL,       -- microseconds since the Unix epoch, UTC
    patient TEXT,                   -- the record concerned (NULL: a requester's own trace)
    agent TEXT,                     -- 'Practitioner/x' or 'Patient/x'; NULL: a backend service
    client TEXT NOT NULL,           -- the app or backend service
    establishment TEXT,             -- the establishment acting for the professional
    event_type TEXT NOT NULL,       -- audit-event-type code ('rest')
    interaction TEXT NOT NULL,      -- restful-interaction code (the subtype)
    action TEXT NOT NULL,           -- C R U D E
    outcome TEXT NOT NULL,          -- '0' success, '4' refused
    entities TEXT NOT NULL,         -- the references concerned besides the patient, one per line
    detail TEXT NOT NULL,           -- the rest, as JSON: purpose of use and reason, guardian,
                                    -- description, request id, what a requester asked
    labels TEXT NOT NULL,           -- visibility labels (TRE_A07 codes) of what it concerns, comma-separated
    content TEXT                    -- an AuditEvent posted by a backend service, as posted
);
CREATE INDEX access_log_by_patient ON access_log (patient, seq);
CREATE INDEX access_log_by_agent ON access_log (agent, seq);

-- The references a trace concerns, for `entity=` (the patient's own reference included).
CREATE TABLE access_log_entity (
    reference TEXT NOT NULL,
    id TEXT NOT NULL,               -- the trace's id
    PRIMARY KEY (reference, id)
) WITHOUT ROWID;

-- The AuditEvents written before the log existed become traces as they were stored.
INSERT INTO access_log (id, recorded, patient, agent, client, event_type,
    interaction, action, outcome, entities, detail, labels, content)
SELECT r.id, r.last_updated,
    (SELECT substr(json_extract(e.value, '$.what.reference'), 9)
       FROM json_each(r.content, '$.entity') e
      WHERE json_extract(e.value, '$.what.reference') LIKE 'Patient/%' LIMIT 1),
    (SELECT json_extract(a.value, '$.who.reference')
       FROM json_each(r.content, '$.agent') a
      WHERE json_extract(a.value, '$.requestor') = 1
        AND json_extract(a.value, '$.who.reference') IS NOT NULL LIMIT 1),
    COALESCE((SELECT json_extract(a.value, '$.who.identifier.value')
       FROM json_each(r.content, '$.agent') a
      WHERE json_extract(a.value, '$.who.identifier.system') = 'urn:carnet:client' LIMIT 1), ''),
    COALESCE(json_extract(r.content, '$.type.code'), ''),
    COALESCE(json_extract(r.content, '$.subtype[0].code'), ''),
    COALESCE(json_extract(r.content, '$.action'), ''),
    COALESCE(json_extract(r.content, '$.outcome'), ''),
    '', '{}', '', r.content
FROM resources r
WHERE r.resource_type = 'AuditEvent' AND NOT r.deleted
ORDER BY r.last_updated;
INSERT OR IGNORE INTO access_log_entity (reference, id)
SELECT json_extract(e.value, '$.what.reference'), l.id
FROM access_log l, json_each(l.content, '$.entity') e
WHERE l.content IS NOT NULL AND json_extract(e.value, '$.what.reference') IS NOT NULL;
DELETE FROM search_token WHERE resource_type = 'AuditEvent';
DELETE FROM search_string WHERE resource_type = 'AuditEvent';
DELETE FROM search_date WHERE resource_type = 'AuditEvent';
DELETE FROM search_reference WHERE resource_type = 'AuditEvent';
DELETE FROM resource_versions WHERE resource_type = 'AuditEvent';
DELETE FROM resources WHERE resource_type = 'AuditEvent';
