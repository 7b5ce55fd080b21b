-- Common identity repository (CIR), PostgreSQL twin of ../sqlite/0001_identity_repository.sql.
CREATE TABLE identity_records (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system        TEXT    NOT NULL,
    source_id     TEXT    NOT NULL,
    version       BIGINT  NOT NULL CHECK (version >= 1),
    member_state  TEXT,
    date_of_birth TEXT    NOT NULL,
    birth_year    BIGINT  NOT NULL,
    birth_month   BIGINT,
    birth_day     BIGINT,
    birth_place   TEXT,
    birth_country TEXT,
    sex           TEXT    NOT NULL,
    nationalities TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,
    findings      TEXT    NOT NULL,
    stored_at     BIGINT  NOT NULL,
    -- SHA-256 of the record as mapped: a replay of the same version must carry the same content.
    fingerprint   TEXT    NOT NULL,
    -- The version the multiple-identity detector has finished with: behind `version`
    -- after a crash between storing and detecting, so detection resumes at start-up.
    detected_version BIGINT NOT NULL DEFAULT 0,
    UNIQUE (system, source_id)
);
CREATE INDEX identity_records_by_birth ON identity_records (birth_year, birth_month);

CREATE TABLE identity_names (
    record_id      BIGINT NOT NULL REFERENCES identity_records (id) ON DELETE CASCADE,
    ordinal        BIGINT NOT NULL,
    kind           TEXT   NOT NULL,
    surname        TEXT   NOT NULL,
    surname_folded TEXT   NOT NULL,
    surname_icao   TEXT   NOT NULL,
    surname_ascii  TEXT   NOT NULL,
    given_names    TEXT   NOT NULL,
    given_folded   TEXT   NOT NULL,
    given_icao     TEXT   NOT NULL,
    given_ascii    TEXT   NOT NULL,
    -- Phonetic keys of the ICAO surname and of the alphabetically first given name: the
    -- blocking keys that pick match candidates (the given-name key with the birth month).
    surname_key    TEXT   NOT NULL,
    given_key      TEXT   NOT NULL,
    PRIMARY KEY (record_id, ordinal)
);
CREATE INDEX identity_names_by_surname_key ON identity_names (surname_key);
CREATE INDEX identity_names_by_given_key ON identity_names (given_key);

CREATE TABLE travel_documents (
    record_id         BIGINT NOT NULL REFERENCES identity_records (id) ON DELETE CASCADE,
    ordinal           BIGINT NOT NULL,
    kind              TEXT   NOT NULL,
    number            TEXT   NOT NULL,
    number_normalised TEXT   NOT NULL,
    issuing_country   TEXT,
    expiry            TEXT,
    PRIMARY KEY (record_id, ordinal)
);
CREATE INDEX travel_documents_by_number ON travel_documents (number_normalised);

-- A template's id is its key in the biometric index; ids are never reused, so a key
-- left in an index by a crash can never point at another template.
CREATE TABLE biometric_templates (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id       BIGINT  NOT NULL REFERENCES identity_records (id) ON DELETE CASCADE,
    ordinal         BIGINT  NOT NULL,
    modality        TEXT    NOT NULL,
    finger_position TEXT,
    algorithm       TEXT    NOT NULL,
    quality         BIGINT  NOT NULL CHECK (quality BETWEEN 0 AND 100),
    indexable       BOOLEAN NOT NULL,
    vector          BYTEA   NOT NULL,
    UNIQUE (record_id, ordinal)
);
CREATE INDEX biometric_templates_by_algorithm ON biometric_templates (algorithm, indexable);
