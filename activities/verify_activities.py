"""``acci verify``'s activities: the live store checked (``eventstore/verification.py``) and
each read model against a fold (``readmodels/verification.py``); nothing is changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from prometheus_client import Gauge
from temporalio import activity
from temporalio.exceptions import ApplicationError

from acci.activities.backup_models import CheckResult, VerifyInput
from acci.activities.heartbeats import heartbeating
from acci.eventstore.errors import UnknownTenantError, translated
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.eventstore.tenant_scope import tenant_known
from acci.eventstore.verification import (
    MAX_PROBLEMS,
    events_readable,
    snapshots_fold,
    stream_contiguity,
)
from acci.readmodels.installed import read_models
from acci.readmodels.validation import FoldError
from acci.readmodels.verification import verify_read_model

VERIFY_PROBLEMS: Final = Gauge(
    "acci_verify_problems", "Problems the last verification found, by check", ["check"]
)
VERIFY_LAST_RUN: Final = Gauge(
    "acci_verify_last_run_timestamp_seconds", "When a verification last finished (Unix time)"
)


class VerifyActivities:
    """Holds the event store and a repository (snapshots are compared with loads without)."""

    def __init__(self, store: EventStore, repository: AggregateRepository) -> None:
        self._store = store
        self._repository = repository

    @activity.defn(name="verify_event_store")
    async def event_store(self, job: VerifyInput) -> list[CheckResult]:
        """Streams contiguous, every event readable, sampled snapshots equal a fold; a tenant
        the store does not know is ``NotFoundError`` (a mistyped name would pass, on nothing)."""
        pool = self._store.pool
        if job.tenant is not None:
            with translated():
                async with pool.connection() as conn:
                    known = await tenant_known(conn, job.tenant)
            if not known:
                error = UnknownTenantError(job.tenant, "verify")
                raise ApplicationError(str(error), type="NotFoundError", non_retryable=True)
        async with heartbeating("verifying the event store"):
            checks = [
                await stream_contiguity(pool, job.tenant),
                await events_readable(
                    pool, self._store.registry, job.tenant, encryption=self._store.encryption
                ),
                await snapshots_fold(
                    pool,
                    self._repository,
                    job.tenant,
                    job.sample,
                    encryption=self._store.encryption,
                ),
            ]
        return [_record(c.name, c.looked_at, c.problem_count, c.problems) for c in checks]

    @activity.defn(name="verify_read_models")
    async def read_models(self, job: VerifyInput) -> list[CheckResult]:
        """Each installed read model (all rows, or the tenant's) against a fold of the store."""
        out = []
        for model in read_models():
            name = f"read model {model.name} equals a fold"
            try:
                async with heartbeating(f"verifying read model {model.name}"):
                    comparisons = await verify_read_model(self._store, model, tenant=job.tenant)
            except FoldError as e:  # the events themselves cannot be folded: say which
                out.append(_record(name, 0, 1, [f"cannot be folded: {e}"]))
                continue
            problems = [
                f"{c.table}: {c.found_rows} rows (a fold has {c.expected_rows}); first rows that"
                f" differ: {[d.key for d in c.differences]}"
                for c in comparisons
                if not c.equal
            ]
            rows = sum(c.found_rows for c in comparisons)
            out.append(_record(name, rows, len(problems), problems))
        VERIFY_LAST_RUN.set_to_current_time()
        return out


def _record(name: str, looked_at: int, count: int, problems: list[str]) -> CheckResult:
    VERIFY_PROBLEMS.labels(name).set(count)
    return CheckResult(
        name=name, looked_at=looked_at, problem_count=count, problems=problems[:MAX_PROBLEMS]
    )


def verify_activities(activities: VerifyActivities) -> list[Callable[..., object]]:
    """The activities, as a worker registers them."""
    return [activities.event_store, activities.read_models]
