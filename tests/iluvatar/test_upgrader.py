"""iluvatar.upgrader, the launcher `pulumi up` and `pulumi preview` run the upgrader through."""

from __future__ import annotations

import json

import pytest

from iluvatar import golang, upgrader
from plans import rollout


def _cannot_build() -> None:
    raise golang.GoBuildError("building upgrader (upgrader/, build ./cmd/upgrader) failed:\nno Go toolchain")


def test_a_probe_that_cannot_build_the_upgrader_finds_nothing_and_fails_no_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe runs at `pulumi preview` too (components.arda): an upgrader that cannot be built yet must not fail the
    preview. It finds nothing (every machine keeps its generation), and says why on stderr, which Pulumi shows."""
    monkeypatch.setattr(upgrader, "build", _cannot_build)
    with pytest.raises(SystemExit) as exited:
        upgrader.become(["probe", "--node", "gandalf=192.168.0.31", "--deadline", "3s"])
    out, err = capsys.readouterr()
    assert (exited.value.code, json.loads(out), rollout.probed(out)) == (upgrader.EXIT_OK, {"nodes": {}}, {})
    assert err.startswith("upgrader: cannot build the upgrader: building upgrader (upgrader/, build ./cmd/upgrader) failed:")
    # Any other command fails: its step cannot run.
    with pytest.raises(SystemExit) as exited:
        upgrader.become(["apply", "--node", "gandalf=192.168.0.31"])
    out, _ = capsys.readouterr()
    assert (exited.value.code, out) == (upgrader.EXIT_FAILED, "")
