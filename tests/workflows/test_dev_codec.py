"""`acci dev` with the payload codec on: it serves the codec endpoint and its Web UI decodes
payloads through it; without a master key it refuses to start, saying why."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.query_rows import delete_keys
from tests.workflows.conftest import eventually, free_port

ACCI = str(Path(sys.executable).with_name("acci"))


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`acci dev` with the codec on, on ports, a data directory and cache keys of its own."""
    prefix = f"acci-test-{uuid.uuid4().hex[:12]}"
    yield {
        **os.environ,
        "ACCI_DATABASE_URL": database_url,
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "ACCI_TEMPORAL_UI_PORT": str(free_port()),
        "ACCI_DATA_DIR": str(tmp_path / "data"),
        "ACCI_CACHE_PREFIX": prefix,
        "ACCI_METRICS_PORT": "0",
        "ACCI_TEMPORAL_METRICS_PORT": "0",
        "ACCI_PAYLOAD_CODEC": "true",
        "ACCI_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ACCI_CODEC_SERVER_PORT": str(free_port()),
    }
    delete_keys(prefix)


def _get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        found = json.loads(response.read())
    assert isinstance(found, dict)
    return found


def _preflight(url: str, origin: str) -> dict[str, str]:
    request = urllib.request.Request(
        url, method="OPTIONS", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers)


async def test_acci_dev_serves_the_codec_endpoint_and_points_its_web_ui_at_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "dev.out"
    with output.open("wb") as out:
        dev = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [ACCI, "dev"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    codec = f"http://127.0.0.1:{env['ACCI_CODEC_SERVER_PORT']}"
    ui = f"http://127.0.0.1:{env['ACCI_TEMPORAL_UI_PORT']}"
    try:
        await eventually(
            lambda: dev.poll() is None and "Press Ctrl-C" in output.read_text(),
            within=120,
            what=f"acci dev to be up ({output})",
        )
        shown = output.read_text()
        assert f"codec endpoint      {codec} (token not required" in shown
        assert f"temporal workflow show --codec-endpoint {codec} -w <id>" in shown
        # The Web UI's own settings name the endpoint its browser pages decode through.
        settings = _get_json(f"{ui}/api/v1/settings")
        assert json.dumps(settings).count(codec) >= 1, settings
        assert _preflight(f"{codec}/default/decode", ui)["Access-Control-Allow-Origin"] == ui
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
    assert dev.returncode == 0, output.read_text()


def test_acci_dev_with_the_codec_on_and_no_master_key_says_so_and_starts_nothing(
    env: dict[str, str],
) -> None:
    env = {k: v for k, v in env.items() if k != "ACCI_MASTER_KEY"}
    out = subprocess.run(
        [ACCI, "dev", "--exit"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    assert out.stderr.startswith("error (configuration): the payload codec needs ACCI_MASTER_KEY")
    assert not (Path(env["ACCI_DATA_DIR"]) / "temporal.db").exists()
