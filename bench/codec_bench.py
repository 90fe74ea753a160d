"""What the Temporal payload codec costs a client or a worker: converting a command's input and
its result to payloads and back, with ACCI's converter without the codec and with it.

    .venv/bin/python bench/codec_bench.py [--rounds N]

No services: ``data_converter(settings)`` on a ``CommandInput`` (a RegisterUser with a typical
payload) and its ``CommandResult``, encode then decode, N times per side per round, the sides
alternating for five rounds. A command's run converts each of them about twice (client and
worker), plus its activity's input and result. The machine is shared and noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
import uuid

from pydantic import SecretStr
from temporalio.converter import DataConverter

from acci.activities.models import CommandInput, CommandResult
from acci.workers.converter import DATA_CONVERTER, data_converter
from acci.workers.settings import Settings

COMMAND = CommandInput(
    command_id=uuid.uuid4(),
    tenant_id="acme",
    command_type="RegisterUser",
    payload={"user_id": "u-42", "email": "ada@example.com", "name": "Ada Lovelace"},
)


async def _side(converter: DataConverter, result: CommandResult, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        payloads = await converter.encode([COMMAND, result])
        await converter.decode(payloads, [CommandInput, CommandResult])
    return (time.perf_counter() - started) / rounds * 1e6


async def main(rounds: int) -> None:
    codec = data_converter(
        Settings(
            payload_codec=True,
            master_key=SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode()),
        )
    )
    (encoded,) = await DATA_CONVERTER.encode([COMMAND])
    result = CommandResult.model_validate(_result_fields())
    plain, sealed = [], []
    for _ in range(5):
        plain.append(await _side(DATA_CONVERTER, result, rounds))
        sealed.append(await _side(codec, result, rounds))
    p, s = min(plain), min(sealed)
    print(f"input payload {len(encoded.data)} bytes; {rounds} round trips per side, best of 5")
    print(f"{'side':<22}{'µs per input+result':>22}")
    print(f"{'without the codec':<22}{p:>22.1f}")
    print(f"{'with the codec':<22}{s:>22.1f}")
    print(f"{'codec ÷ without':<22}{s / p:>22.2f}  (+{s - p:.1f} µs)")


def _result_fields() -> dict[str, object]:
    """A RegisterUser's result: one event appended."""
    return {
        "command_id": COMMAND.command_id,
        "tenant_id": "acme",
        "aggregate_id": "u-42",
        "aggregate_type": "User",
        "stream_version": 1,
        "event_ids": [uuid.uuid4()],
        "global_positions": [1234],
        "positions": ["5678:1234"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5_000)
    asyncio.run(main(parser.parse_args().rounds))
