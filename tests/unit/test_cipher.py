"""The payload cipher and the local master-key wrapper, without services."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from acci.activities.errors import application_error
from acci.eventstore.cipher import (
    envelope_of_text,
    event_context,
    is_sealed,
    is_sealed_text,
    key_version,
    seal,
    snapshot_context,
    unseal,
)
from acci.eventstore.errors import (
    CiphertextError,
    DataKeyUnavailableError,
    EncryptionError,
    TenantKeyShreddedError,
)
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes, new_data_key, new_master_key

AES = AESGCM(new_data_key())
EVENT = uuid.uuid4()


def sealed(text: str = '{"name":"Ada"}', context: bytes = event_context("acme", EVENT)) -> dict:
    return json.loads(seal(AES, 3, context, text.encode()))


def test_a_sealed_payload_opens_to_its_plaintext_and_names_its_key_version() -> None:
    envelope = sealed()
    # The plaintext's JSON (quotes and all) cannot appear in base64 by chance; "Ada" alone can.
    assert is_sealed(envelope) and '"name":"Ada"' not in json.dumps(envelope)
    assert key_version(envelope) == 3
    assert unseal(AES, envelope, event_context("acme", EVENT)) == b'{"name":"Ada"}'


def test_every_seal_uses_a_fresh_nonce() -> None:
    assert sealed()["nonce"] != sealed()["nonce"]
    assert sealed()["ctext"] != sealed()["ctext"]


def test_a_ciphertext_moved_to_another_event_or_tenant_fails() -> None:
    envelope = sealed()
    for context in (event_context("acme", uuid.uuid4()), event_context("other", EVENT)):
        with pytest.raises(CiphertextError, match="failed authentication"):
            unseal(AES, envelope, context)
    with pytest.raises(CiphertextError):
        unseal(AES, envelope, snapshot_context("acme", EVENT))


def test_a_changed_ciphertext_fails() -> None:
    envelope = sealed()
    raw = bytearray(base64.b64decode(envelope["ctext"]))
    raw[0] ^= 1
    envelope["ctext"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(CiphertextError):
        unseal(AES, envelope, event_context("acme", EVENT))


def test_a_malformed_envelope_is_a_typed_error() -> None:
    with pytest.raises(CiphertextError):
        key_version({"$enc": 1, "kver": "x"})
    with pytest.raises(CiphertextError):
        unseal(AES, {"$enc": 1, "kver": 1}, b"")
    with pytest.raises(CiphertextError):
        envelope_of_text("not json")


def test_jsonb_text_of_an_envelope_starts_with_the_marker() -> None:
    # PostgreSQL's jsonb text orders keys by length, then bytes: "$enc" and "kver" (4), then
    # "ctext" and "nonce" (5); a load tells sealed text from clear text by its start.
    envelope = sealed()
    jsonb_order = sorted(envelope, key=lambda k: (len(k), k.encode()))
    assert jsonb_order[0] == "$enc"
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(envelope[k])}" for k in jsonb_order)
    assert is_sealed_text(text + "}")
    # ... and reads back with the fast match, as with a JSON parse.
    assert envelope_of_text(text + "}") == envelope == envelope_of_text(json.dumps(envelope))
    assert not is_sealed_text('{"name": "Ada"}')


def test_a_master_key_is_32_bytes_of_url_safe_base64() -> None:
    key = new_master_key()
    assert len(master_key_bytes(key)) == 32
    assert master_key_bytes(key.rstrip("=")) == master_key_bytes(key)
    with pytest.raises(EncryptionError, match="32 bytes"):
        master_key_bytes(base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(EncryptionError, match="base64"):
        master_key_bytes("!!!")


def test_a_wrapped_data_key_unwraps_only_for_its_tenant_version_and_master_key() -> None:
    old = LocalKeyWrapper("k1", master_key_bytes(new_master_key()))
    data_key = new_data_key()
    wrapped = old.wrap("acme", 1, data_key)
    assert data_key not in wrapped
    assert old.unwrap("acme", 1, "k1", wrapped) == data_key
    with pytest.raises(CiphertextError):
        old.unwrap("other", 1, "k1", wrapped)
    with pytest.raises(CiphertextError):
        old.unwrap("acme", 2, "k1", wrapped)
    with pytest.raises(DataKeyUnavailableError, match="k0"):
        old.unwrap("acme", 1, "k0", wrapped)


def test_a_new_master_key_unwraps_keys_of_a_previous_one_it_was_given() -> None:
    k1 = master_key_bytes(new_master_key())
    wrapped = LocalKeyWrapper("k1", k1).wrap("acme", 1, b"d" * 32)
    rotated = LocalKeyWrapper("k2", master_key_bytes(new_master_key()), previous={"k1": k1})
    assert rotated.current_key_id == "k2" and rotated.key_ids == {"k1", "k2"}
    assert rotated.unwrap("acme", 1, "k1", wrapped) == b"d" * 32


def test_a_key_this_process_cannot_unwrap_is_retried_a_shredded_one_is_not() -> None:
    # A master key missing from the settings is the operator's to fix (then a retry succeeds);
    # a destroyed key is final.
    missing = application_error(DataKeyUnavailableError("wrapped by master key k0"))
    assert (missing.type, missing.non_retryable) == ("PersistenceError", False)
    shredded = application_error(TenantKeyShreddedError("acme"))
    assert (shredded.type, shredded.non_retryable) == ("CommandValidationError", True)
