"""What turning tracing on installs: the tracer provider and exporter, the instrumentations,
and Temporal's tracing interceptor with ACCI's span attributes.

Imported only when tracing is on (workers/tracing.py): the OpenTelemetry SDK, exporter and
instrumentations cost about a fifth of a second to import.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.pika import PikaInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from pika.connection import Connection
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from acci.activities.models import CommandInput, CommandResult

if TYPE_CHECKING:
    from opentelemetry.util._decorator import _AgnosticContextManager

# service.name when OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names none.
DEFAULT_SERVICE_NAME: Final = "acci"
TRACER_NAME: Final = "acci"

# Span attributes ACCI adds to the RunActivity spans of commands and projections.
TENANT_ID: Final = "acci.tenant_id"
COMMAND_TYPE: Final = "acci.command_type"
COMMAND_ID: Final = "acci.command_id"
AGGREGATE_ID: Final = "acci.aggregate_id"
EVENTS: Final = "acci.events"
DUPLICATE: Final = "acci.duplicate"
PROJECTION: Final = "acci.projection"


@dataclass(frozen=True, slots=True)
class Installed:
    """Tracing as installed in this process: its interceptor, and how to undo the rest."""

    interceptor: TracingInterceptor
    instrumentors: tuple[Any, ...]
    provider: TracerProvider

    def uninstrument(self) -> None:
        """Remove the psycopg and pika instrumentation (connections opened later are plain)."""
        for instrumentor in self.instrumentors:
            instrumentor.uninstrument()

    def shutdown(self) -> None:
        """Export the spans still batched (waiting up to OTEL_BSP_EXPORT_TIMEOUT), then stop."""
        self.provider.shutdown()


def exporting_provider(*, console: bool) -> TracerProvider:
    """A provider batching spans to OTLP over HTTP (OTEL_EXPORTER_OTLP_* configure it) or to
    stderr (stdout carries the CLI's output). Resource, sampler and batching follow the
    standard OTEL_* variables, which the SDK reads."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    exporter: SpanExporter
    if console:
        exporter = ConsoleSpanExporter(out=sys.stderr)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    # The provider flushes and shuts its processor down at exit (shutdown_on_exit).
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install(provider: TracerProvider, *, set_global: bool) -> Installed:
    """Instrument psycopg and pika, and build the Temporal interceptor, all tracing to
    ``provider`` (also made the global provider with ``set_global``)."""
    if set_global:
        trace.set_tracer_provider(provider)
    # Connections psycopg_pool opens go through AsyncConnection.connect, which this wraps.
    psycopg = PsycopgInstrumentor()
    psycopg.instrument(tracer_provider=_WithinTraces(provider))
    # Channels opened from now on: basic_publish gets a producer span and injects its context
    # into the message headers; the consume generator (EventSubscriber) gets a receive span
    # whose parent is the context extracted from them, current while the message is handled.
    pika = PikaInstrumentor()
    pika.instrument(tracer_provider=provider)
    # A BlockingConnection's channel wraps a channel of pika's own connection; instrumented too,
    # each publish would have two spans, the inner one's context in the headers. ACCI only opens
    # blocking connections: their channels are the ones traced.
    unwrap(Connection, "channel")
    interceptor = AcciTracingInterceptor(provider.get_tracer(TRACER_NAME))
    return Installed(interceptor, (psycopg, pika), provider)


class AcciTracingInterceptor(TracingInterceptor):
    """Temporal's tracing interceptor, whose activity spans also say which command (tenant,
    type, id, aggregate, events stored) or which projection they ran."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        # Inside the tracing interceptor, so that its RunActivity span is the current one.
        return super().intercept_activity(_SpanAttributes(next))


class _SpanAttributes(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        span = trace.get_current_span()
        argument = input.args[0] if input.args else None
        if isinstance(argument, CommandInput):
            span.set_attributes(
                {
                    TENANT_ID: argument.tenant_id,
                    COMMAND_TYPE: argument.command_type,
                    COMMAND_ID: str(argument.command_id),
                }
            )
        elif isinstance(getattr(argument, "projection", None), str):
            span.set_attribute(PROJECTION, getattr(argument, "projection"))  # noqa: B009
        result = await super().execute_activity(input)
        if isinstance(result, CommandResult):
            span.set_attributes(
                {
                    AGGREGATE_ID: result.aggregate_id,
                    EVENTS: len(result.event_ids),
                    DUPLICATE: result.duplicate,
                }
            )
        return result


class _WithinTraces(trace.TracerProvider):
    """Tracers that trace a statement only inside a trace (a command, a batch, a job).

    On their own, the statements of start-up (migrations), of background work (wake-up
    notifications, the query cache) and of health checks would each be a trace of one span:
    many traces that say nothing, burying the ones that do.
    """

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _WithinTrace(self._provider.get_tracer(*args, **kwargs))


class _WithinTrace(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        if not _in_a_trace(context):
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    def start_as_current_span(
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> _AgnosticContextManager[trace.Span]:
        if not _in_a_trace(context):
            return trace.use_span(trace.INVALID_SPAN)
        return self._tracer.start_as_current_span(name, context, *args, **kwargs)


def _in_a_trace(context: Any) -> bool:
    return bool(trace.get_current_span(context).get_span_context().is_valid)
