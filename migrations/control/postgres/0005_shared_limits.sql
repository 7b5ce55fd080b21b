-- Request budgets and hit-flag counts kept in the control database (PostgreSQL twin of
-- ../sqlite/0005_shared_limits.sql), so that hubs sharing it count one budget and one
-- hourly count per principal between them. Hubs on PostgreSQL use them; a hub on SQLite is
-- the database's only process and counts in memory.

-- A GCRA budget is one instant per key: its theoretical arrival time, in microseconds since
-- the epoch. A key whose instant has passed is at a full budget, the same as no row.
CREATE TABLE request_budgets (
    key        TEXT   PRIMARY KEY,
    tat_micros BIGINT NOT NULL
);

-- Searches answered with a hit flag, per principal and clock hour (hours since the epoch).
CREATE TABLE hit_flag_counts (
    subject TEXT   NOT NULL,
    hour    BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (subject, hour)
);
