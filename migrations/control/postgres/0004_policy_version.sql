-- The policy's version (PostgreSQL twin of ../sqlite/0004_policy_version.sql): every change
-- to the rules moves it, in the transaction of the change. Each hub compares it with the
-- version its policy snapshot was built at and rebuilds when it moved, so a rule changed
-- through one hub reaches every hub on the same control database.
CREATE TABLE policy_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   BIGINT  NOT NULL
);
INSERT INTO policy_version (singleton, version) VALUES (TRUE, 0);

CREATE FUNCTION policy_version_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER policy_rules_version AFTER INSERT OR UPDATE OR DELETE ON policy_rules
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_moves();
