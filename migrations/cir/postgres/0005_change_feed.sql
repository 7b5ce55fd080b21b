-- The partition's ordered change feed (PostgreSQL twin of ../sqlite/0005_change_feed.sql).
-- Every hub on these databases follows it to keep its biometric indexes and owner maps in
-- step with the store. A row names what changed (`kind`, `subject`: a template id for now);
-- whoever reads it looks the subject's present state up in the store, so reading a row twice
-- does no harm. Rows are written by triggers, in the transaction of the change itself.
--
-- Identity values are handed out before commit, so a transaction that began earlier can
-- commit a smaller `position` after a larger one is already visible: readers do not follow
-- `position` alone. Each row carries its transaction id, and a reader takes only rows whose
-- transaction id is below the oldest transaction still running (`pg_snapshot_xmin`), in
-- (txid, position) order: no row can later appear behind a reader's cursor.
CREATE TABLE change_feed (
    position   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid       BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    kind       TEXT   NOT NULL,
    subject    BIGINT NOT NULL,
    written_at BIGINT NOT NULL DEFAULT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint)
);
CREATE INDEX change_feed_in_order ON change_feed (txid, position);
CREATE INDEX change_feed_by_age ON change_feed (written_at);

-- How far the feed has been pruned: a reader whose cursor is behind this may have missed
-- rows, and mends its indexes from the store instead.
CREATE TABLE change_feed_pruned (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    txid      BIGINT  NOT NULL,
    position  BIGINT  NOT NULL
);
INSERT INTO change_feed_pruned (singleton, txid, position) VALUES (TRUE, 0, 0);

-- Only indexable templates enter the indexes, so only they are fed.
CREATE FUNCTION change_feed_template() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.indexable THEN
            INSERT INTO change_feed (kind, subject) VALUES ('template', NEW.id);
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.indexable THEN
        INSERT INTO change_feed (kind, subject) VALUES ('template', OLD.id);
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER biometric_templates_feed AFTER INSERT OR DELETE ON biometric_templates
    FOR EACH ROW EXECUTE FUNCTION change_feed_template();
