"""Sealing one payload (event data, snapshot state) with a tenant's data key: AES-256-GCM.

A sealed payload stays a JSON object, so the ``jsonb`` columns keep their type::

    {"$enc": 1, "kver": <data key version>, "nonce": <base64>, "ctext": <base64>}

The nonce is 96 random bits per payload. The associated data binds the ciphertext to its row (the
tenant and the event id, or the snapshot id): a ciphertext copied or moved to another row fails
authentication. The key names are chosen so that PostgreSQL's jsonb text (keys ordered by length,
then bytes) always starts with ``{"$enc"``: a load reading ``data::text`` tells a sealed payload
from a clear one with one ``startswith``, and a plain payload may not have a top-level ``$enc``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from acci.eventstore.errors import CiphertextError, EventStoreValidationError
from acci.eventstore.keys import NONCE_BYTES

if TYPE_CHECKING:
    from acci.eventstore.keyring import DataKey

MARKER: Final = "$enc"
FORMAT: Final = 1
_TEXT_PREFIX: Final = '{"$enc"'


def event_context(tenant_id: str, event_id: uuid.UUID | str) -> bytes:
    """The associated data of an event's sealed data."""
    return f"acci-event\x1f{tenant_id}\x1f{event_id}".encode()


def snapshot_context(tenant_id: str, snapshot_id: uuid.UUID | str) -> bytes:
    """The associated data of a snapshot's sealed state."""
    return f"acci-snapshot\x1f{tenant_id}\x1f{snapshot_id}".encode()


def is_sealed(data: object) -> bool:
    """Whether a decoded payload is a sealed one."""
    return type(data) is dict and MARKER in data


def is_sealed_text(text: str) -> bool:
    """Whether a payload read as jsonb text is a sealed one."""
    return text.startswith(_TEXT_PREFIX)


def seal(aes: AESGCM, key_version: int, context: bytes, plaintext: bytes) -> str:
    """The sealed payload of ``plaintext`` (the payload's JSON), as JSON text."""
    nonce = os.urandom(NONCE_BYTES)
    ctext = aes.encrypt(nonce, plaintext, context)
    return (
        f'{{"$enc":{FORMAT},"kver":{int(key_version)},'
        f'"nonce":"{base64.b64encode(nonce).decode()}",'
        f'"ctext":"{base64.b64encode(ctext).decode()}"}}'
    )


def key_version(envelope: Mapping[str, Any]) -> int:
    """The data key version a sealed payload names (``CiphertextError`` if malformed)."""
    version = envelope.get("kver")
    if envelope.get(MARKER) != FORMAT or type(version) is not int or version < 1:
        raise CiphertextError("not a readable sealed payload (format or key version)")
    return version


def unseal(aes: AESGCM, envelope: Mapping[str, Any], context: bytes) -> bytes:
    """The plaintext JSON of a sealed payload; ``CiphertextError`` if it is not authentic (changed,
    or moved from another row). The caller adds where it was found."""
    try:
        # Not validated as base64 on the way: authentication refuses anything changed.
        nonce = binascii.a2b_base64(envelope["nonce"])
        ctext = binascii.a2b_base64(envelope["ctext"])
        return aes.decrypt(nonce, ctext, context)
    except (KeyError, TypeError, ValueError, binascii.Error, InvalidTag):
        raise CiphertextError(
            "encrypted payload failed authentication (changed, or moved from another row)"
        ) from None


# PostgreSQL prints a jsonb envelope always the same way (keys by length, then bytes; ", " and
# ": " between them), and a nonce is always 16 base64 characters: the parts are cut out where
# they must be rather than parsed (a long stream's load), and anything else is parsed as JSON.
_HEAD: Final = '{"$enc": 1, "kver": '
_CTEXT: Final = ', "ctext": "'
_NONCE: Final = '", "nonce": "'
_NONCE_AT: Final = -(len(_NONCE) + 16 + 2)


def envelope_of_text(text: str) -> dict[str, Any]:
    """A sealed payload read as jsonb text, decoded."""
    if text.startswith(_HEAD) and text.endswith('"}'):
        ctext_at = text.find(_CTEXT, len(_HEAD))
        kver = text[len(_HEAD) : ctext_at]
        if ctext_at > 0 and kver.isdigit() and text[_NONCE_AT : _NONCE_AT + len(_NONCE)] == _NONCE:
            return {
                MARKER: FORMAT,
                "kver": int(kver),
                "ctext": text[ctext_at + len(_CTEXT) : _NONCE_AT],
                "nonce": text[_NONCE_AT + len(_NONCE) : -2],
            }
    try:
        envelope = json.loads(text)
    except ValueError:
        raise CiphertextError("malformed sealed payload") from None
    if not is_sealed(envelope):
        raise CiphertextError("malformed sealed payload")
    return dict(envelope)


def event_data_as_stored(
    data: str,
    plain: Mapping[str, Any],
    index: int,
    tenant_id: str,
    event_id: uuid.UUID,
    data_key: DataKey | None,
) -> str:
    """An event's data JSON (``plain`` decoded) as stored: sealed with ``data_key``, bound to
    the tenant and the event id, or as it is."""
    if MARKER in plain:  # only a sealed payload has one
        raise EventStoreValidationError(
            f"event {index} data has a top-level {MARKER!r} field, which is reserved"
        )
    if data_key is None:
        return data
    context = event_context(tenant_id, event_id)
    return seal(data_key.aes, data_key.version, context, data.encode())
