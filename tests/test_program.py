"""The real __main__.py composition, run for each stack file under the Pulumi mock runtime."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from iluvatar.simulate import Simulation, simulate
from stacks import read_stack_file
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack


def test_homelab_registers_ea_with_all_eight_reservations() -> None:
    sim = simulate(read_stack_file(HOMELAB))
    ea = sim.one("iluvatar:network:Ea", "ea")
    assert ea.parent == "urn:pulumi:homelab::iluvatar::pulumi:pulumi:Stack::iluvatar-homelab"
    assert not ea.custom
    assert [(r["name"], r["ip"], r["hostname"]) for r in sim.outputs["reservations"]] == [
        ("manwe", "192.168.0.11", "manwe.iluvatar.home.arpa"),
        ("eonwe", "192.168.0.12", "eonwe.iluvatar.home.arpa"),
        ("ilmare", "192.168.0.13", "ilmare.iluvatar.home.arpa"),
        ("taniquetil", "192.168.0.21", "taniquetil.iluvatar.home.arpa"),
        ("tirion", "192.168.0.22", "tirion.iluvatar.home.arpa"),
        ("alqualonde", "192.168.0.23", "alqualonde.iluvatar.home.arpa"),
        ("gandalf", "192.168.0.31", "gandalf.iluvatar.home.arpa"),
        ("saruman", "192.168.0.32", "saruman.iluvatar.home.arpa"),
    ]
    assert sim.outputs["vips"] == {"ainur": "192.168.0.10", "arda": "192.168.0.20"}
    assert sim.outputs["loadBalancerPool"] == {"start": "192.168.0.220", "end": "192.168.0.239"}
    assert sim.outputs["lan"] == "192.168.0.0/24"


def test_rk1_registers_ea_with_four_arda_reservations() -> None:
    sim = simulate(read_stack_file(RK1))
    root = "urn:pulumi:rk1::iluvatar::pulumi:pulumi:Stack::iluvatar-rk1"
    assert sorted((r.type, r.name) for r in sim.registrations if r.parent == root) == [
        ("iluvatar:arda:TalosCluster", "arda"),
        ("iluvatar:network:Ea", "ea"),
    ]
    assert {r["cluster"] for r in sim.outputs["reservations"]} == {"arda"}
    assert len(sim.outputs["reservations"]) == 4
    assert sim.outputs["vips"] == {"turing": "10.10.0.10"}


def test_invalid_config_stops_the_program_before_any_resource(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[3].ip": "192.168.1.5", "iluvatar:arda.vip": "192.168.0.150"})
    sf = read_stack_file(write_stack(tmp_path, doc, stack="broken"))
    sim = Simulation(stack="broken")
    with pytest.raises(pulumi.RunError) as err:
        simulate(sf, record=sim)
    assert sim.registrations == []
    assert str(err.value).splitlines() == [
        "stack broken: 2 problems:",
        "  iluvatar:arda.vip: 192.168.0.150 is inside network.dhcpRange 192.168.0.100-192.168.0.199, so DHCP could hand it to another machine",
        "  iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24",
    ]


def test_recorder_sees_registrations_of_a_valid_run() -> None:
    """Guards the test above: an empty record must mean nothing was registered, not a blind recorder."""
    sim = Simulation(stack="homelab")
    simulate(read_stack_file(HOMELAB), record=sim)
    assert len(sim.registrations) == 59
