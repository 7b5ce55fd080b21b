-- The audit chain's head follows every appended row inside the appending statement, so an
-- append is one INSERT and needs no transaction to keep the head in step. Rows of one
-- statement are appended in sequence order: the last one leaves the head. PostgreSQL twin
-- of ../sqlite/0002_audit_head_trigger.sql.
CREATE FUNCTION audit_log_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO control_meta (key, value)
    VALUES ('audit_head', NEW.seq || ' ' || NEW.hash)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_head AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_head();
