"""The day-2 plan (plans.rollout): what changes on which Arda machine, in the order they are rolled."""

from __future__ import annotations

import copy
from typing import Any

from plans import rollout
from stacks import load_stack_file
from tests.edit import HOMELAB

IMAGE = "factory.talos.dev/metal-installer/abc"


def current() -> dict[str, Any]:
    stack = load_stack_file(HOMELAB)
    names = [n.name for n in stack.arda_nodes]
    return rollout.state(stack, dict.fromkeys(names, f"{IMAGE}:v1.12.4"), dict.fromkeys(names, "d1"))


def test_the_state_lists_every_machine_in_rollout_order() -> None:
    state = current()
    assert state["order"] == ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    assert (state["talosVersion"], state["kubernetesVersion"]) == ("v1.12.4", "v1.34.1")
    assert state["charts"] == {"cilium": "1.18.4", "argocd": "10.8.0"}  # read back by stacks.day2: no chart goes backwards
    assert state["nodes"]["gandalf"] == {
        "mac": "28:d2:44:30:00:01",
        "ip": "192.168.0.31",
        "role": "istari",
        "installer": f"{IMAGE}:v1.12.4",
        "patches": "d1",
        "generation": 0,
    }


def test_against_itself_nothing_changes() -> None:
    assert rollout.changes(current(), current()) == []
    assert rollout.describe(current(), current()) == "Arda: no change on any machine\n"


def test_a_talos_upgrade_lists_every_machine_control_planes_first() -> None:
    before, after = current(), current()
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.13.0"
    after["talosVersion"] = "v1.13.0"
    assert [(c.node, c.what, c.disruptive) for c in rollout.changes(before, after)] == [
        (n, ("Talos v1.12.4 -> v1.13.0",), True) for n in ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman")
    ]


def test_a_half_done_upgrade_lists_only_the_machines_still_behind() -> None:
    before, after = current(), current()
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.13.0"
    before["nodes"]["taniquetil"]["installer"] = f"{IMAGE}:v1.13.0"
    assert [c.node for c in rollout.changes(before, after)] == ["tirion", "alqualonde", "gandalf", "saruman"]


def test_kubernetes_config_address_schematic_new_and_removed_machines() -> None:
    before, after = current(), current()
    after["kubernetesVersion"] = "v1.35.0"
    assert {c.what for c in rollout.changes(before, after)} == {("Kubernetes v1.34.1 -> v1.35.0",)}
    after = current()
    after["nodes"]["saruman"]["patches"] = "d2"
    after["nodes"]["tirion"]["ip"] = "192.168.0.42"
    after["nodes"]["gandalf"]["installer"] = "factory.talos.dev/metal-installer/def:v1.12.4"
    assert [(c.node, c.what, c.disruptive) for c in rollout.changes(before, after)] == [
        ("tirion", ("address 192.168.0.22 -> 192.168.0.42",), False),
        ("gandalf", ("Talos extensions (a new schematic)",), True),
        ("saruman", ("machine config (a reboot only if Talos needs one for it)",), False),
    ]
    shrunk, grown = copy.deepcopy(before), copy.deepcopy(before)
    del shrunk["nodes"]["saruman"]
    shrunk["order"].remove("saruman")
    assert rollout.describe(before, shrunk) == "Arda: leaving the inventory: saruman\n"
    assert [c.what for c in rollout.changes(shrunk, grown)] == [("new: installs from maintenance mode",)]


def test_the_plan_reads_as_numbered_lines() -> None:
    before, after = current(), current()
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.12.5"
    assert rollout.describe(before, after).splitlines() == [
        "Arda: 5 machine(s) change, one at a time in this order, each checked healthy before the next (an upgrade, or a change Talos must reboot for, drains and reboots its machine):",
        "  1. taniquetil: Talos v1.12.4 -> v1.12.5",
        "  2. tirion: Talos v1.12.4 -> v1.12.5",
        "  3. alqualonde: Talos v1.12.4 -> v1.12.5",
        "  4. gandalf: Talos v1.12.4 -> v1.12.5",
        "  5. saruman: Talos v1.12.4 -> v1.12.5",
    ]
