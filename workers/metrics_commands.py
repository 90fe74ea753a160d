"""The worker's command metrics: outcomes, processing time and conflicts, per type and tenant.

Observed where the worker sees a command's result: the activity interceptor
(``workers/interceptors.py``) around the command activity, and the command handler's
``on_conflict`` hook. Label values are bounded: command types by the installed applications'
catalogue, tenants by a setting (the first N seen get their own label, the rest ``other``).
"""

from __future__ import annotations

import threading
from typing import Final

from prometheus_client import Counter, Histogram
from temporalio.exceptions import ApplicationError

from acci.activities.errors import REJECTION_FAMILIES
from acci.domain import COMMAND_TYPES

COMMANDS: Final = Counter(
    "acci_commands",
    "Command activity attempts by command type and outcome (ok, resent, validation, domain,"
    " concurrency, authorization, infrastructure; a retried infrastructure failure counts once"
    " per attempt)",
    ["command_type", "outcome"],
)
COMMAND_SECONDS: Final = Histogram(
    "acci_command_seconds",
    "Time of one command activity attempt: validate, load, decide, append and publish",
    ["command_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
COMMAND_CONFLICTS: Final = Counter(
    "acci_command_conflicts",
    "Concurrency conflicts a command lost on its stream, then reloaded and decided again",
    ["command_type"],
)
TENANT_COMMANDS: Final = Counter(
    "acci_tenant_commands",
    "Command activity attempts by tenant and outcome (tenants past ACCI_METRICS_TENANT_LABELS"
    " distinct ones are counted as 'other')",
    ["tenant", "outcome"],
)

# The ApplicationError types of activities/errors.py, by outcome (AuthorizationError: a command
# its principal may not send, domain/authorization.py).
OUTCOME_BY_ERROR_TYPE: Final = REJECTION_FAMILIES
OUTCOMES: Final = ("ok", "resent", *OUTCOME_BY_ERROR_TYPE.values(), "infrastructure")
CLAIMING: Final = frozenset({"ok", "resent"})
# Not a valid tenant id (no parentheses allowed), so no tenant is mistaken for the rest.
OTHER: Final = "(other)"
UNKNOWN_TYPE: Final = "unknown"


def outcome_of(error: BaseException) -> str:
    """The outcome a failed command attempt counts as (anything unnamed: infrastructure)."""
    if isinstance(error, ApplicationError):
        return OUTCOME_BY_ERROR_TYPE.get(error.type or "", "infrastructure")
    return "infrastructure"


class BoundedLabel:
    """Label values up to ``limit`` distinct ones, then ``other``: the first seen keep theirs.

    First come rather than a moving top-N: a counter's series must not change label as the
    ranking changes, or its rate would jump. Thread-safe.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str, *, may_claim: bool = True) -> str:
        """``value``'s label; a value not labelled yet takes a free slot only if ``may_claim``."""
        if value in self._seen:
            return value
        with self._lock:
            if may_claim and len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


class CommandMetrics:
    """Counts command attempts and conflicts."""

    def __init__(self, *, tenant_labels: int = 20) -> None:
        self._tenant = BoundedLabel(tenant_labels)

    def attempt(self, command_type: str, tenant_id: str, outcome: str, seconds: float) -> None:
        """One command activity attempt ended with ``outcome`` after ``seconds``."""
        kind = command_type if command_type in COMMAND_TYPES else UNKNOWN_TYPE
        COMMANDS.labels(kind, outcome).inc()
        COMMAND_SECONDS.labels(kind).observe(seconds)
        # Only a command the store took (or answered as a re-send) gives its tenant a label
        # slot: a refused one's tenant id is the sender's word only (a malformed one, one for a
        # tenant that does not exist), and anyone could use the slots up with refusals.
        tenant = self._tenant(tenant_id, may_claim=outcome in CLAIMING)
        TENANT_COMMANDS.labels(tenant, outcome).inc()

    def conflict(self, command_type: str) -> None:
        """A command lost a race on its stream and decides again (CommandHandler's hook)."""
        kind = command_type if command_type in COMMAND_TYPES else UNKNOWN_TYPE
        COMMAND_CONFLICTS.labels(kind).inc()
