-- Changes to the rules that wait for a second administrator (four eyes; twin of
-- ../sqlite/0008_policy_changes.sql). A change that widens access to personal data is
-- proposed here instead of made; another administrator approves it (the rule is then added
-- or removed in the same transaction) or refuses it.
CREATE TABLE policy_changes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'add' (the rule below, lapsing at expires_at) or 'remove' (rule rule_id, as it was).
    change          TEXT   NOT NULL CHECK (change IN ('add', 'remove')),
    ptype           TEXT   NOT NULL,
    v0              TEXT   NOT NULL,
    v1              TEXT   NOT NULL,
    v2              TEXT   NOT NULL DEFAULT '',
    rule_id         BIGINT,
    expires_at      BIGINT,
    reason          TEXT   NOT NULL,
    proposed_by     TEXT   NOT NULL,
    proposed_at     BIGINT NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'refused')),
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_reason TEXT
);
CREATE INDEX policy_changes_by_status ON policy_changes (status, id);
