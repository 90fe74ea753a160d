"""The Temporal payload codec: command inputs, results and failure messages encrypted in
Temporal's history with AES-256-GCM, under a key derived from ACCI's master key.

The codec key is HKDF-SHA256 of the master key with an info string of its own, so it is never
the key that wraps the tenants' data keys (eventstore encryption) and a leak of one says
nothing of the other. Each encrypted payload names the master key id it was made under
(metadata ``encryption-key-id``): with a rotated master key configured, together with the old
ones (``ACCI_PREVIOUS_MASTER_KEYS``), histories written before the rotation still decode.
Payloads that are not encrypted (histories from before the codec was turned on) pass through.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from acci.eventstore.errors import EncryptionError
from acci.eventstore.keys import master_key_bytes
from acci.workers.settings import Settings, previous_master_keys

ENCODING: Final = b"binary/encrypted"
KEY_ID: Final = "encryption-key-id"
# Versioned: a change of derivation (or of cipher) is a new info string, not a silent change.
HKDF_INFO: Final = b"acci temporal payloads v1"
_NONCE_BYTES: Final = 12


class CodecError(ValueError):
    """A payload or a key the codec cannot use: the message says which, never a key."""


def derive_codec_key(master_key: bytes) -> bytes:
    """The AES-256 key of the payload codec, derived from (and never equal to) a master key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(master_key)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole payload (its metadata included), with a fresh random nonce.

    The key id is also the associated data: a payload moved under another key id fails to
    decode instead of being read with the wrong key.
    """

    def __init__(self, *, key_id: str, keys: Mapping[str, bytes], encrypt: bool = True) -> None:
        if key_id not in keys:
            raise CodecError(f"no key for the current key id {key_id!r}")
        self._key_id = key_id
        self.encrypts = encrypt
        self._ciphers = {kid: AESGCM(derive_codec_key(key)) for kid, key in keys.items()}

    @property
    def key_id(self) -> str:
        """The key id new payloads are encrypted under."""
        return self._key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self.encrypts:
            return list(payloads)
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """``payload`` encrypted under the current key."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._key_id].encrypt(
            nonce, payload.SerializeToString(), self._key_id.encode()
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        """``payload`` decrypted, or as it is if it was not encrypted by this codec."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"a payload was encrypted under master key id {key_id!r}, which is not"
                " configured (ACCI_MASTER_KEY_ID / ACCI_PREVIOUS_MASTER_KEYS)"
            )
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise CodecError(
                f"a payload under master key id {key_id!r} does not decrypt: altered, or"
                " encrypted with another key of that id"
            ) from None
        return Payload.FromString(plain)


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    """The codec the settings ask for (ACCI_PAYLOAD_CODEC), or None.

    On, it encrypts and decrypts; it raises ``CodecError`` without a usable master key, so that
    a worker or a client fails at start rather than writing clear payloads or unreadable ones.
    Off, with a master key, it only decrypts: runs started while it was on (a projection's
    long-running workflow, a command being retried) go on after it is turned off, and their
    histories still read. Off without a (usable) key: None.
    """
    if settings.payload_codec:
        return keyring_codec(settings)
    try:
        return keyring_codec(settings, encrypt=False)
    except CodecError:
        return None  # nothing to decrypt with; a malformed key is reported where it is used


def keyring_codec(settings: Settings, *, encrypt: bool = True) -> EncryptionCodec:
    """The codec of the configured master keys (the current one and the previous ones),
    whether or not ACCI_PAYLOAD_CODEC is on: the codec endpoint still decodes histories
    written while it was. Raises ``CodecError`` without a usable master key."""
    if settings.master_key is None or not settings.master_key.get_secret_value():
        raise CodecError(
            "the payload codec needs ACCI_MASTER_KEY (32 bytes, URL-safe base64); set it, or"
            " turn ACCI_PAYLOAD_CODEC off"
        )
    encoded = previous_master_keys(settings)  # malformed ones were refused with the settings
    encoded[settings.master_key_id] = settings.master_key.get_secret_value()
    keys = {}
    for key_id, key in encoded.items():
        try:
            keys[key_id] = master_key_bytes(key)  # read as the event store's encryption reads it
        except EncryptionError as e:
            raise CodecError(f"master key id {key_id!r}: {e}") from None
    return EncryptionCodec(key_id=settings.master_key_id, keys=keys, encrypt=encrypt)
