"""ACCI's settings: read once from ``ACCI_*`` environment variables into one typed object."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from acci.workers import urls

ENV_PREFIX: Final = "ACCI_"


class Settings(BaseSettings):
    """Every knob ACCI has; nothing else in the code reads the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/acci")
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=16, ge=1)
    # A session idle inside a transaction holds back every gap-free reader (DESIGN §4):
    # PostgreSQL ends it after this long.
    db_idle_in_transaction_timeout_ms: int = Field(default=30_000, ge=1_000)
    db_statement_timeout_ms: int = Field(default=60_000, ge=0)
    # Tenant-scoped work (command handling, tenant-scoped queries) connects as acci_app, a role
    # without BYPASSRLS that owns nothing (migration 012), and sees one tenant per transaction.
    # Unset: database_url with its user replaced by acci_app and no password (the embedded
    # default's trust auth); give the full URL, password included, wherever passwords are asked.
    app_database_url: SecretStr | None = None

    # Who `acci` sends commands as (and reads the audit log as), in the compact form of
    # domain/principals.py: `ann@acme:admin,member` (user ann of tenant acme with two roles),
    # `ops:system_admin` (a system administrator), `service/jobs` (a service, acting as the
    # system). `--as` overrides it per command. The default is a trusted local system
    # administrator: whoever runs the CLI on this machine is trusted, as with psql on a local
    # socket; a gateway or identity provider would build the principal from a verified token
    # instead (README, "Security").
    principal: str = "cli:system_admin"

    # Payload encryption (README, "Security"): the master key that wraps every tenant's data
    # key, as 32 bytes in URL-safe base64, and the id it is known by (recorded with each wrapped
    # key, so a rotation knows what to re-wrap). Unset: nothing can be encrypted.
    master_key: SecretStr | None = None
    master_key_id: str = Field(default="local-1", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # Master keys replaced by master_key, still needed to unwrap data keys until `acci keys
    # rotate` has re-wrapped them all: comma-separated id=key pairs
    # (ACCI_PREVIOUS_MASTER_KEYS="local-1=<base64>,local-0=<base64>").
    previous_master_keys: SecretStr | None = None
    # Seal new events' data and snapshots' state with their tenant's data key (off by default;
    # needs master_key). Reads open sealed payloads whatever this says, so turning it on or off
    # leaves a store that reads fine.
    encryption: bool = False
    # What projections do with a shredded tenant's events (`acci tenant shred`): pass over them
    # ("skip"), or park each in the dead letters as they pass ("park").
    shredded_events: Literal["skip", "park"] = "skip"
    # Unwrapped data keys are cached this long in each process: a shred takes effect in the
    # other processes within it (at once in the shredding process). 0: no cache.
    data_key_cache_ttl_s: float = Field(default=60.0, ge=0)

    # Temporal payload codec (workers/codec.py): command inputs, results and failure messages
    # encrypted in Temporal's history under a key derived from master_key (required when on).
    # Every process that talks to the workflows (worker, CLI, acci dev) must agree on it.
    payload_codec: bool = False
    # `acci codec-server` (and `acci dev` with the codec on): the remote codec endpoint the Web
    # UI and `temporal workflow show --codec-endpoint` decode payloads through. With a token
    # set, every request must carry `Authorization: Bearer <token>`; cors_origins are the Web
    # UI origins a browser may call it from (empty: the dev UI's, on temporal_ui_port).
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(default=8081, ge=0, le=65535)
    codec_auth_token: SecretStr | None = None
    codec_cors_origins: list[str] = Field(default_factory=list)

    # A current load that folds at least this many events past the stream's newest snapshot
    # writes a snapshot in the background (eventstore/repository.py; the snapshot job prunes
    # them to snapshot_keep), so loads stay bounded however long a stream grows; a hot
    # aggregate's load folds half this on average (bench/snapshots_bench.py, part 3: 50 costs a
    # command half the CPU that 500 did). 0: never on the command path.
    snapshot_after_events: int = Field(default=50, ge=0)

    # The snapshot job (SnapshotWorkflow, run by the acci-snapshots Schedule): a stream whose
    # head is this many events past its newest snapshot is snapshotted (per aggregate type:
    # ACCI_SNAPSHOT_JOB_MIN_EVENTS_BY_TYPE='{"Tenant": 200}'); each stream keeps its newest
    # snapshot_keep snapshots.
    snapshot_job_min_events: int = Field(default=100, ge=1)
    snapshot_job_min_events_by_type: dict[str, int] = Field(default_factory=dict)
    snapshot_keep: int = Field(default=3, ge=1)
    # A read model's old version is kept this long after a rebuild switched queries to the new
    # one (`acci readmodels rebuild`; --grace overrides), then dropped.
    readmodel_retire_grace_s: float = Field(default=86_400.0, ge=0)
    # Backups (`acci backup`, BackupWorkflow): the folder they are written to (the same for the
    # worker and the CLI: give an absolute path in production), how many chains (a full backup
    # and its incrementals) each scope keeps, and their Schedules (`acci schedules apply`): a
    # full backup at backup_full_cron, an incremental one every backup_incremental_interval_s,
    # of every tenant and of each tenant in backup_tenants.
    backup_dir: Path = Path("backups")
    backup_keep_chains: int = Field(default=4, ge=1)
    backup_full_cron: str = "0 3 * * 0"
    backup_incremental_interval_s: int = Field(default=3_600, ge=60)
    backup_schedule_time_zone: str = "UTC"
    backup_schedule_paused: bool = False
    backup_tenants: list[str] = Field(default_factory=list)
    # `acci verify` (VerifyWorkflow) on its Schedule, acci-verify: every verify_schedule_interval_s
    # (paused unless verify_schedule_paused is false), checking verify_snapshot_sample snapshots.
    verify_schedule_interval_s: int = Field(default=86_400, ge=60)
    verify_schedule_paused: bool = True
    verify_snapshot_sample: int = Field(default=100, ge=0)
    # Its Schedule (`acci schedules apply`; `acci dev` applies it): every
    # snapshot_schedule_interval_s seconds, or at snapshot_schedule_cron (in
    # snapshot_schedule_time_zone) if set; a run still going when the next is due is skipped,
    # and runs missed while Temporal was down are caught up within the catch-up window.
    snapshot_schedule_interval_s: int = Field(default=3_600, ge=60)
    snapshot_schedule_cron: str | None = None
    snapshot_schedule_time_zone: str = "UTC"
    snapshot_schedule_catchup_window_s: int = Field(default=600, ge=60)
    snapshot_schedule_paused: bool = False

    max_payload_bytes: int = Field(default=256 * 1024, ge=1_024)
    max_events_per_append: int = Field(default=1_000, ge=1, le=100_000)

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "acci-commands"
    # `acci dev`: where the dev server keeps its SQLite file, and its Web UI port.
    data_dir: str = ".acci"
    temporal_ui_port: int = 8233
    worker_max_concurrent_workflow_tasks: int = Field(default=64, ge=1)
    worker_max_concurrent_activities: int = Field(default=64, ge=1)
    # How long a command keeps re-loading and deciding again (jittered backoff) after losing a
    # race on its stream, before it fails with ConcurrencyError. Below the command step's
    # 30 s timeout.
    command_conflict_budget_ms: int = Field(default=10_000, ge=0, le=25_000)
    # How long `acci` (and workers.command_delivery) waits for a command to finish before it
    # looks in the store: a command stored but not yet published (RabbitMQ unreachable) is then
    # reported as such (exit status 3) while its workflow goes on publishing by itself.
    command_publish_wait_ms: int = Field(default=5_000, ge=0)

    log_level: str = "INFO"

    # Tracing (OpenTelemetry, workers/tracing.py): off, otlp (OTLP over HTTP to
    # OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318) or console (spans on stderr).
    # Unset, the standard variables decide: OTEL_TRACES_EXPORTER (otlp, console or none), else
    # otlp if an OTLP endpoint is set, else off; OTEL_SDK_DISABLED=true turns it off whatever
    # is set. The variables are read here so that one place decides; the SDK reads them (and
    # the other OTEL_* ones: service name, sampler, batching) itself.
    tracing: Literal["off", "otlp", "console"] | None = None
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )

    # Applications to install besides those found through the `acci.apps` entry point group:
    # comma-separated import paths, each `package.module` (its `app`) or `package.module:name`.
    apps: str = ""

    # Projections (DESIGN §5): events per batch, attempts at a failing event (the first
    # included; the last one parks it) with the backoff between them, how long a caught-up
    # projection's batch waits for new appends before it reports back to its workflow, and
    # how long a woken projection gathers appends before it applies them (also the least time
    # between two NOTIFYs a worker sends to the others).
    projection_batch_size: int = Field(default=500, ge=1, le=10_000)
    projection_max_attempts: int = Field(default=5, ge=2, le=100)
    projection_retry_initial_ms: int = Field(default=200, ge=1)
    projection_retry_max_ms: int = Field(default=10_000, ge=1)
    # The idle wait is long because every return to the workflow costs its history six events
    # (activity scheduled, started, completed; a workflow task's three): at 1 s an idle
    # projection wrote ~6 history events/s for nothing; at 10 min, under one a minute. New
    # appends wake the waiting batch in-process (or by NOTIFY) at once, and a busy projection
    # still reports every second, so neither lag nor the Web UI's details wait for it.
    projection_idle_ms: int = Field(default=600_000, ge=10)
    # While it waits, a caught-up batch reads the store this often anyway (one cheap query, no
    # history event): appends that wake no worker (a restore, a migration, a script) are applied
    # within this.
    projection_poll_ms: int = Field(default=1_000, ge=0)
    projection_wake_interval_ms: int = Field(default=100, ge=0)
    # How often a worker looks whether another worker took its projections' runs to another
    # task queue (and takes them back): workers/projection_runs.py.
    projection_guard_s: float = Field(default=30.0, gt=0)

    # Queries (DESIGN §5): how long a cached answer lives, how long Redis may take to answer
    # before a query reads PostgreSQL instead, how long Redis is then left alone, the prefix of
    # every cache key, and how long a read-your-writes query waits for the read models.
    cache_ttl_seconds: float = Field(default=60.0, gt=0)
    cache_socket_timeout_ms: int = Field(default=250, ge=1)
    cache_retry_after_ms: int = Field(default=5_000, ge=0)
    cache_prefix: str = Field(default="acci", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    query_consistency_timeout_ms: int = Field(default=5_000, ge=0)

    # The worker's Prometheus endpoint (http://host:port/metrics); port 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    # The Temporal SDK's own metrics, served by the worker process (`acci worker`, `acci dev`)
    # on metrics_host at this port; 0 turns them off.
    temporal_metrics_port: int = Field(default=9465, ge=0, le=65535)
    # Per-tenant command counters: this many distinct tenants get their own label, the rest
    # are counted as "other" (tenants are unbounded; Prometheus series should not be).
    metrics_tenant_labels: int = Field(default=20, ge=0, le=10_000)

    # Logs (workers/logs.py): a log file ACCI writes (`acci dev`'s, and the dev server's output)
    # is rotated at log_max_bytes, log_backups old files kept. Command payloads appear in the
    # lines of a command's activity only with log_payloads (they may hold personal data).
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_backups: int = Field(default=5, ge=1)
    log_payloads: bool = False
    # `acci dev`: how long the dev server keeps a closed workflow run (its history) before it
    # deletes it, so that its SQLite file stops growing under a steady load.
    dev_retention_hours: int = Field(default=4, ge=1)
    # Readiness (`acci health`, the worker's /readyz): each check's time limit, and the lag a
    # projection may have (events, and age of the oldest unapplied event) and still be ready.
    health_timeout_ms: int = Field(default=2_000, ge=100)
    health_max_lag_events: int = Field(default=1_000, ge=0)
    health_max_lag_seconds: float = Field(default=60.0, ge=0)

    @field_validator(
        "app_database_url",
        "master_key",
        "previous_master_keys",
        "codec_auth_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An env file passes a variable it leaves empty as "" (compose's ${ACCI_MASTER_KEY:-}):
        # that means not set, not a secret of no characters.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _libpq_parses(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, where the message can leave the URL out: libpq's own error quotes the
        # part it could not parse, which may be the password.
        if value is not None:
            try:
                conninfo_to_dict(value.get_secret_value())
            except Exception:
                raise ValueError(
                    "is not a PostgreSQL connection URL libpq can parse (percent-encode any"
                    " '%', '@', ':' or '/' in the password)"
                ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _a_level(cls, value: str) -> str:
        if value.upper() not in _LEVELS:
            raise ValueError(f"must be one of {', '.join(_LEVELS)}")
        return value.upper()

    @field_validator("previous_master_keys")
    @classmethod
    def _id_key_pairs(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _pairs(value.get_secret_value())
        return value

    @field_validator("redis_url", "rabbitmq_url")
    @classmethod
    def _service_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        schemes = _SCHEMES[info.field_name or ""]
        try:
            parts = urlsplit(value.get_secret_value())
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("is not a URL (its host or port does not parse)") from None
        if parts.scheme not in schemes:
            raise ValueError(f"must start with {' or '.join(f'{s}://' for s in schemes)}")
        return value

    @model_validator(mode="after")
    def _encryption_has_a_key(self) -> Settings:
        if self.encryption and self.master_key is None:
            raise ValueError("ACCI_ENCRYPTION=true needs ACCI_MASTER_KEY (a master key)")
        return self


_SCHEMES: Final = {"redis_url": ("redis", "rediss", "unix"), "rabbitmq_url": ("amqp", "amqps")}
_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def previous_master_keys(settings: Settings) -> dict[str, str]:
    """``ACCI_PREVIOUS_MASTER_KEYS`` as {master key id: key} (checked when the settings load)."""
    text = settings.previous_master_keys
    return _pairs(text.get_secret_value() if text else "")


def _pairs(text: str) -> dict[str, str]:
    """Comma-separated ``id=key`` pairs; a malformed entry is refused (naming no key)."""
    keys: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        key_id, sep, key = entry.strip().partition("=")
        if not sep or not key_id or not key:
            raise ValueError("takes id=key pairs separated by commas")
        keys[key_id] = key
    return keys


def app_database_url(settings: Settings) -> str:
    """The URL tenant-scoped work connects with (``ACCI_APP_DATABASE_URL``, or its default)."""
    app = settings.app_database_url
    return urls.app_database_url(
        settings.database_url.get_secret_value(), app.get_secret_value() if app else None
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
