#!/bin/sh
# The app role (migration 012's acci_app: LOGIN, no BYPASSRLS, owns nothing) with its password
# from .env (ACCI_APP_DB_PASSWORD), so that it can log in where every connection must give one.
# Run by the postgres image once, when its data volume is first initialised; the migration
# finds the role there and keeps it. To change the password later:
#   docker compose exec postgres psql -U postgres -c "ALTER ROLE acci_app PASSWORD '...'"
set -eu
: "${ACCI_APP_DB_PASSWORD:?ACCI_APP_DB_PASSWORD is the acci_app role's password (.env)}"
# The password goes in as a psql variable, quoted by psql (:'app_password'): never spliced
# into the SQL text, and never on a command line another process could read.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
\set app_password '$(printf '%s' "$ACCI_APP_DB_PASSWORD" | sed "s/'/''/g")'
SELECT 'CREATE ROLE acci_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acci_app') \gexec
ALTER ROLE acci_app PASSWORD :'app_password';
SQL
