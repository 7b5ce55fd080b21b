-- Revoked credentials (PostgreSQL twin of ../sqlite/0007_revocations.sql). A row refuses one
-- token (`token`: its id), or every token of one principal (`principal`: agency/subject) or
-- of one agency (`agency`) issued up to `revoked_at`. A token is admitted for a bounded
-- time, so a row is forgotten once every token it can refuse has expired (`forget_after`).
-- Revocations are part of the policy: a change moves the policy's version and is announced
-- (0006), and every hub rebuilds its snapshot, revocations included.
CREATE TABLE revocations (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT   NOT NULL CHECK (kind IN ('token', 'principal', 'agency')),
    target       TEXT   NOT NULL,
    -- Unix ms.
    revoked_at   BIGINT NOT NULL,
    forget_after BIGINT NOT NULL,
    created_by   TEXT   NOT NULL,
    reason       TEXT   NOT NULL
);
CREATE INDEX revocations_by_forget_after ON revocations (forget_after);

CREATE TRIGGER revocations_version AFTER INSERT OR DELETE ON revocations
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_moves();
