-- Records whose detection has not finished (SQLite twin of ../postgres/0004_undetected.sql):
-- the detection sweep looks for them every minute, and a partial index holds only them
-- (normally none), so that the sweep does not read the whole table each time.
CREATE INDEX identity_records_undetected ON identity_records (id) WHERE detected_version < version;
