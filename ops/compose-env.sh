#!/bin/sh
# The settings a locally run `acci` (or `make demo`) needs to use the compose file's services,
# which ask for the passwords in .env. Prints them as export lines:
#   eval "$(sh ops/compose-env.sh)"        # .env in the current folder; or: sh ops/compose-env.sh path/to/.env
set -eu
ENV_FILE=${1:-.env}
if [ ! -f "$ENV_FILE" ]; then
  echo "compose-env: no $ENV_FILE (cp .env.example .env, then fill it in)" >&2
  exit 1
fi
set -a
# shellcheck disable=SC1090
. "$(cd "$(dirname "$ENV_FILE")" && pwd)/$(basename "$ENV_FILE")"
set +a
cat <<EXPORTS
export ACCI_DATABASE_URL='postgresql://postgres:${POSTGRES_PASSWORD}@127.0.0.1:5432/acci'
export ACCI_APP_DATABASE_URL='postgresql://acci_app:${ACCI_APP_DB_PASSWORD}@127.0.0.1:5432/acci'
export ACCI_REDIS_URL='redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0'
export ACCI_RABBITMQ_URL='amqp://${RABBITMQ_USER}:${RABBITMQ_PASSWORD}@127.0.0.1:5672/%2F'
EXPORTS
# The optional ones only when .env gives them a value (an empty key is no key).
for name in ACCI_MASTER_KEY ACCI_MASTER_KEY_ID ACCI_PREVIOUS_MASTER_KEYS ACCI_ENCRYPTION \
  ACCI_SHREDDED_EVENTS ACCI_PAYLOAD_CODEC ACCI_CODEC_AUTH_TOKEN; do
  eval "value=\${$name:-}"
  if [ -n "$value" ]; then
    printf "export %s='%s'\n" "$name" "$value"
  fi
done
