"""Payload encryption as the event store uses it: seal on write, open on every read path.

``PayloadEncryption`` is given to the store and the snapshot store. With ``encrypt`` off (the
default) nothing is sealed and no key is looked up on writes; reads still open whatever was
sealed while it was on (a mixed store reads fine), and a clear payload costs one dict or string
test. Only event data and snapshot state are sealed: ids, types, versions, positions, tenant,
timestamps and metadata stay clear for routing, ordering and audit.

A shredded tenant's events make ``read_all`` return them as ``UnreadableEvent`` (its pages go on
for the other tenants); every other read (a stream, a load, a snapshot) raises
``TenantKeyShreddedError``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, MutableSequence
from typing import Any, Final, Literal

from acci.eventstore.cipher import (
    envelope_of_text,
    event_context,
    is_sealed,
    key_version,
    seal,
    snapshot_context,
    unseal,
)
from acci.eventstore.errors import (
    CiphertextError,
    DataKeyUnavailableError,
    TenantKeyShreddedError,
)
from acci.eventstore.keyring import DataKey, KeyRing
from acci.eventstore.records import DamagedEvent, RecordedEvent, UnreadableEvent

ShreddedEvents = Literal["skip", "park"]
"""What a projection does with a shredded tenant's event: move past it, or park it."""

_DATA: Final = RecordedEvent._fields.index("data")
_NO_MASTER_KEY: Final = "the payload is encrypted and no master key is configured (ACCI_MASTER_KEY)"


class PayloadEncryption:
    """Seals payloads with their tenant's data key and opens them again."""

    def __init__(
        self,
        keyring: KeyRing | None = None,
        *,
        encrypt: bool = False,
        shredded_events: ShreddedEvents = "skip",
    ) -> None:
        if encrypt and keyring is None:
            raise DataKeyUnavailableError("encryption is on but no master key is configured")
        self.keyring = keyring
        self.encrypts = encrypt
        self.shredded_events: ShreddedEvents = shredded_events

    def _ring(self, where: str) -> KeyRing:
        if self.keyring is None:
            raise DataKeyUnavailableError(f"{where}: {_NO_MASTER_KEY}")
        return self.keyring

    # -- writing ---------------------------------------------------------------------------

    async def keys_for_writing(self, tenant_ids: Iterable[str]) -> dict[str, DataKey] | None:
        """Each tenant's current data key (created on its first encrypted write), or None when
        encryption is off."""
        if not self.encrypts:
            return None
        ring = self._ring("append")
        return {t: await ring.for_writing(t) for t in set(tenant_ids)}

    async def seal_snapshot(self, tenant_id: str, snapshot_id: uuid.UUID, state_json: str) -> str:
        """The snapshot state as stored: sealed when encryption is on, else as given."""
        if not self.encrypts:
            return state_json
        key = await self._ring("snapshot").for_writing(tenant_id)
        return seal(
            key.aes, key.version, snapshot_context(tenant_id, snapshot_id), state_json.encode()
        )

    # -- reading ---------------------------------------------------------------------------

    async def open_events(
        self, events: MutableSequence[RecordedEvent], *, mark_shredded: bool
    ) -> None:
        """Open the sealed data of ``events`` in place. With ``mark_shredded`` (a reader of the
        log), a shredded tenant's event becomes an ``UnreadableEvent`` and one whose sealed data
        fails authentication a ``DamagedEvent`` (data as stored); else they raise
        ``TenantKeyShreddedError`` and ``CiphertextError``."""
        sealed = [i for i, event in enumerate(events) if is_sealed(event.data)]
        if not sealed:
            return
        ring = self._ring(f"stored event {events[sealed[0]].event_id}")
        await ring.load(events[i].tenant_id for i in sealed)
        # Each (tenant, version) looked up once per page; None: shredded.
        keys: dict[tuple[str, int], DataKey | None] = {}
        for i in sealed:
            event = events[i]
            tenant_id, data = event.tenant_id, event.data
            try:
                slot = (tenant_id, key_version(data))
                if slot in keys:
                    key = keys[slot]
                else:
                    key = keys[slot] = await _key_or_none(ring, *slot, mark_shredded)
                if key is None:
                    events[i] = UnreadableEvent._make(event)
                    continue
                plain = unseal(key.aes, data, event_context(tenant_id, event.event_id))
            except CiphertextError as e:
                if mark_shredded:  # one damaged event does not stop a reader of the log
                    events[i] = DamagedEvent._make(event)
                    continue
                where = f"stored event {event.event_id} in {tenant_id}/{event.aggregate_id}"
                raise CiphertextError(f"{where}: {e}") from None
            # A new tuple beside the data (namedtuple's _replace costs twice as much).
            opened = json.loads(plain.decode())
            events[i] = RecordedEvent._make((*event[:_DATA], opened, *event[_DATA + 1 :]))

    async def open_event_data(
        self, tenant_id: str, event_id: uuid.UUID, data: dict[str, Any], where: str
    ) -> dict[str, Any]:
        """One event's data as stored (decoded), opened if sealed."""
        if not is_sealed(data):
            return data
        try:
            key = await self._ring(where).for_reading(tenant_id, key_version(data))
            plain = unseal(key.aes, data, event_context(tenant_id, event_id))
        except CiphertextError as e:
            raise CiphertextError(f"{where}: {e}") from None
        opened: dict[str, Any] = json.loads(plain.decode())
        return opened

    async def text_opener(self, tenant_id: str, where: str) -> Callable[[str, str], str]:
        """A function opening the tenant's sealed event texts (``(event_id, jsonb text)`` to JSON
        text) with keys looked up once each, not per event (a long stream's load)."""
        ring = self._ring(where)
        keys: dict[int, DataKey] = {}
        versions = await ring.versions(tenant_id)

        def open_text(event_id: str, text: str) -> str:
            try:
                envelope = envelope_of_text(text)
                version = key_version(envelope)
                key = keys.get(version)
                if key is None:
                    key = keys[version] = KeyRing.pick(tenant_id, versions, version)
                return unseal(key.aes, envelope, event_context(tenant_id, event_id)).decode()
            except CiphertextError as e:
                raise CiphertextError(f"stored event {event_id} of {where}: {e}") from None

        return open_text

    async def open_snapshot(
        self, tenant_id: str, snapshot_id: uuid.UUID, state: Any, where: str
    ) -> Any:
        """A snapshot's state as stored (decoded dict or jsonb text), opened if sealed; the same
        form comes back."""
        text = isinstance(state, str)
        if not text and not is_sealed(state):
            return state
        try:
            envelope = envelope_of_text(state) if text else state
            key = await self._ring(where).for_reading(tenant_id, key_version(envelope))
            plain = unseal(key.aes, envelope, snapshot_context(tenant_id, snapshot_id))
        except CiphertextError as e:
            raise CiphertextError(f"{where}: {e}") from None
        return plain.decode() if text else json.loads(plain.decode())


async def _key_or_none(
    ring: KeyRing, tenant_id: str, version: int, shredded_is_none: bool
) -> DataKey | None:
    """The key, or None for a shredded one if ``shredded_is_none`` (else the error)."""
    try:
        return await ring.for_reading(tenant_id, version)
    except TenantKeyShreddedError:
        if not shredded_is_none:
            raise
        return None


OFF: Final = PayloadEncryption()
"""No encryption configured: nothing sealed, a sealed payload is a typed error."""
