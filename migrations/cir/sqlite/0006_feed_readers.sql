-- Where each hub reading the change feed stands (SQLite twin of ../postgres/0006_feed_readers.sql):
-- every hub reports its cursor (an id of its own for each run) when it moves, and every few
-- seconds regardless. Rows every reader still reporting has passed are pruned before their
-- age; a hub that stopped reporting holds nothing back (it mends from the store if it comes
-- back behind what was pruned).
CREATE TABLE feed_readers (
    reader   TEXT   PRIMARY KEY,
    txid     BIGINT NOT NULL,
    position BIGINT NOT NULL,
    -- Milliseconds since the epoch, of the report.
    seen_at  BIGINT NOT NULL
);
