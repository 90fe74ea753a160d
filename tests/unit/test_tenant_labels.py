"""The per-tenant command counter's labels: bounded, and claimed only by stored commands."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from acci.workers.metrics_commands import OTHER, CommandMetrics


def counted(tenant: str, outcome: str) -> float:
    labels = {"tenant": tenant, "outcome": outcome}
    return REGISTRY.get_sample_value("acci_tenant_commands_total", labels) or 0.0


def test_refused_commands_do_not_use_up_the_tenant_labels() -> None:
    metrics = CommandMetrics(tenant_labels=2)
    run = uuid.uuid4().hex[:8]
    other_before = counted(OTHER, "authorization")
    # Refusals for tenants that may not exist: each is counted, none takes a slot.
    for i in range(5):
        metrics.attempt("RenameTenant", f"bogus-{run}-{i}", "authorization", 0.01)
        metrics.attempt("RenameTenant", f"typo-{run}-{i}", "validation", 0.01)
        metrics.attempt("RenameTenant", f"gone-{run}-{i}", "domain", 0.01)
    assert counted(OTHER, "authorization") - other_before == 5
    assert counted(f"bogus-{run}-0", "authorization") == 0
    # Stored commands (and re-sends) still get their own label, up to the bound.
    metrics.attempt("CreateTenant", f"real-{run}", "ok", 0.01)
    metrics.attempt("CreateTenant", f"again-{run}", "resent", 0.01)
    metrics.attempt("CreateTenant", f"third-{run}", "ok", 0.01)
    assert counted(f"real-{run}", "ok") == 1
    assert counted(f"again-{run}", "resent") == 1
    assert counted(f"third-{run}", "ok") == 0
    # A labelled tenant's later refusals are counted under its own label.
    metrics.attempt("RenameTenant", f"real-{run}", "domain", 0.01)
    assert counted(f"real-{run}", "domain") == 1
