"""What `acci readmodels rebuild` prints when a rebuild is live: where it projected to, not a
count of this run's events (a run resumed after a worker was killed counts only its own)."""

from __future__ import annotations

import pytest

from acci.workers.cli_readmodels import _show_outcome


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
