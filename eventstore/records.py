"""What goes into the event store and what comes out of it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple

# Expected-version sentinels for append: any version, or "the stream must not exist yet".
ANY: Final = -1
NO_STREAM: Final = 0

# The envelope format of a stored row (the `version` column). 1 = plain JSON data and metadata.
ENVELOPE_VERSION: Final = 1


class Position(NamedTuple):
    """A place in the global order: events are ordered by (transaction_id, global_position)."""

    transaction_id: int
    global_position: int

    @classmethod
    def start(cls) -> Position:
        """The position before the first event."""
        return cls(0, 0)

    def __str__(self) -> str:
        return f"{self.transaction_id}:{self.global_position}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read a position written as ``transaction_id:global_position``."""
        tx, _, gp = text.partition(":")
        try:
            position = cls(int(tx), int(gp))
        except ValueError:
            raise ValueError(
                f"not a position: {text!r} (expected 'transaction:position')"
            ) from None
        if position.transaction_id < 0 or position.global_position < 0:
            raise ValueError(f"not a position: {text!r} (negative)")
        if max(position.transaction_id, position.global_position) > _LARGEST:
            raise ValueError(f"not a position: {text!r} (past the largest, {_LARGEST})")
        return position


START: Final = Position(0, 0)
# Transaction ids and global positions are PostgreSQL bigints (xid8 as far as it goes).
_LARGEST: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type, schema version, JSON data and per-event metadata."""

    event_type: str
    event_version: int
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


# Envelope fields that name the command itself: an event's metadata does not store them when they
# equal its command id (a column), and every read gives them back (``with_envelope``), so a
# command's events always say what caused them and what they belong to.
IMPLIED_BY_COMMAND: Final = ("correlation_id", "causation_id")


def with_envelope(metadata: dict[str, Any], command_id: uuid.UUID) -> dict[str, Any]:
    """``metadata`` (changed in place) with the fields it implies set to the command id."""
    implied = None
    for key in IMPLIED_BY_COMMAND:
        if key not in metadata:
            metadata[key] = implied = implied or str(command_id)
    return metadata


class RecordedEvent(NamedTuple):
    """A stored event, upcast to its event type's current version."""

    event_id: uuid.UUID
    tenant_id: str
    aggregate_id: str
    aggregate_type: str
    sequence_number: int
    event_type: str
    event_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    command_id: uuid.UUID
    created_at: datetime
    global_position: int
    transaction_id: int

    @property
    def position(self) -> Position:
        """This event's place in the global order."""
        return Position(self.transaction_id, self.global_position)

    @property
    def readable(self) -> bool:
        """False for a shredded tenant's event (``UnreadableEvent``): its data is lost."""
        return True

    def damage(self) -> str | None:
        """What is wrong with an event whose sealed data failed authentication
        (``DamagedEvent``), as a failure's text; None for every other event."""
        return None


class UnreadableEvent(RecordedEvent):
    """A shredded tenant's event, as ``read_all`` returns it: every envelope field as stored,
    ``data`` the sealed payload as stored (no key can open it any more). Projections skip or
    park it (setting ``shredded_events``); nothing may read its data as the event's."""

    __slots__ = ()

    @property
    def readable(self) -> bool:
        return False


class DamagedEvent(UnreadableEvent):
    """An event whose sealed data failed authentication (changed in place, or moved from another
    row), as ``read_all`` returns it: not readable, and not to be passed over as a shredded
    tenant's is. A projection fails on it, so that it is retried and then parked, naming it."""

    __slots__ = ()

    def damage(self) -> str:
        return (
            f"CiphertextError: stored event {self.event_id} in {self.tenant_id}/"
            f"{self.aggregate_id}: encrypted payload failed authentication (changed, or moved"
            " from another row)"
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append stored: the stream's new version and each event's id and position."""

    tenant_id: str
    aggregate_id: str
    stream_version: int
    event_ids: tuple[uuid.UUID, ...]
    positions: tuple[Position, ...]
    # True when the command had been appended before and nothing new was stored.
    duplicate: bool = False
    # The stored events themselves, in stream order (empty where only ids were known).
    events: tuple[RecordedEvent, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of_events(cls, events: Sequence[RecordedEvent], *, duplicate: bool) -> AppendResult:
        """The result that stored these events (one command's, in stream order)."""
        last = events[-1]
        return cls(
            tenant_id=last.tenant_id,
            aggregate_id=last.aggregate_id,
            stream_version=last.sequence_number,
            event_ids=tuple(e.event_id for e in events),
            positions=tuple(e.position for e in events),
            duplicate=duplicate,
            events=tuple(events),
        )

    @property
    def last_position(self) -> Position:
        """The position of the last event the command stored."""
        return self.positions[-1]


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's share of an ``append_many`` call."""

    tenant_id: str
    aggregate_id: str
    aggregate_type: str
    events: tuple[NewEvent, ...]
    command_id: uuid.UUID
    expected_version: int = ANY
    # The SHA-256 of the command as the domain parsed it (see domain.command.fingerprint): a
    # command id sent again with another fingerprint is refused. None: match by stream only.
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """What the store knows of a command that stored events: where, what, and which events."""

    command_id: uuid.UUID
    tenant_id: str
    aggregate_type: str
    aggregate_id: str
    command_type: str | None
    fingerprint: str | None
    event_ids: tuple[uuid.UUID, ...]

    def may_be(
        self,
        tenant_id: str,
        aggregate_type: str,
        aggregate_id: str,
        command_type: str | None,
        fingerprint: str | None,
    ) -> bool:
        """Whether a command sent with this id may be this stored one (a re-send), not another.

        With a fingerprint on both sides that decides. Without one (appends through the store's
        API, commands stored before fingerprints) the tenant, stream and command type must
        match, and the caller still compares what the command stored with what it sends.
        """
        if self.fingerprint is not None and fingerprint is not None:
            return self.fingerprint == fingerprint and self.tenant_id == tenant_id
        known = (self.tenant_id, self.aggregate_type, self.aggregate_id)
        if known != (tenant_id, aggregate_type, aggregate_id):
            return False
        return None in (self.command_type, command_type) or self.command_type == command_type


def event_id_for(tenant_id: str, command_id: uuid.UUID, index: int) -> uuid.UUID:
    """The id of a command's index-th event (counted across every stream the command touches).

    The same command always yields the same ids, so a re-run finds what it stored; the tenant is
    part of the name, so no two tenants' events can share an id (message ids, inbox keys).
    """
    return uuid.uuid5(command_id, f"{tenant_id}/{index}")
