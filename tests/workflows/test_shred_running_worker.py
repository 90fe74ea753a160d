"""A shred reaches a running worker at once, not after its key cache's TTL: `acci tenant shred`
announces it (NOTIFY), the worker forgets the tenant's key, and its next command is refused
instead of being sealed with a key that no longer exists."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from acci.domain.errors import CommandValidationError
from acci.eventstore.keys import new_master_key
from acci.workers.settings import Settings
from tests.workflows.conftest import eventually, worker_env
from tests.workflows.helpers import send
from tests.workflows.test_operator_doors import ACCI, run

TENANT = "shred-live"


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Iterator[Settings]:
    """Encryption on, and a key cache that would outlive the test by far."""
    yield settings.model_copy(
        update={
            "encryption": True,
            "master_key": SecretStr(new_master_key()),
            "data_key_cache_ttl_s": 3_600.0,
            "metrics_port": 0,
        }
    )


def cli_env(settings: Settings) -> dict[str, str]:
    assert settings.master_key is not None
    return {
        **worker_env(settings),
        "ACCI_ENCRYPTION": "true",
        "ACCI_MASTER_KEY": settings.master_key.get_secret_value(),
    }


async def test_a_running_worker_refuses_the_tenant_as_soon_as_it_is_shredded(
    worker: Client, settings: Settings
) -> None:
    q = settings.task_queue
    await send(worker, q, TENANT, "CreateTenant", name="Shred Live")
    # The worker now holds the tenant's key in its cache, for an hour.
    await send(worker, q, TENANT, "RenameTenant", name="Still Here")

    code, out, err = await run(
        [ACCI, "tenant", "shred", "--tenant", TENANT, "--yes"], cli_env(settings), within=60
    )
    assert code == 0, err
    assert "destroyed" in out

    async def refused() -> bool:
        try:
            await send(worker, q, TENANT, "RenameTenant", name="After The Shred")
        except CommandValidationError as e:  # non-retryable: the run failed once, typed
            assert "was shredded" in str(e), e
            return True
        return False

    # Delivered with the shred's commit: the first command after it is refused, or, should the
    # notification still be on its way, one of the next within seconds (never after an hour).
    await eventually(refused, within=10, what="a command on the shredded tenant refused")
