-- Records being deleted, named as links name them. A delete writes its row before it removes
-- the record's links and the record, and drops it after removing the links a second time;
-- a row left behind (the process died in between) has start-up and the detection sweep
-- remove the record's links, so that no link outlives a record whatever the interleaving
-- with other records' detections. PostgreSQL twin of ../sqlite/0002_deletions.sql.
CREATE TABLE record_deletions (
    system        TEXT   NOT NULL,
    source_id     TEXT   NOT NULL,
    started_at    BIGINT NOT NULL,
    PRIMARY KEY (system, source_id)
);
