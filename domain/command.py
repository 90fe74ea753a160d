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
        the fields that differ from their defaults, after parsing (sets in a fixed order).

        Two sends with one command id are the same command exactly when these match: a re-send
        gets the first result, anything else is refused (DESIGN §3, command identity). A field
        at its default counts as not sent, so that a command type that gains an optional field
        in a deploy keeps the identity of the commands sent before it (their re-sends are still
        re-sends), and sending a default explicitly is the same command as leaving it out.
        """
        return self._digest(tenant_id, self.model_dump(mode="python", exclude_defaults=True))

    def fingerprints(self, tenant_id: str) -> tuple[str, str]:
        """``fingerprint`` and the one ACCI before 2026-12-02 stored for the same command (every
        field, defaults filled in): a command stored then is recognised when it is sent again."""
        return self.fingerprint(tenant_id), self._digest(tenant_id, self.model_dump(mode="python"))

    def _digest(self, tenant_id: str, fields: dict[str, Any]) -> str:
        body = {
            "command_type": self.command_type,
            "tenant_id": tenant_id,
            "aggregate_id": self.aggregate_id,
            "fields": _canonical(fields),
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
