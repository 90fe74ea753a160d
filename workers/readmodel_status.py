"""Where every read model stands, as ``acci readmodels status`` shows it: its versions (from
PostgreSQL), the live one's position and lag, and each rebuild's progress (its workflow's
``status`` query, when Temporal answers)."""

from __future__ import annotations

import logging
from typing import Any

from acci.activities.rebuild_models import rebuild_workflow_id
from acci.eventstore.db import create_pool
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.installed import read_models
from acci.readmodels.lag import measure_lag
from acci.readmodels.versions import all_versions
from acci.workers.settings import Settings
from acci.workers.temporal_client import connect

log = logging.getLogger(__name__)


async def read_model_statuses(settings: Settings) -> list[dict[str, Any]]:
    """One entry per installed read model, by name."""
    url = settings.database_url.get_secret_value()
    async with create_pool(url, min_size=1, max_size=2) as pool:
        versions = await all_versions(pool)
        checkpoints = {c.projection: c for c in await CheckpointStore(pool).all()}
        lags = {name: await measure_lag(pool, c.position) for name, c in checkpoints.items()}
    rebuilds = await _rebuilds(settings, [v for v in versions if v.state != "live"])
    out = []
    for model in sorted(read_models(), key=lambda m: m.name):
        mine = [v for v in versions if v.read_model == model.name]
        live = next((v.version for v in mine if v.state == "live"), None)
        checkpoint = checkpoints.get(model.name)
        lag = lags.get(model.name)
        out.append(
            {
                "read_model": model.name,
                "declared_version": model.version,
                "live_version": live,
                "position": str(checkpoint.position) if checkpoint else None,
                "paused": checkpoint.paused if checkpoint else False,
                "lag_events": lag.events if lag else None,
                "tables": list(model.tables),
                "versions": [
                    {
                        "version": v.version,
                        "state": v.state,
                        "created_at": v.created_at,
                        "switched_at": v.switched_at,
                        "drop_after": v.drop_after,
                        "detail": v.detail,
                        "rebuild": rebuilds.get((v.read_model, v.version)),
                    }
                    for v in mine
                ],
            }
        )
    return out


async def _rebuilds(settings: Settings, versions: list[Any]) -> dict[tuple[str, int], Any]:
    """Each rebuild's ``status`` query (its phase and progress); empty if Temporal is down."""
    if not versions:
        return {}
    try:
        client = await connect(settings)
    except RuntimeError as e:
        log.warning(
            "Temporal is not reachable: rebuilds shown without progress", extra={"error": str(e)}
        )
        return {}
    found: dict[tuple[str, int], Any] = {}
    for v in versions:
        handle = client.get_workflow_handle(rebuild_workflow_id(v.read_model, v.version))
        try:
            status = await handle.query("status")
        except Exception:  # no such workflow (an adopted or long-finished version)
            continue
        if isinstance(status, dict):
            progress = status.get("progress") or {}
            found[(v.read_model, v.version)] = {
                "workflow_id": handle.id,
                "phase": status.get("phase"),
                "position": progress.get("position"),
                "head": progress.get("head"),
                "events_per_second": progress.get("events_per_second"),
                "eta_seconds": status.get("eta_seconds"),
                "error": status.get("error"),
            }
    return found
