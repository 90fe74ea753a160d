"""Backup, restore and verification, as Temporal workflows: what ``acci backup``, ``acci
verify`` and their Schedules run.

``BackupWorkflow`` makes one backup (full, or incremental after the scope's newest) and applies
the retention; a worker killed mid-way leaves an unfinished folder that is never used, and the
activity's retry makes the backup again. ``RestoreWorkflow`` checks the whole chain, then
restores it in one transaction (one tenant while the system runs, or everything into an empty
store), then republishes the tenant's events if asked. Both show what they are doing in their
current details (the Web UI) and a ``status`` query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from acci.workflows.batch_jobs import BATCH_RETRY

with workflow.unsafe.imports_passed_through():
    from acci.activities.backup_activities import BackupActivities
    from acci.activities.backup_models import (
        BACKUP_WORKFLOW,
        RESTORE_WORKFLOW,
        VERIFY_WORKFLOW,
        BackupInput,
        BackupResult,
        CheckResult,
        RestoreInput,
        RestoreResult,
        VerifyInput,
        VerifyResult,
    )
    from acci.activities.errors import JOB_INPUT_ERROR
    from acci.activities.verify_activities import VerifyActivities
    from acci.workflows.inputs import NO_INPUT, decode_input


# The SDK hands run() the raw payload (workflows/inputs.py): input that does not decode fails
# the run at once (JobValidationError), not its workflow task for ever; clients type-check the
# model they send.
if TYPE_CHECKING:
    BackupArgument: TypeAlias = BackupInput
    RestoreArgument: TypeAlias = RestoreInput
    VerifyArgument: TypeAlias = VerifyInput
else:
    BackupArgument = RawValue
    RestoreArgument = RawValue
    VerifyArgument = RawValue
_TIMEOUT: Final = timedelta(hours=6)
_HEARTBEAT: Final = timedelta(seconds=20)
A = TypeVar("A")
R = TypeVar("R")


async def _step(method: Callable[[Any, A], Awaitable[R]], arg: A) -> R:
    """One activity: retried while the store is out, heartbeating, up to ``_TIMEOUT``."""
    result: R = await workflow.execute_activity_method(
        method,
        arg,
        start_to_close_timeout=_TIMEOUT,
        heartbeat_timeout=_HEARTBEAT,
        retry_policy=BATCH_RETRY,
    )
    return result


@workflow.defn(name=BACKUP_WORKFLOW)
class BackupWorkflow:
    """One backup of every tenant or of one, then the retention."""

    def __init__(self) -> None:
        self._result: BackupResult | None = None

    @workflow.run
    async def run(self, raw: BackupArgument = NO_INPUT) -> BackupResult:
        job = decode_input(
            raw, BackupInput, what="BackupWorkflow input", error_type=JOB_INPUT_ERROR
        )
        scope = "every tenant" if job.tenant is None else f"tenant {job.tenant}"
        workflow.set_current_details(
            f"**backing up {scope}** ({'full' if job.full else 'incremental'})"
        )
        result: BackupResult = await _step(BackupActivities.create, job)
        self._result = result
        workflow.set_current_details(
            f"**backup {result.backup_id}** ({result.kind}): {result.events:,} events,"
            f" {result.bytes:,} bytes, checkpoint {result.checkpoint}, {result.seconds} s"
        )
        return result

    @workflow.query
    def status(self) -> BackupResult | None:
        """The backup made (None while it is being made)."""
        return self._result


@workflow.defn(name=RESTORE_WORKFLOW)
class RestoreWorkflow:
    """Verify a backup chain, restore it, republish if asked."""

    def __init__(self) -> None:
        self._status: RestoreResult | None = None

    @workflow.run
    async def run(self, raw: RestoreArgument = NO_INPUT) -> RestoreResult:
        job = decode_input(
            raw, RestoreInput, what="RestoreWorkflow input", error_type=JOB_INPUT_ERROR
        )
        self._status = RestoreResult(phase="verifying", backup_id=job.backup_id, tenant=job.tenant)
        self._show()
        try:
            chain: list[str] = await _step(BackupActivities.verify, job)
            self._status = self._status.model_copy(update={"phase": "restoring", "chain": chain})
            self._show()
            restored: RestoreResult = await _step(BackupActivities.restore, job)
            self._status = restored
            if job.republish and restored.tenant is not None:
                self._status = restored.model_copy(update={"phase": "republishing"})
                self._show()
                count: int = await _step(BackupActivities.republish, restored.tenant)
                self._status = self._status.model_copy(update={"republished": count})
            await self._verify(restored)
            self._status = self._status.model_copy(update={"phase": "done"})
            self._show()
            return self._status
        except Exception as e:
            cause = getattr(e, "cause", None) or e
            self._status = self._status.model_copy(update={"phase": "failed", "error": str(cause)})
            self._show()
            raise

    async def _verify(self, restored: RestoreResult) -> None:
        """The restored events checked in place: streams contiguous, every event readable,
        snapshots equal a fold (the read models are made again from them, or rebuilt)."""
        assert self._status is not None
        self._status = self._status.model_copy(update={"phase": "verifying restored"})
        self._show()
        checks: list[CheckResult] = await _step(
            VerifyActivities.event_store, VerifyInput(tenant=restored.tenant, sample=20)
        )
        self._status = self._status.model_copy(update={"checks": checks})
        bad = [c for c in checks if c.problem_count]
        if bad:
            raise ApplicationError(
                "the restored store does not verify: "
                + "; ".join(f"{c.name}: {c.problems[:3]}" for c in bad),
                non_retryable=True,
            )

    def _show(self) -> None:
        s = self._status
        assert s is not None
        scope = "everything" if s.tenant is None else f"tenant {s.tenant}"
        text = f"**restore {s.backup_id} ({scope}): {s.phase}**"
        if s.events:
            text += f"  \n{s.events:,} events, {s.commands:,} commands, up to {s.last_position}"
        if s.error:
            text += f"  \n{s.error}"
        workflow.set_current_details(text)

    @workflow.query
    def status(self) -> RestoreResult | None:
        """The phase, the chain, what was restored, the outcome."""
        return self._status


@workflow.defn(name=VERIFY_WORKFLOW)
class VerifyWorkflow:
    """Check the live store and its read models (``acci verify``, the ``acci-verify``
    Schedule); the result says what was looked at and the first problems found."""

    def __init__(self) -> None:
        self._result: VerifyResult | None = None

    @workflow.run
    async def run(self, raw: VerifyArgument = NO_INPUT) -> VerifyResult:
        job = decode_input(
            raw, VerifyInput, what="VerifyWorkflow input", error_type=JOB_INPUT_ERROR
        )
        scope = "every tenant" if job.tenant is None else f"tenant {job.tenant}"
        workflow.set_current_details(f"**verifying {scope}**: the event store")
        checks: list[CheckResult] = []
        for step, doing in (
            (VerifyActivities.event_store, "the read models"),
            (VerifyActivities.read_models, None),
        ):
            checks += await _step(step, job)
            if doing:
                workflow.set_current_details(f"**verifying {scope}**: {doing}")
        self._result = VerifyResult(tenant=job.tenant, checks=checks)
        bad = [c for c in checks if c.problem_count]
        workflow.set_current_details(
            f"**verified {scope}: {'passed' if not bad else 'PROBLEMS'}**"
            + "".join(f"  \n{c.name}: {c.problem_count} problem(s)" for c in bad)
        )
        return self._result

    @workflow.query
    def status(self) -> VerifyResult | None:
        """The checks, once done."""
        return self._result
