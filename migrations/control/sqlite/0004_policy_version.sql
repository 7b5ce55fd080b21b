-- The policy's version (SQLite twin of ../postgres/0004_policy_version.sql): every change to
-- the rules moves it, in the transaction of the change. The hub compares it with the version
-- its policy snapshot was built at and rebuilds when it moved.
CREATE TABLE policy_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   BIGINT  NOT NULL
);
INSERT INTO policy_version (singleton, version) VALUES (TRUE, 0);

CREATE TRIGGER policy_rules_added AFTER INSERT ON policy_rules
BEGIN
    UPDATE policy_version SET version = version + 1;
END;
CREATE TRIGGER policy_rules_changed AFTER UPDATE ON policy_rules
BEGIN
    UPDATE policy_version SET version = version + 1;
END;
CREATE TRIGGER policy_rules_removed AFTER DELETE ON policy_rules
BEGIN
    UPDATE policy_version SET version = version + 1;
END;
