"""``acci keys …`` and ``acci tenant shred``: tenants' data keys (payload encryption).

``acci tenant shred --tenant T --yes`` destroys the tenant's data key (crypto-shredding: its
events stay in the log, unreadable). ``acci keys rotate`` re-wraps every data key under the
current master key (``ACCI_MASTER_KEY``/``ACCI_MASTER_KEY_ID``), the previous ones given in
``ACCI_PREVIOUS_MASTER_KEYS``; ``acci keys status`` says how many keys each master key wraps.
``acci keys export`` / ``acci keys import`` carry the wrapped keys (and shreds) to another
database, which a restore of encrypted events into it needs (``eventstore/key_export.py``).
All of them are the owner's (cross-tenant) work: they connect with ``ACCI_DATABASE_URL``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from acci.workers.cli_send import AsOption, cli_principal
from acci.workers.cli_support import USAGE_EXIT, JsonOption, TenantOption, run, setup
from acci.workers.settings import get_settings

if TYPE_CHECKING:
    from acci.eventstore.keyring import KeyRing

keys_app = typer.Typer(
    help="Tenants' data keys (payload encryption): status, master-key rotation, export/import.",
    no_args_is_help=True,
)

log = logging.getLogger(__name__)

YesOption = Annotated[
    bool, typer.Option("--yes", help="Confirm: the tenant's data is destroyed for good.")
]


@asynccontextmanager
async def _keyring() -> AsyncIterator[KeyRing]:
    from acci.eventstore.db import create_pool
    from acci.eventstore.errors import DataKeyUnavailableError
    from acci.eventstore.keyring import KeyRing
    from acci.workers.runtime import key_wrapper

    settings = get_settings()
    wrapper = key_wrapper(settings)
    if wrapper is None:
        raise DataKeyUnavailableError(
            "no master key is configured (ACCI_MASTER_KEY): there are no data keys to manage"
        )
    url = settings.database_url.get_secret_value()
    async with create_pool(url, min_size=1, max_size=2) as pool:
        yield KeyRing(pool, wrapper, cache_ttl=0)


async def _forget_read_models(ring: KeyRing, tenant: str) -> dict[str, int]:
    """The tenant's read-model rows made again from its events, now unreadable (so: deleted,
    but for what clear events make), and the cached answers about it invalidated."""
    from acci.eventstore.encryption import PayloadEncryption
    from acci.eventstore.errors import translated
    from acci.eventstore.store import EventStore
    from acci.readmodels.installed import default_projections
    from acci.readmodels.tenant_refresh import refresh_tenant
    from acci.workers.runtime import query_cache

    settings = get_settings()
    pool = ring.pool
    store = EventStore(pool, encryption=PayloadEncryption(ring))
    with translated():
        async with pool.connection() as conn, conn.transaction():
            refreshed = await refresh_tenant(conn, store, tenant, default_projections())
    cache = query_cache(settings)
    try:
        for name in refreshed:
            await cache.invalidate(name, [tenant])
    finally:
        await cache.aclose()
    return refreshed


def _system_administrator(as_principal: str | None, what: str) -> str:
    """``--as`` (else ``ACCI_PRINCIPAL``) described, if a system administrator; otherwise one
    ``error (authorization)`` line and exit status 2, before anything is touched."""
    principal = cli_principal(as_principal)
    if not principal.is_system_admin:
        typer.echo(
            f"error (authorization): {principal.describe()} may not {what}: only a system"
            " administrator may",
            err=True,
        )
        raise typer.Exit(USAGE_EXIT)
    return principal.describe()


def shred_tenant(
    tenant: TenantOption,
    yes: YesOption = False,
    as_json: JsonOption = False,
    as_principal: AsOption = None,
) -> None:
    """Destroy the tenant's data key: its events and snapshots become unreadable for good,
    while the log (positions, counts, other tenants) stays as it is. A system administrator's
    act (--as, else ACCI_PRINCIPAL)."""
    who = _system_administrator(as_principal, f"shred tenant {tenant!r}")
    if not yes:
        typer.echo(
            f"error (usage): shredding destroys tenant {tenant}'s data key for good: its"
            " events and snapshots can never be read again. Run again with --yes.",
            err=True,
        )
        raise typer.Exit(USAGE_EXIT)
    setup()

    from acci.eventstore.errors import EventStoreError
    from acci.readmodels.errors import QueryError

    async def main() -> None:
        async with _keyring() as ring:
            result = await ring.shred(tenant)
            log.warning("tenant shredded", extra={"tenant_id": tenant, "principal": who})
            try:
                purged = await _forget_read_models(ring, tenant)
            except (QueryError, EventStoreError) as e:
                typer.echo(
                    f"error ({getattr(e, 'code', None) or type(e).__name__}): tenant {tenant}'s"
                    f" data key is destroyed, but its read-model rows were not made again: {e}"
                    " (run this again: shredding twice is harmless)",
                    err=True,
                )
                raise typer.Exit(1) from None
        ttl = get_settings().data_key_cache_ttl_s
        if as_json:
            typer.echo(
                json.dumps({**asdict(result), "read_models": purged, "cache_ttl_seconds": ttl})
            )
        elif result.destroyed:
            versions = ", ".join(str(v) for v in result.destroyed)
            typer.echo(
                f"tenant {tenant}: data key version(s) {versions} destroyed; its"
                f" {result.events - result.clear_events} encrypted event(s) are now unreadable"
                f" (running workers are told now; other processes stop within {ttl:g} s)"
            )
        else:
            typer.echo(
                f"tenant {tenant}: no live data key (already shredded, or never encrypted);"
                " no key can be created for it any more"
            )
        if not as_json:
            typer.echo(
                f"tenant {tenant}: its rows of {len(purged)} read model(s) made again from its"
                " readable events (none once every event is sealed); cached answers invalidated"
            )
        if result.clear_events:
            typer.echo(
                f"warning: {result.clear_events} of tenant {tenant}'s events were stored in"
                " clear (before encryption was turned on) and stay readable",
                err=True,
            )

    run(main())


@keys_app.command("rotate")
def rotate(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Keys per transaction.")] = 500,
    as_json: JsonOption = False,
    as_principal: AsOption = None,
) -> None:
    """Re-wrap every data key under the current master key (events are not touched); resumable:
    run it again after an interruption. Afterwards the previous master keys are not needed. A
    system administrator's act (--as, else ACCI_PRINCIPAL)."""
    who = _system_administrator(as_principal, "re-wrap the data keys")
    setup()

    async def main() -> None:
        async with _keyring() as ring:
            done = await ring.rotate(batch=batch)
            log.info("data keys re-wrapped", extra={"count": done, "principal": who})
            status = await ring.status()
        if as_json:
            typer.echo(json.dumps({"rewrapped": done, "to_rewrap": status.to_rewrap}))
            return
        typer.echo(
            f"{done} data key(s) re-wrapped under master key {status.current_master_key_id};"
            f" {status.to_rewrap} left under other master keys"
        )

    run(main())


@keys_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """How many live data keys each master key wraps, how many were shredded."""
    setup()

    async def main() -> None:
        async with _keyring() as ring:
            found = await ring.status()
        settings = get_settings()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        **asdict(found),
                        "to_rewrap": found.to_rewrap,
                        "encryption": settings.encryption,
                    }
                )
            )
            return
        typer.echo(
            f"encryption of new payloads: {'on' if settings.encryption else 'off'};"
            f" current master key: {found.current_master_key_id}"
        )
        for key_id, count in sorted(found.live.items()):
            typer.echo(f"  {key_id}: {count} live data key(s)")
        typer.echo(
            f"  shredded: {found.shredded}; tenants with live keys: {found.tenants};"
            f" to re-wrap: {found.to_rewrap}"
        )

    run(main())


@keys_app.command("new-master-key")
def new_master_key() -> None:
    """Print a fresh random master key (for ACCI_MASTER_KEY); keep it secret and safe."""
    from acci.eventstore.keys import new_master_key as fresh

    typer.echo(fresh())


KeyFileOption = Annotated[Path, typer.Option("--file", help="The key export file.")]


@keys_app.command("export")
def export(
    file: KeyFileOption,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    as_principal: AsOption = None,
) -> None:
    """Write every tenant's data keys, wrapped by their master keys, and every shred, to a new
    file (mode 0600): what a restore of encrypted events into another database needs besides the
    backup. Useless without the master key. A system administrator's act (--as, else
    ACCI_PRINCIPAL)."""
    who = _system_administrator(as_principal, "export the data keys")
    setup()
    fd = _new_private_file(file)

    from acci.eventstore.db import create_pool
    from acci.eventstore.key_export import export_keys

    async def main() -> None:
        with os.fdopen(fd, "wb") as out:
            try:
                url = get_settings().database_url.get_secret_value()
                async with create_pool(url, min_size=1, max_size=1) as pool:
                    exported = await export_keys(pool, tenant)
                out.write(exported.model_dump_json(indent=1).encode())
                out.flush()
                os.fsync(out.fileno())
            except BaseException:
                file.unlink(missing_ok=True)  # no half-written file passing for a key backup
                raise
        shredded = sum(1 for k in exported.keys if k.wrapped_key is None)
        log.info(
            "data keys exported",
            extra={"file": str(file), "keys": len(exported.keys), "principal": who},
        )
        typer.echo(
            f"{len(exported.keys) - shredded} data key(s) and {shredded} shred(s) of"
            f" {len({k.tenant_id for k in exported.keys})} tenant(s) written to {file};"
            " keep it no longer than your erasure deadline allows"
        )

    run(main())


def _new_private_file(file: Path) -> int:
    """A new file only its owner may read, opened for writing; an existing one is never
    overwritten (exit status 2), and one that cannot be made is an error line (exit status 1)."""
    try:
        return os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        typer.echo(f"error (usage): {file} exists; give a new file", err=True)
        raise typer.Exit(USAGE_EXIT) from None
    except OSError as e:
        typer.echo(f"error (validation): cannot create {file}: {e.strerror}", err=True)
        raise typer.Exit(1) from None


@keys_app.command("import")
def import_(file: KeyFileOption, as_principal: AsOption = None) -> None:
    """Add the data keys and shreds of a key export that this database does not hold (never
    replacing a key or undoing a shred here). Every key is opened with the configured master
    keys first; a file that does not open, or disagrees with this database (another key under
    the same version, a shred of a tenant whose key is live here), writes nothing. A system
    administrator's act (--as, else ACCI_PRINCIPAL)."""
    who = _system_administrator(as_principal, "import data keys")
    setup()

    from acci.eventstore.errors import KeyFileError
    from acci.eventstore.key_export import KeyFile, import_keys

    async def main() -> None:
        try:
            text = file.read_bytes()
        except OSError as e:
            raise KeyFileError(f"cannot read {file}: {e.strerror}") from None
        parsed = KeyFile.parse(text)
        async with _keyring() as ring:
            result = await import_keys(ring.pool, ring.wrapper, parsed)
        log.info("data keys imported", extra={**asdict(result), "principal": who})
        typer.echo(
            f"{result.keys} data key(s) and {result.tombstones} shred(s) of {result.tenants}"
            f" tenant(s) imported; {result.kept} already here (the same key, or shredded here),"
            " left as they are"
        )

    run(main())
