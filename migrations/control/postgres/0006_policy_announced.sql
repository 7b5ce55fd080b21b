-- Every change to the rules is announced on the channel `interop_hub_policy` (PostgreSQL
-- only: on SQLite the hub is the only process). PostgreSQL delivers the announcement when
-- the change commits; each hub listens on a connection of its own and reads the policy
-- version at once, instead of at its next poll. The announcement is only a hint (a hub
-- whose listening connection broke misses it): the version, polled regardless, decides.
-- Changes to the rules are rare, so announcing them does not queue other commits behind
-- the server's notification lock, as announcing every feed row would.
CREATE OR REPLACE FUNCTION policy_version_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_version SET version = version + 1;
    PERFORM pg_notify('interop_hub_policy', '');
    RETURN NULL;
END
$$;
