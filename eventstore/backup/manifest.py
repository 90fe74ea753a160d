"""What a backup is on disk: its folder, its files and its manifest (written last).

Layout under the backup folder (``ACCI_BACKUP_DIR``)::

    <root>/all/<backup id>/                 every tenant
    <root>/tenant-<tenant id>/<backup id>/  one tenant
        events.copy.gz      event_store.events rows, PostgreSQL binary COPY, gzip
        commands.copy.gz    event_store.commands rows of the same transactions
        snapshots.copy.gz   snapshots.aggregate_snapshots (full backups only)
        manifest.json       written last, atomically: a folder without it is not a backup

A backup id sorts by time: ``<UTC yyyymmddThhmmssZ>-<full|incr>-<8 hex>``. A full backup holds
everything up to its checkpoint; an incremental one what came after its parent's checkpoint up
to its own. A chain (a full backup and the incrementals after it) restores to any point it
covers.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from acci.eventstore.errors import EventStoreError
from acci.eventstore.records import Position

FORMAT: Final = 1
MANIFEST: Final = "manifest.json"
FILES: Final = ("events", "commands", "snapshots")
SUFFIX: Final = ".copy.gz"

BackupKind = Literal["full", "incremental"]


class BackupError(EventStoreError):
    """A backup cannot be made, read or used; the message says which and why."""

    code: ClassVar[str] = "backup"


class BackupNotFoundError(BackupError):
    """No (complete) backup has the id asked for."""

    code: ClassVar[str] = "not_found"


class CorruptBackupError(BackupError):
    """A backup's files do not match its manifest, or its chain is broken: refused before
    anything is changed."""

    code: ClassVar[str] = "corrupt_backup"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """One file of a backup: its size and SHA-256 (of the compressed bytes on disk)."""

    name: str
    bytes: int
    sha256: str
    rows: int


class TenantCounts(_Model):
    """What a backup holds of one tenant."""

    events: int
    snapshots: int = 0
    commands: int = 0
    first_position: str | None = None
    last_position: str | None = None
    first_time: datetime | None = None
    last_time: datetime | None = None


class Manifest(_Model):
    """Everything about a backup: what it holds, where it starts and ends, how to check it."""

    format: int = FORMAT
    backup_id: str
    kind: BackupKind
    tenant: str | None = Field(description="the tenant backed up; None: every tenant")
    parent: str | None = None
    # Exclusive start (the parent's checkpoint, or 0:0) and inclusive end in the global order.
    after: str
    checkpoint: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    files: list[FileEntry]
    tenants: dict[str, TenantCounts]
    schema_version: int
    event_versions: dict[str, int]
    # The tenant restores (of the scope) this backup's snapshot saw: one it did not see, found
    # by the next backup, makes that one full.
    restores: list[str] = []

    @property
    def events(self) -> int:
        return sum(t.events for t in self.tenants.values())

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def checkpoint_position(self) -> Position:
        return Position.parse(self.checkpoint)

    @property
    def after_position(self) -> Position:
        return Position.parse(self.after)


def new_backup_id(kind: BackupKind, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{'full' if kind == 'full' else 'incr'}-{uuid.uuid4().hex[:8]}"


def scope_folder(root: Path, tenant: str | None) -> Path:
    return root / ("all" if tenant is None else f"tenant-{tenant}")


def backup_folder(root: Path, tenant: str | None, backup_id: str) -> Path:
    return scope_folder(root, tenant) / backup_id


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write the manifest last and atomically (a temporary file, fsynced, then renamed)."""
    target = folder / MANIFEST
    partial = folder / (MANIFEST + ".partial")
    with partial.open("w") as out:
        out.write(manifest.model_dump_json(indent=2))
        out.flush()
        os.fsync(out.fileno())
    partial.replace(target)
    _fsync_folder(folder)


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the backup in ``folder``; ``BackupNotFoundError`` if there is none."""
    try:
        text = (folder / MANIFEST).read_text()
    except FileNotFoundError:
        raise BackupNotFoundError(f"{folder} holds no complete backup (no manifest)") from None
    try:
        return Manifest.model_validate(json.loads(text))
    except ValueError as e:
        raise CorruptBackupError(f"the manifest of {folder} is not readable: {e}") from e


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
