-- The partition's ordered change feed (SQLite twin of ../postgres/0005_change_feed.sql).
-- A row names what changed (`kind`, `subject`: a template id for now); whoever reads it looks
-- the subject's present state up in the store, so reading a row twice does no harm. Rows are
-- written by triggers, in the transaction of the change itself (a foreign key's cascade fires
-- them too). SQLite runs one write transaction at a time, so `position` order is commit
-- order and `txid` stays 0; AUTOINCREMENT keeps positions from being reused after pruning.
CREATE TABLE change_feed (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    txid       BIGINT  NOT NULL DEFAULT 0,
    kind       TEXT    NOT NULL,
    subject    BIGINT  NOT NULL,
    written_at BIGINT  NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
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
CREATE TRIGGER biometric_templates_present AFTER INSERT ON biometric_templates
    WHEN NEW.indexable
BEGIN
    INSERT INTO change_feed (kind, subject) VALUES ('template', NEW.id);
END;
CREATE TRIGGER biometric_templates_absent AFTER DELETE ON biometric_templates
    WHEN OLD.indexable
BEGIN
    INSERT INTO change_feed (kind, subject) VALUES ('template', OLD.id);
END;
