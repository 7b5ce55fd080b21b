-- The audit chain's head follows every append inside the appending statement, so an append
-- is one INSERT and needs no transaction to keep the head in step. Once per statement: the
-- statement's newest row is the head. PostgreSQL twin of ../sqlite/0002_audit_head_trigger.sql
-- (SQLite has no statement triggers; there the last row of a statement, the newest, wins).
CREATE FUNCTION audit_log_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO control_meta (key, value)
    SELECT 'audit_head', seq || ' ' || hash FROM appended ORDER BY seq DESC LIMIT 1
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_head AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_head();
