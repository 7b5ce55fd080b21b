-- Access control: casbin rules (kept here so administrators' changes persist), access
-- requests after a hit, the hash-chained audit log, and ingest quality counts. SQLite twin of
-- ../postgres/0001_access_control.sql.
CREATE TABLE policy_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'p' (subject, system, action) or 'g' (member, role), as in casbin's model.
    ptype       TEXT   NOT NULL,
    v0          TEXT   NOT NULL,
    v1          TEXT   NOT NULL,
    v2          TEXT   NOT NULL DEFAULT '',
    -- A time-boxed grant lapses by itself at this instant (unix ms); NULL never lapses.
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    reason      TEXT   NOT NULL
);
CREATE UNIQUE INDEX policy_rules_once ON policy_rules (ptype, v0, v1, v2);

CREATE TABLE control_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE access_requests (
    id              TEXT   PRIMARY KEY,
    -- 'request' (full access asked for) or 'waiver' (a hit followed by no request, and why).
    kind            TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    agency          TEXT   NOT NULL,
    member_state    TEXT   NOT NULL,
    system          TEXT   NOT NULL,
    case_reference  TEXT   NOT NULL,
    justification   TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    decided_at      BIGINT,
    decided_by      TEXT,
    decision_reason TEXT,
    grant_expires_at BIGINT
);
CREATE INDEX access_requests_by_status ON access_requests (status, created_at);

-- Append-only: each entry's hash covers its fields and the previous entry's hash.
CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    at           BIGINT NOT NULL,
    subject      TEXT   NOT NULL,
    agency       TEXT   NOT NULL,
    member_state TEXT   NOT NULL,
    purpose      TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    query        TEXT   NOT NULL,
    outcome      TEXT   NOT NULL,
    prev_hash    TEXT   NOT NULL,
    hash         TEXT   NOT NULL
);

-- What ingest saw, per system: accepted and refused records, and refusals and non-blocking
-- findings by rule. Counts only: nothing of the records themselves.
CREATE TABLE ingest_quality (
    system TEXT   NOT NULL,
    kind   TEXT   NOT NULL,
    rule   TEXT   NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (system, kind, rule)
);
