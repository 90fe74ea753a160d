"""The data converter of every ACCI client and worker: JSON through pydantic, failures an
operator reads at a glance (a rejected command's failure carries no Python stack trace), and,
with ACCI_PAYLOAD_CODEC on, payloads and failure messages encrypted (workers/codec.py)."""

from __future__ import annotations

import dataclasses
from typing import Final

from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter

from acci.activities.errors import REJECTION_TYPES
from acci.workers.codec import codec_from_settings
from acci.workers.settings import Settings

# Converts each link of a failure's cause chain (the SDK recurses through the converter it is
# given): the links are finished, stripped and encoded, once, by the outermost call below.
_PLAIN: Final = DefaultFailureConverter()


class RejectionFailureConverter(DefaultFailureConverter):
    """The SDK's failure converter, minus the stack traces of business rejections.

    Temporal records a failure's stack trace with it, and the Web UI shows it above the
    failure's cause chain: for a rejected command that is a page of SDK frames before the line
    that matters. Infrastructure failures keep their traces (they are worth reading there).
    """

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        _PLAIN.to_failure(exception, payload_converter, failure)
        if is_rejection(failure):
            for link in _chain(failure):
                link.stack_trace = ""
        if self._encode_common_attributes:
            for link in _chain(failure):
                _move_to_encoded_attributes(link, payload_converter)


class EncodedRejectionFailureConverter(RejectionFailureConverter):
    """``RejectionFailureConverter`` that moves every message and stack trace of the chain into
    the failure's encoded attributes, which the payload codec encrypts.

    A rejection's message names the value that was wrong (an e-mail address, a name): with the
    codec on, it is as private as the command's input. The failure's type (e.g.
    ``CommandValidationError``) stays clear, so the Web UI still shows why without the codec.
    """

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def _chain(failure: Failure) -> list[Failure]:
    links = [failure]
    while links[-1].HasField("cause"):
        links.append(links[-1].cause)
    return links


def _move_to_encoded_attributes(failure: Failure, payload_converter: PayloadConverter) -> None:
    # As the SDK's own DefaultFailureConverter(encode_common_attributes=True) does, per link.
    if failure.HasField("encoded_attributes"):
        return
    attributes = {"message": failure.message, "stack_trace": failure.stack_trace}
    failure.encoded_attributes.CopyFrom(payload_converter.to_payloads([attributes])[0])
    failure.message = "Encoded failure"
    failure.stack_trace = ""


def is_rejection(failure: Failure) -> bool:
    """Whether ``failure`` is a business rejection (a non-retryable ACCI rejection type)."""
    if not failure.HasField("application_failure_info"):
        return False
    info = failure.application_failure_info
    return info.non_retryable and info.type in REJECTION_TYPES


DATA_CONVERTER: Final[DataConverter] = dataclasses.replace(
    pydantic_data_converter, failure_converter_class=RejectionFailureConverter
)
"""The converter without the payload codec: ``data_converter(settings)`` when it is off."""


def data_converter(settings: Settings) -> DataConverter:
    """The converter to give every ``Client`` (and so every worker) that talks to ACCI's
    workflows: ``DATA_CONVERTER``, with the payload codec when ACCI_PAYLOAD_CODEC is on (and
    decrypting only, when it is off but a master key is set).

    Raises ``workers.codec.CodecError`` when the codec is on without a usable master key.
    """
    codec = codec_from_settings(settings)
    if codec is None:
        return DATA_CONVERTER
    if not codec.encrypts:
        # Off, but histories written while it was on still decode (codec_from_settings).
        return dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    return dataclasses.replace(
        DATA_CONVERTER,
        payload_codec=codec,
        failure_converter_class=EncodedRejectionFailureConverter,
    )
