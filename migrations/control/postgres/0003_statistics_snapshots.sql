-- The statistics published for each UTC day, as published: taken at the day's first request
-- and served unchanged until the next day, so that two requests minutes apart cannot
-- isolate one new record by their difference. Counts already suppressed, never raw ones.
-- PostgreSQL twin of ../sqlite/0003_statistics_snapshots.sql.
CREATE TABLE statistics_snapshots (
    -- Days since the epoch.
    day        BIGINT PRIMARY KEY,
    -- The published statistics as JSON.
    statistics TEXT   NOT NULL
);
