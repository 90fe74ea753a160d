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

# The worker's /metrics, /healthz and /readyz (ACCI_METRICS_PORT) and the Temporal SDK's metrics
# (ACCI_TEMPORAL_METRICS_PORT); set ACCI_METRICS_HOST=0.0.0.0 to serve them outside the container.
EXPOSE 9464 9465

USER nobody
ENTRYPOINT ["acci"]
CMD ["worker"]
