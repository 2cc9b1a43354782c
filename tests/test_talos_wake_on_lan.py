"""The Talos acceptance check (tools/talos_check.py) on machines woken by Wake-on-LAN: Talos's own code says yes.

Their patches carry the EthernetConfig that keeps the NIC's Wake-on-LAN armed (plans.power); the
provider's machinery (v1.13.0) generates each config and validates it, and a v1.12.4 node's
machinery loads and validates it as it receives it, strict. A user's own EthernetConfig for the
same link (rings, features) is merged into it by the provider's patcher, not refused.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from iluvatar.simulate import simulate
from stacks import read_stack_file
from tests.edit import edit, homelab_doc, write_stack
from tools.talos_check import Machine, Verdict, check, machines

WAKE = {"apiVersion": "v1alpha1", "kind": "EthernetConfig", "wakeOnLan": ["magic"]}


def ethernet(config: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(config) if d and d.get("kind") == "EthernetConfig"]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """One batch: a worker and a control plane woken by WoL, and the worker with a user's EthernetConfig for its link."""
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:nodes[6].power": {"wakeOnLan": {"link": "enp0s25"}},
            "iluvatar:nodes[4].power": {"wakeOnLan": {"link": "eno1"}},
            # A BMC powers a module in a Turing Pi 2 slot: saruman as an RK1.
            "iluvatar:nodes[7].arch": "arm64",
            "iluvatar:nodes[7].board": "rk1",
            "iluvatar:nodes[7].power": {"bmc": {"address": "192.168.0.5", "slot": 1}},
            "iluvatar:bmcPasswords": {"192.168.0.5": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}},
        },
    )
    path = write_stack(tmp_path_factory.mktemp("wol"), doc, stack="homelab")
    found = {m.name: m for m in machines(simulate(read_stack_file(path)).invocations, prefix="wol/")}
    gandalf = found["wol/gandalf"]
    rings = "apiVersion: v1alpha1\nkind: EthernetConfig\nname: enp0s25\nrings:\n  rx: 256\n"
    merged = Machine("wol/gandalf-with-rings", {**gandalf.arguments, "configPatches": [*gandalf.arguments["configPatches"], rings]})
    return {v.name: v for v in check([found["wol/gandalf"], found["wol/tirion"], found["wol/saruman"], merged])}


def test_both_talos_versions_accept_the_wake_on_lan_patch(verdicts: dict[str, Verdict]) -> None:
    assert sorted(verdicts) == ["wol/gandalf", "wol/gandalf-with-rings", "wol/saruman", "wol/tirion"]
    assert [p for v in verdicts.values() for p in v.problems()] == []


def test_the_generated_config_arms_magic_packets_on_the_named_link(verdicts: dict[str, Verdict]) -> None:
    assert ethernet(verdicts["wol/gandalf"].config) == [{**WAKE, "name": "enp0s25"}]
    assert ethernet(verdicts["wol/tirion"].config) == [{**WAKE, "name": "eno1"}]
    # A machine powered by its BMC gets no EthernetConfig.
    assert ethernet(verdicts["wol/saruman"].config) == []


def test_a_users_ethernet_config_for_the_same_link_is_merged_not_refused(verdicts: dict[str, Verdict]) -> None:
    assert ethernet(verdicts["wol/gandalf-with-rings"].config) == [{**WAKE, "name": "enp0s25", "rings": {"rx": 256}}]
