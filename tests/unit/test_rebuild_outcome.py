"""What `acci readmodels rebuild` prints when a rebuild is live: where it projected to, not a
count of this run's events (a run resumed after a worker was killed counts only its own)."""

from __future__ import annotations

import pytest

from acci.workers.cli_readmodels import _rebuild_line, _show_outcome


def test_a_live_rebuild_names_the_position_it_projected_up_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = {
        "read_model": "users",
        "version": 2,
        "phase": "retiring",
        "retired": 1,
        "drop_after": "2026-12-03T10:14:03+00:00",
        # Resumed after a kill: the run applied 187,411 of the 304,411 events itself.
        "progress": {"position": "91022:304575", "applied": 187_411},
    }
    _show_outcome("rebuild-users-v2", status, as_json=False)
    assert capsys.readouterr().out == (
        "users is live at version 2 (projected up to 91022:304575, checked against the fold and"
        " the live version); version 1 is dropped after 2026-12-03T10:14:03+00:00\n"
    )


def test_a_version_s_rebuild_line_shows_where_it_is_or_why_it_failed() -> None:
    running = {"phase": "projecting", "position": "9:120", "head": "9:400", "eta_seconds": 12.4}
    assert _rebuild_line(running) == ", rebuild projecting at 9:120 of 9:400, ETA 12 s"
    # A start refused at once never had a position: no "at None of None".
    refused = {"phase": "failed", "position": None, "head": None, "error": "version 1 is retired"}
    assert _rebuild_line(refused) == ", rebuild failed: version 1 is retired"
