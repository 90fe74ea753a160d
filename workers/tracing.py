"""Tracing with OpenTelemetry: off unless configured, one trace per command when on.

A command's trace runs from the client's ``StartWorkflow:CommandWorkflow`` through the worker's
``RunWorkflow``, ``StartActivity`` and ``RunActivity:RunCommand`` spans (Temporal's
``TracingInterceptor``), the PostgreSQL statements of its append (``PsycopgInstrumentor``) and
its RabbitMQ publish (``PikaInstrumentor``, which puts the W3C ``traceparent`` into the
message's headers), to each subscriber's receive span (the same instrumentor, reading those
headers). Projection batches and job activities are traces of their own.

Off (the default), nothing is installed: no tracer provider, no interceptor, no instrumentation,
and not even the OpenTelemetry SDK is imported. The process's tracing is configured once (the
OpenTelemetry global tracer provider can only be set once per process): later calls return the
same interceptors.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Literal

from acci.workers.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Client
    from temporalio.contrib.opentelemetry import TracingInterceptor

    from acci.workers.tracing_setup import Installed

TracingMode = Literal["off", "otlp", "console"]

# The process's tracing once configured (None: off, or not configured yet).
_installed: Installed | None = None


def tracing_mode(settings: Settings) -> TracingMode:
    """Where spans go: ACCI_TRACING if set, else what the standard OTEL_* variables say."""
    if settings.otel_sdk_disabled:
        return "off"
    if settings.tracing is not None:
        return settings.tracing
    if settings.otel_traces_exporter:
        # A comma-separated list in the spec; the first one ACCI knows is used.
        for name in settings.otel_traces_exporter.split(","):
            exporter = name.strip().lower()
            if exporter in ("otlp", "console"):
                return "otlp" if exporter == "otlp" else "console"
        return "off"  # "none", or exporters ACCI does not ship
    if settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint:
        return "otlp"
    return "off"


def configure_tracing(
    settings: Settings, *, provider: TracerProvider | None = None
) -> list[TracingInterceptor]:
    """Turn tracing on as configured; returns the Temporal interceptors to add (none if off).

    The returned interceptor is both a client and a worker interceptor: give it to
    ``connect`` (a worker built on that client takes it from there) or to the worker.
    ``provider``: spans go to this provider instead of one built from the settings (which is
    then also set as the global one); tracing is then on whatever the settings say (tests pass
    one with an in-memory exporter).
    Call it before opening connections: only psycopg connections and pika channels opened
    afterwards are traced.
    """
    global _installed
    if _installed is None:
        if provider is None and tracing_mode(settings) == "off":
            return []
        from acci.workers.tracing_setup import exporting_provider, install

        if provider is None:
            mode = tracing_mode(settings)
            _installed = install(exporting_provider(console=mode == "console"), set_global=True)
        else:
            _installed = install(provider, set_global=False)
    return [_installed.interceptor]


def worker_interceptors(settings: Settings, client: Client) -> list[TracingInterceptor]:
    """``configure_tracing``'s interceptors that ``client`` does not carry already (a worker
    uses its client's interceptors too: added twice, every span would be there twice)."""
    on_client = client.config()["interceptors"]
    return [i for i in configure_tracing(settings) if i not in on_client]


def untraced(client: Client) -> Client:
    """``client``'s connection without the tracing interceptor.

    For workflows that run for ever, the projections': started with a trace context, each of
    their batches would join the starting client's trace (and continue-as-new passes it on),
    one trace growing without end. Started without one, each batch is a trace of its own.
    """
    config = client.config()
    if _installed is None or _installed.interceptor not in config["interceptors"]:
        return client
    from temporalio.client import Client

    config["interceptors"] = [i for i in config["interceptors"] if i is not _installed.interceptor]
    return Client(**config)


def untraced_polls() -> Callable[[], AbstractContextManager[object]]:
    """What a waiting projection batch runs its polls of the store inside: nothing when tracing
    is off; when on, no current span, so that a poll's statements (one read a second while the
    batch waits, up to ``ACCI_PROJECTION_IDLE_MS``) are not recorded in the batch's trace."""
    if _installed is None:
        return nullcontext
    from opentelemetry import trace

    return lambda: trace.use_span(trace.INVALID_SPAN)


def shutdown_tracing() -> None:
    """Send the spans still batched and stop exporting (at the end of the process)."""
    if _installed is not None:
        _installed.shutdown()


def reset_tracing() -> None:
    """Undo ``configure_tracing``'s instrumentation (for tests); a global provider it set stays
    (OpenTelemetry sets it once per process), but nothing sends spans to it any more."""
    global _installed
    if _installed is not None:
        _installed.uninstrument()
        _installed = None
