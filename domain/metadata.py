"""What a client may put into a command's metadata: context, never the envelope the system records.

The command handler records an event's envelope itself (correlation and causation ids, the
command, the workflow run that stored it, the stream), and RabbitMQ headers and consumers read
those fields back. ``actor`` is the command's principal (domain/principals.py), recorded by the
command activity on every event as ``{"id", "tenant_id", "roles", "kind"}`` (``Principal.actor``;
``tenant_id`` null for a system principal). A client that could set these could make its events
look caused by someone else's command, sent by someone else, or routed as another type; so a
command whose metadata names one of them is refused, not merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

ACTOR: Final = "actor"
"""The metadata key of the principal that sent the command (``Principal.actor()``)."""

RESERVED_METADATA_KEYS: Final = frozenset(
    {
        # Recorded by the command handler on every event.
        "correlation_id",
        "causation_id",
        "command_id",
        "command_type",
        "workflow_run_id",
        # The authenticated sender: the system's to record, never the client's to claim.
        ACTOR,
        # The stored event's own columns, also sent as the RabbitMQ message's headers.
        "tenant_id",
        "aggregate_id",
        "aggregate_type",
        "event_id",
        "event_type",
        "event_version",
        "sequence_number",
        "global_position",
        "transaction_id",
        "position",
        "created_at",
        "message_id",
    }
)


def _normalised(key: str) -> str:
    # "Correlation-Id" reads as correlation_id to a person and to many header parsers.
    return key.strip().lower().replace("-", "_")


def reserved_keys(keys: Iterable[str]) -> list[str]:
    """The keys (as sent, in order) that name a field the system records itself."""
    return [key for key in keys if _normalised(key) in RESERVED_METADATA_KEYS]
