-- Blocks carry their record's system, PostgreSQL twin of ../sqlite/0003_blocks_by_system.sql.
-- A search reads only the systems its caller may query: with the system in the block's
-- index, rows of other systems are never reached (joined to their record and then
-- dropped, they made a search for a name another system holds slower than one for a name
-- nobody holds), and a block needs no join to say whose record it is.
ALTER TABLE identity_names ADD COLUMN system TEXT NOT NULL DEFAULT '';
ALTER TABLE travel_documents ADD COLUMN system TEXT NOT NULL DEFAULT '';
UPDATE identity_names SET
    system = (SELECT r.system FROM identity_records r WHERE r.id = identity_names.record_id);
UPDATE travel_documents SET
    system = (SELECT r.system FROM identity_records r WHERE r.id = travel_documents.record_id);
DROP INDEX identity_names_by_surname_block;
DROP INDEX identity_names_by_given_block;
DROP INDEX travel_documents_by_number;
CREATE INDEX identity_names_by_surname_block ON identity_names (system, surname_key, birth_year);
CREATE INDEX identity_names_by_given_block ON identity_names (system, given_key, birth_year, birth_month);
CREATE INDEX travel_documents_by_number ON travel_documents (system, number_normalised);
-- What the purpose and ownership rules read of a record before anything else, held in an
-- index of its own: found or not, a record costs one index lookup and no table read, so
-- a record refused is answered in the time a missing one is.
CREATE INDEX identity_records_gate ON identity_records (system, source_id, date_of_birth, member_state);
