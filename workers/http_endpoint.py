"""The worker's one HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (alive) and
``/readyz`` (ready to work: workers/health.py), on ACCI_METRICS_HOST:ACCI_METRICS_PORT.

A stdlib ``ThreadingHTTPServer`` in a thread of its own: a scrape or a probe never waits for the
worker's event loop, except ``/readyz``, whose checks run on it (they share the worker's
Temporal client) within their time limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from temporalio.client import Client

from acci.workers.checks import ServiceCheck
from acci.workers.health import HealthReport, readiness
from acci.workers.settings import Settings

log = logging.getLogger(__name__)

Readiness = Callable[[], dict[str, Any]]
"""Answers ``/readyz``: the report as JSON, with ``status`` "ready" or not."""


def readiness_on_loop(settings: Settings, client: Client | None = None) -> Readiness:
    """Readiness checked on the calling thread's running event loop (the worker's), from the
    endpoint's threads; a loop too busy to answer in time is reported as not ready."""
    loop = asyncio.get_running_loop()
    # Each check has its own limit; this one bounds the whole report.
    limit = readiness_limit(settings)
    # Probes that come together (an orchestrator, a load balancer, a person) share one round of
    # checks: each round opens connections to every service, and they should not pile up. A
    # probe that waited while a round ran takes that round's answer; one that finds no round
    # running starts a new one, so an answer is never older than the probe.
    lock = threading.Lock()
    latest: list[tuple[float, dict[str, Any]]] = []

    def check() -> dict[str, Any]:
        arrived = time.monotonic()
        with lock:
            if latest and latest[0][0] >= arrived:
                return latest[0][1]
            future = asyncio.run_coroutine_threadsafe(readiness(settings, client=client), loop)
            try:
                report: HealthReport = future.result(limit)
            except FutureTimeout:
                future.cancel()
                late = f"the readiness checks did not finish within {limit:.0f}s"
                report = HealthReport([ServiceCheck("worker", False, late, limit * 1000)])
            latest[:] = [(time.monotonic(), report.as_json())]
            return latest[0][1]

    return check


def readiness_limit(settings: Settings) -> float:
    """The longest ``/readyz`` takes to answer, in seconds: a probe should wait longer (the
    database's checks run one after another within three limits, the rest beside them)."""
    return settings.health_timeout_ms / 1000 * 4 + 1


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(REGISTRY))
        elif path == "/healthz":
            self._send_json(200, {"status": "alive"})
        elif path == "/readyz":
            if self.server.ready is None:
                self._send_json(200, {"status": "ready", "failing": [], "checks": []})
                return
            report = self.server.ready()
            self._send_json(200 if report["status"] == "ready" else 503, report)
        else:
            self._send_json(404, {"error": f"no such path {path}: /metrics, /healthz, /readyz"})

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body, indent=2).encode() + b"\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # A probe every few seconds is not worth a line each.
        log.debug("http request", extra={"request": format % args})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ready: Readiness | None = None


@contextmanager
def http_endpoint(host: str, port: int, *, ready: Readiness | None = None) -> Iterator[int | None]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``http://host:port`` until the block
    exits (``ready`` answers ``/readyz``; without it, ready is always yes).

    Yields the port, or None when the port is 0 or taken (logged: the endpoint is worth a
    warning, not a worker that refuses to start).
    """
    if port == 0:
        yield None
        return
    try:
        server = _Server((host, port), _Handler)
    except OSError as e:
        log.warning("HTTP endpoint not started", extra={"port": port, "error": str(e)})
        yield None
        return
    server.ready = ready
    thread = threading.Thread(target=server.serve_forever, name="acci-http", daemon=True)
    thread.start()
    log.info(
        "HTTP endpoint",
        extra={"url": f"http://{host}:{port}", "paths": ["/metrics", "/healthz", "/readyz"]},
    )
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
