-- A stamp per patient, renewed (in the writing transaction) whenever something their rules
-- are made of changes: their Patient resource (médecin traitant), their Consents, their
-- RelatedPersons (legal representatives). Each Carnet node caches a patient's rules with
-- the stamp they were read at, and reads them again once it differs.
CREATE TABLE rules_versions (
    patient TEXT NOT NULL PRIMARY KEY,
    stamp TEXT NOT NULL
);
