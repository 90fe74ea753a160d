"""Where a projection's changes land: the tables of the read-model version its checkpoint names.

A projection writes logical table names (``tenants``); version N of a read model keeps its rows
in ``read_models.<table>_v<N>`` (``readmodels/read_model.py``). The engine checks each change's
table as it collects a batch, and ``apply_changes`` renames it to the checkpoint's version as it
plans the statements (once per table, not per change), so one projection class fills the live
version and a rebuild's new one alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

from acci.readmodels.changes import Change
from acci.readmodels.changes.change import renamed
from acci.readmodels.errors import ProjectionError
from acci.readmodels.projections import Projection


def physical_table(table: str, version: int) -> str:
    """The name of ``table``'s table in version ``version`` (in the ``read_models`` schema)."""
    return f"{table}_v{version}"


def versioned_tables(projection: Projection, version: int) -> Mapping[str, str]:
    """Each table ``projection`` may write, to its name in version ``version``."""
    # frozenset() of a frozenset is itself; a projection that declared a set still works.
    return tables_of(frozenset(projection.tables), version)


@lru_cache(maxsize=256)
def tables_of(tables: frozenset[str], version: int) -> Mapping[str, str]:
    """Each of ``tables``, to its name in version ``version`` (read-only: shared)."""
    return MappingProxyType({table: physical_table(table, version) for table in tables})


def to_version(change: Change, tables: Mapping[str, str]) -> Change:
    """``change`` to its table's name in ``tables``; a table not there is refused."""
    physical = tables.get(change.table)
    if physical is None:
        raise ProjectionError(f"projection may not write read_models.{change.table}")
    return renamed(change, physical)


def allowed(changes: list[Change], tables: Mapping[str, str]) -> list[Change]:
    """``changes``, if each writes a table in ``tables`` (renamed as they are applied,
    ``apply_changes(..., tables)``); else ``ProjectionError``."""
    for change in changes:
        if change.table not in tables:
            raise ProjectionError(f"projection may not write read_models.{change.table}")
    return changes
