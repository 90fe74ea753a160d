"""The remote codec endpoint (Temporal's codec server protocol): the Web UI and
``temporal workflow show --codec-endpoint`` send it the encrypted payloads of a history and
show what it answers, so an operator allowed to see them reads inputs and results in clear.

POST ``…/decode`` and ``…/encode`` (any prefix, such as ``/{namespace}/decode``: only the last
path segment counts) take and answer ``{"payloads": [...]}``, the protobuf JSON of a
``Payloads`` (base64 fields). With ACCI_CODEC_AUTH_TOKEN set, a request without
``Authorization: Bearer <token>`` is refused (401) and decodes nothing. Browsers may call it
from the configured Web UI origins only (CORS). A stdlib ``ThreadingHTTPServer``, as the
worker's own endpoint (workers/http_endpoint.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from acci.workers.codec import CodecError, EncryptionCodec, keyring_codec
from acci.workers.settings import Settings

log = logging.getLogger(__name__)

# A page of a history's payloads; a larger body is refused before it is read.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
# What the Web UI sends besides the body: its namespace, and the operator's token.
_ALLOWED_HEADERS: Final = "Authorization, Content-Type, X-Namespace"


@dataclass(frozen=True, slots=True)
class CodecEndpoint:
    """What the endpoint needs: the codec, the token it asks for (None: none), and the
    browser origins allowed to call it."""

    codec: EncryptionCodec
    token: str | None
    origins: frozenset[str]

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the configured token."""
        if self.token is None:
            return True
        expected = f"Bearer {self.token}".encode()
        return hmac.compare_digest((header or "").encode(), expected)


def ui_origins(settings: Settings) -> frozenset[str]:
    """The browser origins allowed to call the endpoint: ACCI_CODEC_CORS_ORIGINS, or the dev
    Web UI's (by either name of this host, as a browser may be pointed at either)."""
    if settings.codec_cors_origins:
        return frozenset(o.rstrip("/") for o in settings.codec_cors_origins)
    port = settings.temporal_ui_port
    return frozenset({f"http://localhost:{port}", f"http://127.0.0.1:{port}"})


def auth_token(settings: Settings) -> str | None:
    """The token the endpoint asks for: ACCI_CODEC_AUTH_TOKEN, None when unset or empty (a
    compose file's unset variable asks for no token, not for ``Bearer `` and nothing)."""
    token = settings.codec_auth_token
    return (token.get_secret_value() or None) if token else None


def codec_endpoint(settings: Settings) -> CodecEndpoint:
    """The endpoint of the configured master keys (``CodecError`` without one)."""
    return CodecEndpoint(
        codec=keyring_codec(settings), token=auth_token(settings), origins=ui_origins(settings)
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_OPTIONS(self) -> None:
        # A browser's preflight: answered without the token (browsers never send one here).
        self._send(204, b"", content_type=None)

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        operation = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            self._error(404, "no such codec operation: POST …/encode or …/decode")
            return
        if not endpoint.authorized(self.headers.get("Authorization")):
            log.warning("codec request refused: no valid token", extra={"path": operation})
            self._error(401, "a valid 'Authorization: Bearer <token>' header is required")
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._error(411, "a Content-Length header is required")
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._error(413, f"the body must be 0 to {MAX_BODY_BYTES} bytes")
            return
        try:
            payloads = json_format.Parse(self.rfile.read(length), Payloads())
            step = endpoint.codec.encrypt if operation == "encode" else endpoint.codec.decrypt
            answer = Payloads(payloads=[step(p) for p in payloads.payloads])
        except json_format.ParseError:
            self._error(400, 'the body is not {"payloads": [...]} (protobuf JSON)')
            return
        except CodecError as e:
            self._error(400, str(e))
            return
        body = json_format.MessageToJson(answer, indent=None).encode()
        self._send(200, body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode())

    def _send(
        self, status: int, body: bytes, *, content_type: str | None = "application/json"
    ) -> None:
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin is not None and origin.rstrip("/") in self.server.endpoint.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", _ALLOWED_HEADERS)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only (never its headers: the token is one).
        log.debug("codec request", extra={"request": format % args})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: CodecEndpoint) -> None:
        super().__init__(address, _Handler)
        self.endpoint = endpoint


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@contextmanager
def serving_codec(endpoint: CodecEndpoint, host: str, port: int) -> Iterator[int]:
    """Serve the codec endpoint on ``http://host:port`` until the block exits; yields the
    port (the one chosen when ``port`` is 0). ``OSError`` when it cannot listen; ``CodecError``
    for a host beyond loopback without a token (anyone who reaches it could decode)."""
    if endpoint.token is None and not _loopback(host):
        raise CodecError(
            f"the codec endpoint listens on {host} only with a token: set ACCI_CODEC_AUTH_TOKEN,"
            " or listen on 127.0.0.1"
        )
    server = _Server((host, port), endpoint)
    bound = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="acci-codec", daemon=True)
    thread.start()
    log.info(
        "codec endpoint",
        extra={
            "url": f"http://{host}:{bound}",
            "origins": sorted(endpoint.origins),
            "token_required": endpoint.token is not None,
        },
    )
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
