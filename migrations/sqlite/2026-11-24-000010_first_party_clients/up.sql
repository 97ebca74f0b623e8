-- Carnet's own patient portal (registered with `carnet client add --first-party`): only
-- through it may a patient lift a block, withdraw an objection or unmask a document; a
-- third-party app acting for the patient cannot.
ALTER TABLE oauth_clients ADD COLUMN first_party BOOLEAN NOT NULL DEFAULT FALSE;
