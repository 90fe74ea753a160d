"""What a projection does with an event it cannot apply: the one definition of the choice.

``pause``: park the event and stop until an operator retries or skips it (the default).
``skip``: park the event and go on with the next. Either way the event is in the dead letters.
"""

from __future__ import annotations

from typing import Literal

FailurePolicy = Literal["pause", "skip"]
