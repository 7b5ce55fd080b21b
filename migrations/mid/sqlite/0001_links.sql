-- Multiple-identity detector (MID): links and their identity confirmation files. SQLite twin
-- of ../postgres/0001_links.sql. Records are named by (system, source id), never by a
-- partition's row id: a link can join the civil and the law-enforcement partitions.
CREATE TABLE links (
    id            TEXT   PRIMARY KEY,
    a_system      TEXT   NOT NULL,
    a_source_id   TEXT   NOT NULL,
    b_system      TEXT   NOT NULL,
    b_source_id   TEXT   NOT NULL,
    colour        TEXT   NOT NULL,
    rule          TEXT   NOT NULL,
    evidence      TEXT   NOT NULL,
    authority     TEXT   NOT NULL,
    deadline      BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- Set by a verifier's decision: from then on the detector never changes or drops the link.
    verified_at   BIGINT,
    -- The pair is stored in one order (a < b), so a replay finds the link it made before.
    UNIQUE (a_system, a_source_id, b_system, b_source_id)
);
CREATE INDEX links_by_b ON links (b_system, b_source_id);
CREATE INDEX links_by_colour ON links (colour, deadline);

CREATE TABLE link_history (
    link_id       TEXT   NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    ordinal       BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    actor         TEXT   NOT NULL,
    event         TEXT   NOT NULL,
    colour_before TEXT,
    colour_after  TEXT   NOT NULL,
    justification TEXT,
    PRIMARY KEY (link_id, ordinal)
);
