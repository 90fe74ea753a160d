"""Where a projection's changes land: the tables of the read-model version its checkpoint names.

A projection writes logical table names (``tenants``); version N of a read model keeps its rows
in ``read_models.<table>_v<N>`` (``readmodels/read_model.py``). The engine renames each change
to its checkpoint's version as it collects a batch, so one projection class fills the live
version and a rebuild's new one alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from acci.readmodels.changes import Change, Update, Upsert
from acci.readmodels.errors import ProjectionError
from acci.readmodels.projections import Projection


def physical_table(table: str, version: int) -> str:
    """The name of ``table``'s table in version ``version`` (in the ``read_models`` schema)."""
    return f"{table}_v{version}"


def versioned_tables(projection: Projection, version: int) -> Mapping[str, str]:
    """Each table ``projection`` may write, to its name in version ``version``."""
    return {table: physical_table(table, version) for table in projection.tables}


def to_version(change: Change, tables: Mapping[str, str]) -> Change:
    """``change`` to its table's name in ``tables``; a table not there is refused."""
    physical = tables.get(change.table)
    if physical is None:
        raise ProjectionError(f"projection may not write read_models.{change.table}")
    # Built directly: dataclasses.replace costs several times as much, once per change.
    match change:
        case Upsert():
            return Upsert(physical, change.key, change.values, change.increments)
        case Update():
            return Update(
                physical,
                change.key,
                change.values,
                change.increments,
                change.add_to_set,
                change.remove_from_set,
            )
        case _:
            return replace(change, table=physical)
