"""The base class of every command."""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Command(BaseModel):
    """An immutable request to change one aggregate; ``command_type`` is its stable wire name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_type: ClassVar[str]

    @property
    @abstractmethod
    def aggregate_id(self) -> str:
        """The id of the aggregate this command is addressed to."""

    def fingerprint(self, tenant_id: str) -> str:
        """SHA-256 of this command as sent for ``tenant_id``: its type, tenant, aggregate and
        fields after parsing (defaults filled in, sets in a fixed order).

        Two sends with one command id are the same command exactly when these match: a re-send
        gets the first result, anything else is refused (DESIGN §3, command identity).
        """
        body = {
            "command_type": self.command_type,
            "tenant_id": tenant_id,
            "aggregate_id": self.aggregate_id,
            "fields": _canonical(self.model_dump(mode="python")),
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """``value`` with every set as a sorted list, so that equal commands hash alike."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value
