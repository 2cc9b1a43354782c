"""Simulate: run the real Pulumi program (`__main__.py`, unchanged) under the SDK's mock runtime.

No Pulumi CLI, no providers, no network: every resource registration is recorded with its
type, name, parent, provider, options and inputs, and the stack outputs are resolved. Tests
and the offline commands use this to see exactly what a stack would create.
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from stacks.load import Secure, StackFile

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "__main__.py"
PLACEHOLDER = "[secret]"


@dataclass(frozen=True)
class SecretValue:
    """A value Pulumi marked secret; renders as [secret], keeps the value for tests to check."""

    value: Any

    def __repr__(self) -> str:
        return PLACEHOLDER


@dataclass(frozen=True)
class Registration:
    """One resource registration, as the engine would have received it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    protect: bool
    dependencies: tuple[str, ...]
    inputs: dict[str, Any]


@dataclass
class Simulation:
    """What a stack would create: registrations in order, and resolved stack outputs."""

    stack: str
    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name: str) -> Registration:
        found = [r for r in self.registrations if r.type == type_ and r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} registrations of {type_} named {name}")
        return found[0]

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]


def _unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SecretValue(_unwrap(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class _Mocks(pulumi.runtime.Mocks):
    """Resources echo their inputs as state; invokes answer from the handlers given."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, sim: Simulation) -> None:
        super().__init__(mocks)
        self.sim = sim

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.sim.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=request.custom,
                    provider=request.provider,
                    protect=request.protect,
                    dependencies=tuple(request.dependencies),
                    inputs=_unwrap(rpc.deserialize_properties(request.object)),
                )
            )
        return response


def pulumi_config(sf: StackFile) -> tuple[dict[str, str], list[str]]:
    """A stack file's config as the engine hands it to a program: JSON for objects, secrets marked.

    Secure values cannot be decrypted offline; they become a placeholder that stays secret.
    """
    config: dict[str, str] = {}
    for key, value in sf.config.items():
        if isinstance(value, Secure):
            config[key] = PLACEHOLDER
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    return config, sorted(sf.secret_keys)


def simulate(sf: StackFile, program: Path = PROGRAM, record: Simulation | None = None) -> Simulation:
    """Run `program` for the stack file under mocks (preview=False) and record what it does.

    Raises whatever the program raises (pulumi.RunError for invalid config); what was
    registered before that is in `record`, when the caller passed one.
    """
    sim = record if record is not None else Simulation(stack=sf.stack)
    mocks = _Mocks()
    settings.reset_options(project="iluvatar", stack=sf.stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project="iluvatar", stack=sf.stack, preview=False, monitor=_RecordingMonitor(mocks, sim))
    config, secret_keys = pulumi_config(sf)
    pulumi.runtime.set_all_config(config, secret_keys)

    def run() -> None:
        runpy.run_path(str(program), run_name="__main__")

    _sync_await(run_pulumi_func(run))
    root = settings.get_root_resource()
    exported: dict[str, Any] = dict(getattr(root, "outputs", {}))
    for key, value in exported.items():
        out = pulumi.Output.from_input(value)
        resolved = _sync_await(out.future())
        sim.outputs[key] = SecretValue(resolved) if _sync_await(out.is_secret()) else resolved
    return sim
