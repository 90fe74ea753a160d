"""The Temporal payload codec (workers/codec.py) and the converter built from the settings
(workers/converter.py): no services."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from acci.eventstore.keys import master_key_bytes
from acci.workers.codec import (
    ENCODING,
    KEY_ID,
    CodecError,
    EncryptionCodec,
    derive_codec_key,
)
from acci.workers.converter import DATA_CONVERTER, data_converter
from acci.workers.settings import Settings


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def codec_settings(key: str, key_id: str = "k2", previous: str | None = None) -> Settings:
    return Settings(
        payload_codec=True,
        master_key=SecretStr(key),
        master_key_id=key_id,
        previous_master_keys=SecretStr(previous) if previous else None,
    )


async def test_an_encoded_payload_is_ciphertext_naming_its_key_and_decodes_to_the_original() -> (
    None
):
    converter = data_converter(codec_settings(new_key()))
    (payload,) = await converter.encode([{"email": "ada@example.com"}])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID] == b"k2"
    assert b"ada@example.com" not in payload.SerializeToString()
    assert b"json/plain" not in payload.SerializeToString()
    assert await converter.decode([payload], [dict]) == [{"email": "ada@example.com"}]


async def test_the_same_value_encodes_differently_each_time() -> None:
    converter = data_converter(codec_settings(new_key()))
    first, second = await converter.encode(["same"]), await converter.encode(["same"])
    assert first[0].data != second[0].data


def test_the_codec_key_is_derived_and_never_the_master_key_itself() -> None:
    master = master_key_bytes(new_key())
    derived = derive_codec_key(master)
    assert len(derived) == 32 and derived != master
    assert derive_codec_key(master) == derived


async def test_a_history_written_before_a_rotation_decodes_with_the_old_key_configured() -> None:
    old_key = new_key()
    (old_payload,) = await data_converter(codec_settings(old_key, "k1")).encode(["before"])
    rotated = data_converter(codec_settings(new_key(), "k2", previous=f"k1={old_key}"))
    assert await rotated.decode([old_payload], [str]) == ["before"]
    (new_payload,) = await rotated.encode(["after"])
    assert new_payload.metadata[KEY_ID] == b"k2"
    # Without the old key, the old payload is refused by its key id, not misread.
    forgetful = data_converter(codec_settings(new_key(), "k2"))
    with pytest.raises(CodecError, match="'k1', which is not configured"):
        await forgetful.decode([old_payload], [str])


async def test_an_altered_payload_or_one_moved_to_another_key_id_is_refused() -> None:
    key = new_key()
    codec = EncryptionCodec(key_id="a", keys={"a": master_key_bytes(key), "b": os.urandom(32)})
    (payload,) = await codec.encode([Payload(data=b"x")])
    altered = Payload()
    altered.CopyFrom(payload)
    altered.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
    moved = Payload()
    moved.CopyFrom(payload)
    moved.metadata[KEY_ID] = b"b"
    for bad in (altered, moved):
        with pytest.raises(CodecError, match="does not decrypt"):
            await codec.decode([bad])


async def test_payloads_written_before_the_codec_was_on_pass_through() -> None:
    (clear,) = await DATA_CONVERTER.encode([{"n": 1}])
    assert await data_converter(codec_settings(new_key())).decode([clear], [dict]) == [{"n": 1}]


def test_the_codec_is_off_by_default_and_refuses_to_start_without_a_usable_key() -> None:
    assert data_converter(Settings()) is DATA_CONVERTER
    with pytest.raises(CodecError, match="needs ACCI_MASTER_KEY"):
        data_converter(Settings(payload_codec=True))
    secret = "not-a-key-c0ffee"
    with pytest.raises(CodecError) as bad:
        data_converter(codec_settings(secret))
    assert secret not in str(bad.value)
    with pytest.raises(CodecError, match="must be 32 bytes, got 16"):
        data_converter(codec_settings(base64.urlsafe_b64encode(os.urandom(16)).decode()))


def test_a_malformed_previous_key_is_refused_and_not_quoted() -> None:
    # The pairs themselves are read as tests/unit/test_encryption_settings.py checks; the
    # settings refuse a malformed one before any codec is built.
    with pytest.raises(ValidationError, match="id=key pairs") as bad:
        codec_settings(new_key(), previous="a=x,s3cretkeywithoutid")
    assert "s3cretkeywithoutid" not in str(bad.value)


async def test_a_rejections_message_is_encrypted_but_its_type_stays_readable() -> None:
    converter = data_converter(codec_settings(new_key()))
    error = ApplicationError(
        "email 'ada@example.com' is not valid", type="CommandValidationError", non_retryable=True
    )
    failure = Failure()
    await converter.encode_failure(error, failure)
    assert failure.message == "Encoded failure" and not failure.stack_trace
    assert failure.application_failure_info.type == "CommandValidationError"
    assert b"ada@example.com" not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == "email 'ada@example.com' is not valid"
    assert decoded.type == "CommandValidationError"


async def test_without_the_codec_a_rejection_keeps_its_message_and_loses_its_stack() -> None:
    try:
        raise ApplicationError("bad", type="CommandValidationError", non_retryable=True)
    except ApplicationError as e:
        error = e
    failure = Failure()
    await DATA_CONVERTER.encode_failure(error, failure)
    assert failure.message == "bad" and failure.stack_trace == ""
    assert not failure.HasField("encoded_attributes")


async def test_turned_off_with_the_key_still_set_the_codec_reads_but_no_longer_writes() -> None:
    key = new_key()
    (sealed,) = await data_converter(codec_settings(key)).encode(["while on"])
    off = data_converter(Settings(master_key=SecretStr(key), master_key_id="k2"))
    assert await off.decode([sealed], [str]) == ["while on"]
    (clear,) = await off.encode(["after"])
    assert clear.metadata["encoding"] == b"json/plain"
    # Without a usable key there is nothing to read with, and nothing refuses to start.
    assert data_converter(Settings(master_key=SecretStr("not a key"))) is DATA_CONVERTER
