"""The encryption settings: on only with a master key, previous keys as id=key pairs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.keys import new_master_key
from acci.workers.runtime import key_wrapper
from acci.workers.settings import Settings, previous_master_keys


def test_encryption_is_off_by_default_and_skips_shredded_events() -> None:
    settings = Settings()
    assert settings.encryption is False and settings.shredded_events == "skip"
    assert settings.data_key_cache_ttl_s == 60


def test_encryption_on_without_a_master_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="ACCI_MASTER_KEY"):
        Settings(encryption=True, master_key=None)


def test_previous_master_keys_are_id_key_pairs() -> None:
    old, older, current = new_master_key(), new_master_key(), new_master_key()
    settings = Settings(
        master_key=SecretStr(current),
        master_key_id="k3",
        previous_master_keys=SecretStr(f"k2={old}, k1={older}"),
    )
    assert previous_master_keys(settings) == {"k2": old, "k1": older}
    wrapper = key_wrapper(settings)
    assert wrapper is not None and wrapper.current_key_id == "k3"
    assert wrapper.key_ids == {"k1", "k2", "k3"}
    with pytest.raises(ValueError, match="id=key"):  # refused as the settings load
        Settings(previous_master_keys=SecretStr("k1"))


def test_no_master_key_no_wrapper_and_sealing_cannot_be_asked_for() -> None:
    assert key_wrapper(Settings(master_key=None)) is None
    with pytest.raises(Exception, match="no master key"):
        PayloadEncryption(None, encrypt=True)
