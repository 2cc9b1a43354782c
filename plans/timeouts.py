"""The engine's bound on a bring-up or day-2 step (`plans.bringup`, `plans.power`): the command's own, plus a margin.

The command (the upgrader, a BMC call) reports first, naming the check that was still failing; the
engine's bound only catches a step that hangs outright.
"""

from __future__ import annotations

ENGINE_MARGIN_MINUTES = 5


def minutes(duration: str) -> int:
    """A whole-minute duration (`45m`) as minutes."""
    if not duration.endswith("m") or not duration[:-1].isdigit():
        raise ValueError(f"{duration!r} is not a whole number of minutes such as 30m")
    return int(duration[:-1])


def engine_timeout(timeout: str) -> str:
    """The engine's bound (`customTimeouts`) on a step whose command gives up after `timeout`."""
    return f"{minutes(timeout) + ENGINE_MARGIN_MINUTES}m"
