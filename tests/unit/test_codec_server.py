"""The remote codec endpoint (workers/codec_server.py) over real HTTP on a free port: Temporal's
codec server protocol, its token, and CORS for the Web UI's origin."""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payloads

from acci.workers.codec import CodecError
from acci.workers.codec_server import codec_endpoint, serving_codec
from acci.workers.converter import data_converter
from acci.workers.settings import Settings

TOKEN = "codec-t0ken-5be1"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(
        payload_codec=True,
        master_key=SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode()),
        codec_auth_token=SecretStr(TOKEN),
        temporal_ui_port=18233,
    )


@pytest.fixture(scope="module")
def url(settings: Settings) -> Iterator[str]:
    with serving_codec(codec_endpoint(settings), "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


async def encrypted_body(settings: Settings, value: object) -> bytes:
    payloads = await data_converter(settings).encode([value])
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def test_decode_answers_the_plaintext_payloads_to_a_request_with_the_token(
    settings: Settings, url: str
) -> None:
    body = await encrypted_body(settings, {"name": "Ada Lovelace"})
    assert b"Ada Lovelace" not in body
    status, _, answer = post(f"{url}/default/decode", body, BEARER)
    assert status == 200
    (payload,) = json_format.ParseDict(answer, Payloads()).payloads
    assert payload.metadata["encoding"] == b"json/plain"
    assert json.loads(payload.data) == {"name": "Ada Lovelace"}


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", TOKEN, f"Basic {TOKEN}"])
async def test_decode_refuses_a_request_without_the_token(
    settings: Settings, url: str, authorization: str | None
) -> None:
    body = await encrypted_body(settings, {"name": "Ada Lovelace"})
    headers = {"Authorization": authorization} if authorization else {}
    status, _, answer = post(f"{url}/decode", body, headers)
    assert status == 401
    assert "Ada Lovelace" not in json.dumps(answer) and TOKEN not in json.dumps(answer)


async def test_encode_then_decode_is_the_identity(settings: Settings, url: str) -> None:
    clear = json_format.MessageToJson(
        Payloads(payloads=data_converter(Settings()).payload_converter.to_payloads(["x"]))
    ).encode()
    status, _, encoded = post(f"{url}/encode", clear, BEARER)
    assert status == 200
    assert (
        encoded["payloads"][0]["metadata"]["encoding"]
        == base64.b64encode(b"binary/encrypted").decode()
    )
    status, _, decoded = post(f"{url}/decode", json.dumps(encoded).encode(), BEARER)
    assert (status, decoded) == (200, json.loads(clear))


def test_only_the_web_uis_origin_may_call_it_from_a_browser(url: str) -> None:
    def preflight(origin: str) -> dict[str, str]:
        request = urllib.request.Request(
            f"{url}/default/decode",
            method="OPTIONS",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(response.headers)

    allowed = preflight("http://localhost:18233")
    assert allowed["Access-Control-Allow-Origin"] == "http://localhost:18233"
    assert "Authorization" in allowed["Access-Control-Allow-Headers"]
    assert "X-Namespace" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in preflight("http://evil.example")


def test_a_malformed_body_or_an_unknown_path_is_a_clear_error(url: str) -> None:
    status, _, answer = post(f"{url}/decode", b"not json", BEARER)
    assert status == 400 and "payloads" in answer["error"]
    status, _, answer = post(f"{url}/other", b"{}", BEARER)
    assert status == 404


def test_an_empty_token_setting_asks_for_no_token_rather_than_an_empty_one(
    settings: Settings,
) -> None:
    empty = settings.model_copy(update={"codec_auth_token": SecretStr("")})
    assert codec_endpoint(empty).authorized(None)
    assert not codec_endpoint(settings).authorized("Bearer ")


def test_a_body_length_it_cannot_trust_is_refused_before_anything_is_read(url: str) -> None:
    # A raw request: urllib would send a correct Content-Length of its own.
    address = url.removeprefix("http://")
    host, port = address.split(":")
    for length, expected in (("-1", 413), ("lots", 411), (str(10**9), 413)):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                f"POST /decode HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: {length}\r\n\r\n".encode()
            )
            status_line = conn.makefile("rb").readline().decode()
        assert status_line.split()[1] == str(expected), (length, status_line)


def test_beyond_loopback_it_listens_only_with_a_token(settings: Settings) -> None:
    open_to_all = settings.model_copy(update={"codec_auth_token": None})
    with pytest.raises(CodecError, match="only with a token: set ACCI_CODEC_AUTH_TOKEN"):
        with serving_codec(codec_endpoint(open_to_all), "0.0.0.0", 0):
            pass
    with serving_codec(codec_endpoint(settings), "0.0.0.0", 0) as port:
        assert port > 0
