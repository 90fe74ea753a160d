"""Master keys and the wrapping of tenants' data keys.

A tenant's data key (32 random bytes, AES-256-GCM) is stored only wrapped: encrypted by a
master key that stays outside the database. ``KeyWrapper`` is that boundary; ``LocalKeyWrapper``
keeps the master keys in the process (from settings). A KMS (AWS KMS ``Encrypt``/``Decrypt``,
Vault transit ``encrypt``/``decrypt``) plugs in by implementing the same three members
(README, "Encryption at rest and crypto-shredding").

``master_key_bytes`` is the one decoding of a configured master key: anything else deriving keys
from it (a Temporal payload codec) imports it from here.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from acci.eventstore.errors import CiphertextError, DataKeyUnavailableError, EncryptionError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12


def master_key_bytes(secret: str) -> bytes:
    """A master key as configured (URL-safe base64 of 32 bytes, padding optional) as bytes."""
    text = secret.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionError("the master key is not URL-safe base64") from None
    if len(key) != KEY_BYTES:
        raise EncryptionError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def new_master_key() -> str:
    """A fresh master key, as the setting takes it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def new_data_key() -> bytes:
    """A fresh random data key."""
    return os.urandom(KEY_BYTES)


class KeyWrapper(Protocol):
    """Wraps and unwraps tenants' data keys with a master key (local, or a KMS)."""

    @property
    def current_key_id(self) -> str:
        """The id of the master key new and re-wrapped data keys are wrapped with."""
        ...

    def wrap(self, tenant_id: str, key_version: int, data_key: bytes) -> bytes:
        """``data_key`` wrapped by the current master key, bound to its tenant and version."""
        ...

    def unwrap(self, tenant_id: str, key_version: int, master_key_id: str, wrapped: bytes) -> bytes:
        """The data key ``wrapped`` holds; ``DataKeyUnavailableError`` if this wrapper has no
        master key ``master_key_id``, ``CiphertextError`` if ``wrapped`` is not authentic."""
        ...


def _wrap_context(tenant_id: str, key_version: int, master_key_id: str) -> bytes:
    # Associated data: a wrapped key copied to another tenant's row (or version) fails.
    return f"acci-data-key\x1f{tenant_id}\x1f{key_version}\x1f{master_key_id}".encode()


class LocalKeyWrapper:
    """Master keys held by the process: the current one, and previous ones that still unwrap
    data keys until ``acci keys rotate`` has re-wrapped them all."""

    def __init__(
        self, current_id: str, current_key: bytes, *, previous: Mapping[str, bytes] | None = None
    ) -> None:
        keys = dict(previous or {})
        keys[current_id] = current_key
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise EncryptionError(f"master key {key_id!r} must be {KEY_BYTES} bytes")
        self._current_id = current_id
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @property
    def current_key_id(self) -> str:
        return self._current_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Every master key id this wrapper can unwrap with."""
        return frozenset(self._keys)

    def wrap(self, tenant_id: str, key_version: int, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = _wrap_context(tenant_id, key_version, self._current_id)
        return nonce + self._keys[self._current_id].encrypt(nonce, data_key, aad)

    def unwrap(self, tenant_id: str, key_version: int, master_key_id: str, wrapped: bytes) -> bytes:
        aes = self._keys.get(master_key_id)
        if aes is None:
            raise DataKeyUnavailableError(
                f"tenant {tenant_id}'s data key (version {key_version}) is wrapped by master"
                f" key {master_key_id!r}, which is not configured (ACCI_MASTER_KEY_ID, or"
                " ACCI_PREVIOUS_MASTER_KEYS until `acci keys rotate` has run)"
            )
        aad = _wrap_context(tenant_id, key_version, master_key_id)
        try:
            return aes.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise CiphertextError(
                f"tenant {tenant_id}'s wrapped data key (version {key_version}) failed"
                f" authentication under master key {master_key_id!r}"
            ) from None
