#!/bin/sh
# Temporal's two databases on ACCI's PostgreSQL, their schemas brought up to this admin-tools
# version: the `temporalio/server` image does neither (the deprecated auto-setup image did).
# Safe to re-run: an existing database is kept and only missing schema versions are applied, so
# upgrading both images' tags together upgrades the schema on the next `docker compose up`.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS names the PostgreSQL host}"
: "${POSTGRES_USER:?POSTGRES_USER names the PostgreSQL user}"
PORT=${DB_PORT:-5432}
SCHEMA=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

attempt=1
until nc -z -w 5 "$POSTGRES_SEEDS" "$PORT"; do
  if [ "$attempt" -ge 60 ]; then
    echo "temporal-schema: PostgreSQL at $POSTGRES_SEEDS:$PORT does not answer" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 2
done

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db=${pair%%:*}
  folder=${pair#*:}
  sql --db "$db" create
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$SCHEMA/$folder/versioned"
done
echo "temporal-schema: databases ${DBNAME:-temporal} and ${VISIBILITY_DBNAME:-temporal_visibility} are up to date"
