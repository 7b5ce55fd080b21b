-- The audit chain's head follows every appended row inside the appending statement, so an
-- append is one INSERT and needs no transaction to keep the head in step. Rows of one
-- statement are appended in sequence order: the last one, the newest, leaves the head.
-- SQLite twin of ../postgres/0002_audit_head_trigger.sql.
CREATE TRIGGER audit_log_head AFTER INSERT ON audit_log
BEGIN
    INSERT OR REPLACE INTO control_meta (key, value)
    VALUES ('audit_head', NEW.seq || ' ' || NEW.hash);
END;
