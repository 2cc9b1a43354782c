"""The mock run: inputs read as the providers read them, secrets marked, and the SDK left as it was."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc

from iluvatar import simulate as simulate_module
from iluvatar.simulate import CRD, SCHEMA_REFERENCE, SecretValue, Simulation, _unwrap
from plans import monitoring
from stacks import read_stack_file
from stacks.load import StackFile
from tests.edit import RK1


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


def _recorded(sim: Simulation) -> list[str]:
    """Each registration as its repr (key order included), the order of its dependencies aside: the SDK resolves them
    concurrently, so that order differs between any two runs."""

    def one(reg: Any) -> str:
        fields = dataclasses.asdict(reg)
        fields["dependencies"] = sorted(fields["dependencies"])
        fields["property_dependencies"] = {k: sorted(v) for k, v in fields["property_dependencies"].items()}
        return repr(fields)

    return sorted(one(r) for r in sim.registrations)


def test_the_crd_schemas_go_through_the_sdk_as_references_and_are_recorded_as_it_delivers_them_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the SDK was handed for each CRD: its schemas are references (the shortcut is taken).
    handed: list[str] = []
    real = simulate_module._RecordingMonitor.RegisterResource

    def register(self: Any, request: Any) -> Any:
        if request.type == CRD:
            handed.extend(v["schema"] for v in rpc.deserialize_properties(request.object)["spec"]["versions"])
        return real(self, request)

    with monkeypatch.context() as m:
        m.setattr(simulate_module._RecordingMonitor, "RegisterResource", register)
        by_reference = simulate_module.simulate(read_stack_file(RK1))
    assert len(handed) == 10
    assert all(isinstance(h, str) and h.startswith(SCHEMA_REFERENCE) for h in handed)
    assert monitoring.crds.__module__ == "plans.monitoring"  # put back after the run

    # The same run with the schemas handed whole, as before the shortcut: the same registrations, repr for repr (the
    # protobuf maps' key order the SDK delivers included), outputs and component outputs.
    @contextlib.contextmanager
    def whole(schemas: dict[str, str]) -> Iterator[None]:
        yield

    monkeypatch.setattr(simulate_module, "_crd_schemas_by_reference", whole)
    handed_whole = simulate_module.simulate(read_stack_file(RK1))
    crds = handed_whole.by_type(CRD)
    assert [type(v["schema"]) for r in crds for v in r.inputs["spec"]["versions"]] == [dict] * 10
    assert _recorded(by_reference) == _recorded(handed_whole)
    assert repr(by_reference.outputs) == repr(handed_whole.outputs)
    assert by_reference.component_outputs == handed_whole.component_outputs


def _schemas(crds: list[dict[str, Any]]) -> list[Any]:
    return [v["schema"] for crd in crds for v in crd["spec"]["versions"]]


def test_each_crds_call_in_a_run_gets_a_copy_of_its_own_and_each_reference_maps_back_to_its_schema() -> None:
    # The references are made once per process (_crds_by_reference); what each call hands the program is still its own.
    schemas: dict[str, str] = {}
    with simulate_module._crd_schemas_by_reference(schemas):
        first = monitoring.crds()
        first[0]["metadata"]["name"] = "changed by the caller"
        first[0]["spec"]["versions"].clear()
        second = monitoring.crds()
    plan = monitoring.crds()
    assert [c["metadata"]["name"] for c in second] == [c["metadata"]["name"] for c in plan]
    assert [json.loads(schemas[reference]) for reference in _schemas(second)] == _schemas(plan)
    assert len(set(_schemas(second))) == len(_schemas(plan)) == 10


def test_a_stand_in_for_the_plans_crds_is_taken_as_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = monitoring.crds()
    narrowed = copy.deepcopy(plan[:1])
    narrowed[0]["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object"}}
    monkeypatch.setattr(monitoring, "crds", lambda: copy.deepcopy(narrowed))
    schemas: dict[str, str] = {}
    with simulate_module._crd_schemas_by_reference(schemas):
        found = monitoring.crds()
    assert [json.loads(schemas[reference]) for reference in _schemas(found)] == [{"openAPIV3Schema": {"type": "object"}}]
    assert [c["metadata"]["name"] for c in found] == [plan[0]["metadata"]["name"]]
