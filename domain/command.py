"""The base class of every command."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Command(BaseModel):
    """An immutable request to change one aggregate; ``command_type`` is its stable wire name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_type: ClassVar[str]

    @property
    @abstractmethod
    def aggregate_id(self) -> str:
        """The id of the aggregate this command is addressed to."""
