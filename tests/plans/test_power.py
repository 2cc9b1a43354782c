"""plans.power: the magic packet, the sender's command, the Talos document that keeps WoL armed, the BMC's requests and steps."""

from __future__ import annotations

import shlex
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import power, talos
from stacks import StackConfig, load_stack_file
from stacks import power as power_rules
from stacks.model import Node
from tests.edit import edit, homelab_doc, write_stack

WOL = {"wakeOnLan": {"link": "enp0s25"}}
BMC = {"bmc": {"address": "192.168.0.5", "slot": 3}}
PASSWORDS = {"192.168.0.5": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}}


def stack(tmp_path: Path, **powers: dict[str, Any]) -> StackConfig:
    names = [n["name"] for n in homelab_doc()["config"]["iluvatar:nodes"]]
    changes: dict[str, Any] = {f"iluvatar:nodes[{names.index(n)}].power": p for n, p in powers.items()}
    for n, p in powers.items():
        if "bmc" in p:  # a BMC powers a module in a Turing Pi 2 slot: an RK1, not the homelab's x86 PC
            changes |= {f"iluvatar:nodes[{names.index(n)}].arch": "arm64", f"iluvatar:nodes[{names.index(n)}].board": "rk1"}
    if any("bmc" in p for p in powers.values()):
        changes["iluvatar:bmcPasswords"] = PASSWORDS
    return load_stack_file(write_stack(tmp_path, edit(homelab_doc(), changes)))


def node(s: StackConfig, name: str) -> Node:
    return next(n for n in s.nodes if n.name == name)


def test_the_magic_packet_is_six_ff_then_the_mac_sixteen_times() -> None:
    packet = power.magic_packet("28:d2:44:30:00:01")
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes([0x28, 0xD2, 0x44, 0x30, 0x00, 0x01]) * 16


def test_the_packet_goes_to_the_lans_broadcast_from_the_pi_holding_the_service_address(tmp_path: Path) -> None:
    s = stack(tmp_path, gandalf=WOL)
    assert power.broadcast(s, node(s, "gandalf")) == IPv4Address("192.168.0.255")
    # Whichever Pi runs the netboot pod (kube-vip moves the address), not the first valar.
    assert power.sender_address(s) == IPv4Address("192.168.0.14")
    assert s.ainur is not None and power.sender_address(s) == s.ainur.service_ip


def test_the_wake_command_is_python3_with_the_machine_only(tmp_path: Path) -> None:
    s = stack(tmp_path, gandalf=WOL)
    words = shlex.split(power.wake_command(s, node(s, "gandalf")))
    assert words == ["python3", "-c", power.WAKE_SCRIPT, "gandalf", "28:d2:44:30:00:01", "192.168.0.255", "192.168.0.31:50000"]
    # What the Pi's python3 runs: valid Python (3.8 on, Ubuntu's is newer), and the packet it builds is plans.power's.
    compile(power.WAKE_SCRIPT, "<wake>", "exec")
    assert 'packet = b"\\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16' in power.WAKE_SCRIPT
    # It asks first, a few tries each bounded: a machine that answers gets no packet.
    assert f"for attempt in range({power.ASK_TRIES}):" in power.WAKE_SCRIPT
    assert f"socket.create_connection((host, int(port)), timeout={power.ASK_SECONDS})" in power.WAKE_SCRIPT


def test_the_ethernet_config_arms_magic_packets_on_the_kernels_link(tmp_path: Path) -> None:
    s = stack(tmp_path, gandalf=WOL)
    doc = {"apiVersion": "v1alpha1", "kind": "EthernetConfig", "name": "enp0s25", "wakeOnLan": ["magic"]}
    assert power.ethernet_config(node(s, "gandalf")) == doc
    assert power.ethernet_config(node(s, "saruman")) is None
    docs = talos.node_documents(s, node(s, "gandalf"), "installer")
    assert [d for d in docs if d.get("kind") == "EthernetConfig"] == [doc]
    assert not [d for d in talos.node_documents(s, node(s, "saruman"), "installer") if d.get("kind") == "EthernetConfig"]
    patch = talos.node_patches(s, node(s, "gandalf"), "installer")[0]
    assert doc in list(yaml.safe_load_all(patch))


def test_a_bmc_machine_gets_no_talos_document(tmp_path: Path) -> None:
    s = stack(tmp_path, gandalf=BMC)
    assert power.ethernet_config(node(s, "gandalf")) is None


def test_the_rules_know_the_alias_talos_gives_the_link() -> None:
    assert power_rules.TALOS_LINK_ALIAS == talos.LINK


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (power.power_query(), "/api/bmc?opt=get&type=power"),
        (power.power_on_query(1), "/api/bmc?opt=set&type=power&node1=1"),
        (power.power_on_query(4), "/api/bmc?opt=set&type=power&node4=1"),
        # The flash API numbers slots from 0; the URL is percent-encoded.
        (
            power.flash_query(3, "https://factory.talos.dev/image/abc/v1.12.4/metal-arm64.raw.xz"),
            "/api/bmc?opt=set&type=flash&node=2&file=https%3A%2F%2Ffactory.talos.dev%2Fimage%2Fabc%2Fv1.12.4%2Fmetal-arm64.raw.xz",
        ),
        (power.flash_status_query(), "/api/bmc?opt=get&type=flash"),
        (power.AUTHENTICATE, "/api/bmc/authenticate"),
    ],
)
def test_the_bmc_queries_are_bmcds(query: str, expected: str) -> None:
    assert query == expected


def test_the_power_on_sequence() -> None:
    login = [("POST", "/api/bmc/authenticate"), ("GET", "/api/bmc?opt=get&type=power")]
    assert power.power_on_requests(2, already_on=True) == login
    assert power.power_on_requests(2, already_on=False) == [
        *login,
        ("GET", "/api/bmc?opt=set&type=power&node2=1"),
        ("GET", "/api/bmc?opt=get&type=power"),
    ]
    assert power.flash_requests(2, "https://x/y.raw.xz") == [
        ("GET", "/api/bmc?opt=set&type=flash&node=1&file=https%3A%2F%2Fx%2Fy.raw.xz"),
        ("GET", "/api/bmc?opt=get&type=flash"),
    ]


def test_the_bmc_steps(tmp_path: Path) -> None:
    s = stack(tmp_path, gandalf=BMC)
    on = power.bmc_step(node(s, "gandalf"))
    assert on.command == ".venv/bin/iluvatar power bmc --machine gandalf --bmc https://192.168.0.5 --slot 3 --user root --timeout 5m"
    assert (on.timeout, on.engine_timeout) == ("5m", "10m")
    flash = power.bmc_step(node(s, "gandalf"), "https://factory.talos.dev/image/abc/v1.12.4/metal-arm64.raw.xz")
    assert flash.command == (
        ".venv/bin/iluvatar power bmc --machine gandalf --bmc https://192.168.0.5 --slot 3 --user root "
        "--flash https://factory.talos.dev/image/abc/v1.12.4/metal-arm64.raw.xz --talos 192.168.0.31:50000 --probe 300s --timeout 45m"
    )
    assert (flash.timeout, flash.engine_timeout) == ("45m", "50m")
    assert "192.168.0.31:50000" in flash.waits_for
