"""What the batch jobs (the snapshot job, the event migration) share: how a batch is retried and
how many batches a run takes before it continues as new."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from acci.activities.errors import NON_RETRYABLE_TYPES

# A run continues as new after this many batches: its history stays small however big the job.
BATCHES_PER_RUN: Final = 200

# An outage is waited out (a batch is safe to run again); a typed refusal is not retried.
BATCH_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)
