-- The application role's sessions in this database end a transaction left idle, and a
-- statement left running, by themselves: an event-writing transaction held open holds back
-- every gap-free reader of every tenant (DESIGN §4), and a session of acci_app opened by hand
-- (psql, a script) does not get the options ACCI's pools give theirs (eventstore/db.py, from
-- ACCI_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS and ACCI_DB_STATEMENT_TIMEOUT_MS, which still
-- override these for ACCI's own connections). The defaults of those two settings.
-- An owner that may not alter acci_app (no CREATEROLE, or no ADMIN OPTION on a role someone
-- else created) is warned, not stopped: an administrator can run the two statements by hand.
DO $$
BEGIN
    EXECUTE format(
        'ALTER ROLE acci_app IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
        current_database(), '30s');
    EXECUTE format(
        'ALTER ROLE acci_app IN DATABASE %I SET statement_timeout = %L',
        current_database(), '60s');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'acci_app''s session timeouts were not set in database %: % (an administrator'
        ' can run: ALTER ROLE acci_app IN DATABASE % SET idle_in_transaction_session_timeout'
        ' = ''30s''; and the same for statement_timeout = ''60s'')',
        current_database(), SQLERRM, quote_ident(current_database());
END;
$$;
