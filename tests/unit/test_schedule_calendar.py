"""``acci schedules list`` shows a cron schedule as the expression it was made from: the server
hands back the calendar it parsed the expression into, which this turns back into cron fields."""

from __future__ import annotations

import pytest
from temporalio.client import ScheduleCalendarSpec, ScheduleRange

from acci.workers.schedules import calendar_text


@pytest.mark.parametrize(
    ("calendar", "text"),
    [
        (
            ScheduleCalendarSpec(hour=[ScheduleRange(3)], day_of_week=[ScheduleRange(0)]),
            "0 3 * * 0",
        ),
        (
            ScheduleCalendarSpec(
                minute=[ScheduleRange(0, 59, 15)],
                hour=[ScheduleRange(9, 17)],
                day_of_week=[ScheduleRange(1, 5)],
            ),
            "0-59/15 9-17 * * 1-5",
        ),
        (
            ScheduleCalendarSpec(
                second=[ScheduleRange(30)],
                minute=[ScheduleRange(5), ScheduleRange(35)],
                day_of_month=[ScheduleRange(1)],
                month=[ScheduleRange(1, 12, 3)],
            ),
            "30 5,35 0 1 1-12/3 *",
        ),
    ],
)
def test_a_calendar_reads_as_its_cron_fields(calendar: ScheduleCalendarSpec, text: str) -> None:
    assert calendar_text(calendar) == text
