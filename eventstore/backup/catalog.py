"""The backups on disk: listed (complete ones only), grouped into chains, and pruned.

A chain is a full backup and the incrementals that follow it. Retention keeps the newest
``keep`` chains of each scope (every tenant, or one tenant) and deletes older chains whole, so
no kept backup ever loses a backup it depends on. A folder without a manifest is a backup that
did not finish: never listed or used, and removed once it is older than ``stale_after`` (a
younger one may be a backup still being written).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from acci.eventstore.backup.manifest import MANIFEST, Manifest, read_manifest, scope_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    """A complete backup and its folder."""

    folder: Path
    manifest: Manifest


def scopes(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []


def list_backups(
    root: Path, *, tenant: str | None = None, every_scope: bool = True
) -> list[Stored]:
    """Complete backups, oldest first: of every scope, or (``every_scope`` False) of the scope
    of ``tenant`` (None: the all-tenant backups)."""
    folders = scopes(root) if every_scope else [scope_folder(root, tenant)]
    found = []
    for scope in folders:
        if not scope.exists():
            continue
        for folder in sorted(scope.iterdir()):
            if (folder / MANIFEST).exists():
                found.append(Stored(folder, read_manifest(folder)))
    return sorted(found, key=lambda s: (s.manifest.started_at, s.manifest.backup_id))


def latest(root: Path, tenant: str | None) -> Manifest | None:
    """The newest complete backup of ``tenant``'s scope (None: of every tenant)."""
    stored = list_backups(root, tenant=tenant, every_scope=False)
    return stored[-1].manifest if stored else None


def chains(stored: list[Stored]) -> list[list[Stored]]:
    """The backups of one scope grouped into chains, oldest chain first."""
    by_id = {s.manifest.backup_id: s for s in stored}
    out: dict[str, list[Stored]] = {}
    for s in stored:
        head = s
        while head.manifest.parent is not None and head.manifest.parent in by_id:
            head = by_id[head.manifest.parent]
        out.setdefault(head.manifest.backup_id, []).append(s)
    return sorted(out.values(), key=lambda c: c[0].manifest.started_at)


def apply_retention(root: Path, *, keep: int, stale_after: float = 6 * 3600) -> list[str]:
    """Delete all but the newest ``keep`` chains of each scope, and unfinished backups older
    than ``stale_after`` seconds; returns the folders' names it deleted."""
    deleted = []
    now = time.time()
    every = list_backups(root, every_scope=True)  # every manifest read once
    for scope in scopes(root):
        stored = [s for s in every if s.folder.parent == scope]
        for chain in chains(stored)[:-keep] if keep > 0 else []:
            for s in chain:
                shutil.rmtree(s.folder)
                deleted.append(s.manifest.backup_id)
        for folder in scope.iterdir():
            if folder.is_dir() and not (folder / MANIFEST).exists():
                if now - folder.stat().st_mtime > stale_after:
                    shutil.rmtree(folder)
                    deleted.append(folder.name)
    if deleted:
        log.info("backups deleted by retention", extra={"backups": deleted, "keep_chains": keep})
    return deleted
