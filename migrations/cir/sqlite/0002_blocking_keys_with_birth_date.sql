-- Blocking keys carry the birth year and month, SQLite twin of
-- ../postgres/0002_blocking_keys_with_birth_date.sql. A block is a name key *and* a birth
-- year (and month, for given names); indexed on the key alone, a common given name matched
-- every name that has it — hundreds at 100k records — and each was joined to its record to
-- test the date, so detection slowed with every record stored.
ALTER TABLE identity_names ADD COLUMN birth_year BIGINT NOT NULL DEFAULT 0;
ALTER TABLE identity_names ADD COLUMN birth_month BIGINT;
UPDATE identity_names SET
    birth_year = (SELECT r.birth_year FROM identity_records r WHERE r.id = identity_names.record_id),
    birth_month = (SELECT r.birth_month FROM identity_records r WHERE r.id = identity_names.record_id);
DROP INDEX identity_names_by_surname_key;
DROP INDEX identity_names_by_given_key;
CREATE INDEX identity_names_by_surname_block ON identity_names (surname_key, birth_year);
CREATE INDEX identity_names_by_given_block ON identity_names (given_key, birth_year, birth_month);
