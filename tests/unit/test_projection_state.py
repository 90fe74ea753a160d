"""A projection's state in the worker's metrics, from what its batch activities did here."""

from __future__ import annotations

from acci.activities.models import ProjectionBatchResult, ProjectionFailure
from acci.workers.metrics_projections import ProjectionActivity


def report(projection: str, *, failing: bool) -> ProjectionBatchResult:
    failure = ProjectionFailure(event_id=None, error="boom") if failing else None
    return ProjectionBatchResult(
        projection=projection, applied=0, paused=False, caught_up=True, failure=failure
    )


def test_a_projection_never_run_here_has_no_state_from_this_worker_unless_paused() -> None:
    activity = ProjectionActivity()
    assert activity.state("users", paused=False) is None
    assert activity.state("users", paused=True) == "paused"


def test_a_failing_batch_makes_it_failing_until_a_batch_succeeds_here() -> None:
    activity = ProjectionActivity()
    activity.started("users")
    activity.reported(report("users", failing=True))
    activity.ended("users", raised=False)
    assert activity.state("users", paused=False) == "failing"
    activity.reported(report("users", failing=False))
    assert activity.state("users", paused=False) == "running"


def test_failing_clears_by_itself_once_no_batch_failed_here_for_a_while() -> None:
    # Another worker may run it well now: this one stops claiming it fails.
    activity = ProjectionActivity(failing_for=0.0)
    activity.started("users")
    activity.ended("users", raised=True)
    assert activity.state("users", paused=False) == "running"


def test_a_projection_that_ran_here_and_stopped_is_stopped() -> None:
    activity = ProjectionActivity(stopped_after=0.0)
    activity.started("users")
    assert activity.state("users", paused=False) == "running"  # a batch is running
    activity.ended("users", raised=False)
    assert activity.state("users", paused=False) == "stopped"
