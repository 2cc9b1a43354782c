"""plans.timeouts: the engine's bound on a step, a margin over the command's own."""

from __future__ import annotations

import pytest

from plans import timeouts


def test_the_engine_waits_five_minutes_longer_than_the_command() -> None:
    assert timeouts.ENGINE_MARGIN_MINUTES == 5
    assert [timeouts.engine_timeout(t) for t in ("5m", "45m", "120m")] == ["10m", "50m", "125m"]


@pytest.mark.parametrize("duration", ["45", "45s", "1h", "m", "-5m", "4.5m", " 5m"])
def test_only_whole_minutes_are_a_bound(duration: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number of minutes such as 30m"):
        timeouts.minutes(duration)
