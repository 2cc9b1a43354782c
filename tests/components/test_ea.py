"""Eä under Pulumi mocks: the component's type, and outputs that match the pure plan."""

from __future__ import annotations

from typing import Any

import pulumi

from components.ea import Ea, EaArgs
from plans.network import plan_network
from stacks import load_stack_file
from tests.edit import HOMELAB


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append(args.typ)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []


def test_ea_outputs_the_plan() -> None:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="iluvatar", stack="test", preview=False)
    stack = load_stack_file(HOMELAB)
    ran: list[bool] = []

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        ea = Ea("ea", EaArgs(stack))

        def check(args: list[Any]) -> None:
            urn, reservations, vips, pool, lan = args
            assert urn.endswith("pulumi:pulumi:Stack$iluvatar:network:Ea::ea")
            assert [r["name"] for r in reservations] == [r.name for r in plan_network(stack).reservations]
            assert {r["mac"]: r["ip"] for r in reservations}["a8:b8:e0:20:00:02"] == "192.168.0.22"
            assert vips == {"ainur": "192.168.0.10", "arda": "192.168.0.20"}
            assert pool == {"start": "192.168.0.220", "end": "192.168.0.239"}
            assert lan == "192.168.0.0/24"
            ran.append(True)

        return pulumi.Output.all(ea.urn, ea.reservations, ea.vips, ea.load_balancer_pool, ea.lan).apply(check)

    build()
    assert ran == [True], "the output callback never ran"
    assert mocks.created == ["iluvatar:network:Ea"]
