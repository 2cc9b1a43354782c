"""tests/upgrader/run.py's `upgrader_watched`, run on a stand-in for the upgrader (a shell script): what a test's
callback that raises leaves behind."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.upgrader import run
from tests.upgrader.run import upgrader_watched

# The upgrader as a test's callback meets it: a progress line, then a wait that goes on; SIGTERM runs its undo, which it
# says line by line, as upgrader/internal/stop has it. The wait runs in the background, so the trap runs at once (a
# shell runs a trap only once its foreground command ended), its output away from the pipes, which it would hold open.
FAKE = """#!/bin/sh
trap 'kill $!; echo "upgrader: n: uncordoned" >&2; echo undone > "$0.undone"; exit 1' TERM
echo $$ > "$0.pid"
echo "upgrader: n: drain: eviction refused" >&2
sleep 600 </dev/null >/dev/null 2>&1 &
wait
"""

# One that ignores SIGTERM: its waits (a second each, their output away from the pipes) go on until it is killed.
DEAF = """#!/bin/sh
trap '' TERM
echo $$ > "$0.pid"
echo "upgrader: n: drain: eviction refused" >&2
while :; do sleep 1 </dev/null >/dev/null 2>&1; done
"""


def test_a_callback_that_raises_ends_and_reaps_the_upgrader_after_its_undo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "upgrader"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    monkeypatch.setattr(run, "binary", lambda: fake)
    seen: list[str] = []

    def on_line(line: str) -> bool:
        seen.append(line)
        raise TimeoutError("kubectl's retry of the refused eviction: not within 60 s")

    with pytest.raises(TimeoutError) as raised:
        upgrader_watched([], {}, on_line, stop=signal.SIGTERM)
    assert str(raised.value) == "kubectl's retry of the refused eviction: not within 60 s"
    assert seen == ["upgrader: n: drain: eviction refused"]
    # Its undo ran (SIGTERM first, not a SIGKILL) and it is gone, reaped: no process has its pid any more.
    assert (tmp_path / "upgrader.undone").read_text() == "undone\n"
    pid = int((tmp_path / "upgrader.pid").read_text())
    assert not Path(f"/proc/{pid}").exists()


def test_a_callback_that_raises_kills_an_upgrader_that_outlives_its_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An upgrader that ignores SIGTERM is killed once its grace is over (GRACE_S: 0 here, as the test cannot wait 75 s).
    fake = tmp_path / "upgrader"
    fake.write_text(DEAF)
    fake.chmod(0o755)
    monkeypatch.setattr(run, "binary", lambda: fake)
    monkeypatch.setattr(run, "GRACE_S", 0)

    def on_line(line: str) -> bool:
        raise TimeoutError(line)

    with pytest.raises(TimeoutError):
        upgrader_watched([], {}, on_line, stop=signal.SIGTERM)
    pid = int((tmp_path / "upgrader.pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
