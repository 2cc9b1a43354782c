"""The mock run: inputs read as the providers read them, secrets marked, and the SDK left as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import resource as pulumi_resource

from iluvatar import simulate as simulate_module
from iluvatar.simulate import SecretValue, _unwrap
from stacks.load import StackFile


def test_whole_doubles_read_as_integers_and_fractions_stay() -> None:
    # Pulumi's wire format has only doubles: the program's `replicas: 1` arrives as 1.0.
    read = _unwrap({"replicas": 1.0, "ratio": 0.0025, "ports": [80.0, -1.0], "flag": True, "huge": 2.0**60, "name": "x"})
    assert read == {"replicas": 1, "ratio": 0.0025, "ports": [80, -1], "flag": True, "huge": 2.0**60, "name": "x"}
    kinds: dict[str, Any] = {k: type(v) for k, v in read.items()}
    assert kinds == {"replicas": int, "ratio": float, "ports": list, "flag": bool, "huge": float, "name": str}
    assert [type(p) for p in read["ports"]] == [int, int]


def test_secrets_inside_are_marked_and_read_the_same_way() -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": {"port": 6443.0}}
    read = _unwrap({"spec": secret})
    assert read == {"spec": SecretValue({"port": 6443})}
    assert type(read["spec"].value["port"]) is int


PROGRAM = """
import pulumi

class Thing(pulumi.CustomResource):
    def __init__(self, name: str) -> None:
        super().__init__("test:index:Thing", name, {})

Thing("one")
if pulumi.Config("t").get_bool("fail"):
    raise ValueError("the program failed")
"""


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> list[int]:
    """Simulate a one-resource program; the number of stack frames each registration carried."""
    program = tmp_path / "__main__.py"
    program.write_text(PROGRAM)
    frames: list[int] = []
    real = simulate_module._RecordingMonitor.RegisterResource

    def register(self: Any, request: Any) -> Any:
        frames.append(len(request.stackTrace.frames))
        return real(self, request)

    monkeypatch.setattr(simulate_module._RecordingMonitor, "RegisterResource", register)
    simulate_module.simulate(StackFile(tmp_path / "Pulumi.t.yaml", config, frozenset()), program=program)
    return frames


def test_a_simulation_sends_no_stack_and_leaves_the_sdk_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The root Stack and the program's one resource, neither with the frames the SDK would have read.
    original = pulumi_resource._get_stack_trace
    assert _run(tmp_path, monkeypatch, {}) == [0, 0]
    assert pulumi_resource._get_stack_trace is original
    with pytest.raises(Exception, match="the program failed"):
        _run(tmp_path, monkeypatch, {"t:fail": "true"})
    assert pulumi_resource._get_stack_trace is original


def test_outside_a_simulation_the_sdk_captures_the_constructors_stack() -> None:
    # What makes the `[0]` above mean something: the SDK, as the real engine runs it, sends the frames below the
    # third constructor up the stack (Resource, CustomResource, the concrete class), here this test's.
    class Resource:
        def __init__(self) -> None:
            self.trace = pulumi_resource._get_stack_trace()

    class Custom(Resource):
        def __init__(self) -> None:
            super().__init__()

    class Concrete(Custom):
        def __init__(self) -> None:
            super().__init__()

    assert len(Concrete().trace.frames) > 0
    assert simulate_module._empty_stack_trace().frames == []
