"""Row changes a projection asks for, and how a batch of them reaches the database.

A projection returns ``Upsert``, ``Update`` and ``Delete`` values; ``statement`` is what one
change means in SQL. ``apply_changes`` has the effect of running each change's ``statement`` in
order, and fails where that would fail, but sends a batch as a few set-based statements. The
modules, in the order a batch meets them:

* ``change.py``: the change values and one change's statement.
* ``apply.py``: ``apply_changes``, the entry point.
* ``table_facts.py``: what each table allows, from the catalog (types, NOT NULL, CHECKs,
  unique indexes, whether its rows change alone); ``type_rules.py``: where JSON carries a value
  of a column type as a parameter would.
* ``planner.py``: a batch's layers and statements; ``shapes.py``: what the changes of one shape
  may become; ``merging.py``: a row's consecutive changes as one; ``set_statements.py``: the
  SQL and JSON records of the set-based statements.
"""

from acci.readmodels.changes.apply import apply_changes
from acci.readmodels.changes.change import (
    SCHEMA,
    Change,
    Delete,
    MissingRowError,
    Row,
    Update,
    Upsert,
    statement,
)

__all__ = [
    "SCHEMA",
    "Change",
    "Delete",
    "MissingRowError",
    "Row",
    "Update",
    "Upsert",
    "apply_changes",
    "statement",
]
