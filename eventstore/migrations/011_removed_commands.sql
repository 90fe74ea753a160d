-- Commands whose events a restore removed (eventstore/backup/restore.py): a tenant restored to a
-- point before them no longer has their events, and Temporal still remembers the command as
-- done. Sent again, such a command is refused (the trigger below: SQLSTATE ACR01, the store's
-- CommandRemovedByRestoreError), not stored a second time. A later restore that brings the
-- command's events back removes its row.
CREATE TABLE event_store.removed_commands (
    command_id uuid PRIMARY KEY,
    tenant_id text NOT NULL,
    restore_id text NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION event_store.refuse_removed_command() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_removed event_store.removed_commands;
BEGIN
    SELECT * INTO v_removed FROM event_store.removed_commands WHERE command_id = NEW.command_id;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ACR01',
            MESSAGE = format(
                'command %s was removed by restore %s of tenant %s at %s; it is not applied again',
                NEW.command_id, v_removed.restore_id, v_removed.tenant_id, v_removed.removed_at),
            HINT = 'Send it with a new command id if it should happen now.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER commands_refuse_removed BEFORE INSERT ON event_store.commands
    FOR EACH ROW EXECUTE FUNCTION event_store.refuse_removed_command();

-- Every tenant restore (eventstore/backup/restore.py apply_tenant). A restore puts back events
-- at their old positions and removes later ones: an incremental backup (what came after its
-- parent's checkpoint) would see neither. A backup's manifest lists the restores its snapshot
-- saw; the next backup of the scope that finds one more is made full (eventstore/backup/export.py).
CREATE TABLE event_store.restores (
    restore_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    restored_at timestamptz NOT NULL DEFAULT now()
);
