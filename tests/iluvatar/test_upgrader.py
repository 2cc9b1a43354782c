"""iluvatar.upgrader, the launcher `pulumi up` and `pulumi preview` run the upgrader through."""

from __future__ import annotations

import json
import os

import pytest

from iluvatar import golang, upgrader
from plans import rollout


def _cannot_build(*_args: object, **_kwargs: object) -> None:
    raise golang.GoBuildError("building upgrader (upgrader/, build ./cmd/upgrader) failed:\nno Go toolchain")


def _no_exec(*args: object) -> None:
    raise AssertionError(f"the launcher went on to exec {args}: in a test, that replaces the test runner itself")


def test_a_probe_that_cannot_build_the_upgrader_finds_nothing_and_fails_no_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe runs at `pulumi preview` too (components.arda): an upgrader that cannot be built yet must not fail the
    preview. It finds nothing (every machine keeps its generation), and says why on stderr, which Pulumi shows."""
    # The build the launcher runs (golang.build, looked up when it runs); and never an exec, which would replace pytest.
    monkeypatch.setattr(golang, "build", _cannot_build)
    monkeypatch.setattr(os, "execv", _no_exec)
    with pytest.raises(SystemExit) as exited:
        upgrader.become(["probe", "--node", "gandalf=192.168.0.31", "--deadline", "3s"])
    out, err = capsys.readouterr()
    assert (exited.value.code, json.loads(out), rollout.probed(out)) == (upgrader.EXIT_OK, {"nodes": {}}, {})
    assert err.startswith(
        "upgrader: cannot build the upgrader within the build's own bound, 3600 s: building upgrader (upgrader/, build ./cmd/upgrader) failed:"
    ), err
    # Any other command fails: its step cannot run.
    with pytest.raises(SystemExit) as exited:
        upgrader.become(["apply", "--node", "gandalf=192.168.0.31"])
    out, _ = capsys.readouterr()
    assert (exited.value.code, out) == (upgrader.EXIT_FAILED, "")


def test_a_secret_key_probe_that_cannot_build_the_upgrader_could_not_look_and_fails_no_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The router's probe runs at `pulumi preview` too (components.remote_access): it says it could not look, which
    changes nothing (plans.remote_access.router_enrolment), and never fails the preview."""
    from plans import remote_access

    monkeypatch.setattr(golang, "build", _cannot_build)
    monkeypatch.setattr(os, "execv", _no_exec)
    with pytest.raises(SystemExit) as exited:
        upgrader.become(["secret-key", "--namespace", "remote-access", "--secret", "subnet-router-state", "--key", "device_id"])
    out, _ = capsys.readouterr()
    assert (exited.value.code, json.loads(out), remote_access.router_enrolment(2, out)) == (upgrader.EXIT_OK, {"secret": "unreachable"}, 2)
