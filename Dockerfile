# The ACCI worker image (docker-compose.yml's `acci-worker`): the project installed, `acci` as
# the entry point. Settings come from ACCI_* environment variables.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY acci acci
COPY domain domain
COPY eventstore eventstore
COPY readmodels readmodels
COPY activities activities
COPY workflows workflows
COPY workers workers
RUN pip install --no-cache-dir .
# The backup folder (ACCI_BACKUP_DIR in docker-compose.yml): a new named volume takes this
# directory's owner, so the worker can write it.
RUN mkdir /backups && chown nobody /backups

USER nobody
ENTRYPOINT ["acci"]
CMD ["worker"]
