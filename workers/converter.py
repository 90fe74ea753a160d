"""The data converter of every ACCI client and worker: JSON through pydantic, and failures an
operator reads at a glance (a rejected command's failure carries no Python stack trace)."""

from __future__ import annotations

import dataclasses
from typing import Final

from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter

from acci.activities.errors import REJECTION_TYPES


class RejectionFailureConverter(DefaultFailureConverter):
    """The SDK's failure converter, minus the stack traces of business rejections.

    Temporal records a failure's stack trace with it, and the Web UI shows it above the
    failure's cause chain: for a rejected command that is a page of SDK frames before the line
    that matters. Infrastructure failures keep their traces (they are worth reading there).
    """

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        super().to_failure(exception, payload_converter, failure)
        if is_rejection(failure):
            link: Failure | None = failure
            while link is not None:
                link.stack_trace = ""
                link = link.cause if link.HasField("cause") else None


def is_rejection(failure: Failure) -> bool:
    """Whether ``failure`` is a business rejection (a non-retryable ACCI rejection type)."""
    if not failure.HasField("application_failure_info"):
        return False
    info = failure.application_failure_info
    return info.non_retryable and info.type in REJECTION_TYPES


DATA_CONVERTER: Final[DataConverter] = dataclasses.replace(
    pydantic_data_converter, failure_converter_class=RejectionFailureConverter
)
"""The converter to give every ``Client`` (and so every worker) that talks to ACCI's workflows."""
