"""Hypothesis strategies: random valid stacks, built so every rule holds by construction."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

ARDA_BOARDS = {"amd64": ["generic-x86"], "arm64": ["rk1", "rpi4", "generic-arm64"]}
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q test"
AINUR_BOARDS = [("rpi5", "arm64"), ("rpi4", "arm64"), ("generic-x86", "amd64")]


def spell_mac(value: int, style: int) -> str:
    h = f"{value:012x}"
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    return [":".join(pairs), "-".join(pairs).upper(), f"{h[0:4]}.{h[4:8]}.{h[8:12]}", h.upper()][style % 4]


# Install disk selectors a homelabber writes (any set of Talos's InstallDiskSelector fields).
DISK_SELECTORS = st.fixed_dictionaries(
    {},
    optional={
        "size": st.sampled_from([">= 100GB", "<= 2TB", "512GB", "> 64GiB"]),
        "model": st.sampled_from(["Samsung SSD 870*", "WDC WDS*", "KINGSTON*"]),
        "serial": st.sampled_from(["S5STNF0R*", "2142E5*"]),
        "type": st.sampled_from(["ssd", "hdd", "nvme", "sd"]),
        "wwid": st.sampled_from(["naa.5002538*", "eui.0025*"]),
        "busPath": st.sampled_from(["/pci0000:00/*", "/pci0000:00/0000:00:17.0/*"]),
    },
).filter(bool)


@st.composite
def raw_stacks(draw: st.DrawFn, vlans: bool = False, selectors: bool = False) -> dict[str, Any]:
    """Raw config (as a stack file holds it) for a valid stack on a random LAN.

    With `vlans`, some workers sit on a routed VLAN; with `selectors`, some Arda machines (and the
    generic worker) install to a disk selector instead of a path.
    """
    prefix = draw(st.integers(min_value=20, max_value=26))
    base = (10 << 24) | draw(st.integers(min_value=0, max_value=(1 << 24) - 1))
    lan = IPv4Network((base, prefix), strict=False)
    hosts = lan.num_addresses - 2

    def at(offset: int) -> str:
        return str(lan.network_address + offset)

    a, b, c, d = sorted(draw(st.lists(st.integers(min_value=2, max_value=hosts), min_size=4, max_size=4, unique=True)))
    assume(d - c >= 2)  # the pool's top two addresses are the Envoy gateways'
    dhcp, pool = (a, b - 1), (c, d - 1)
    valinor = draw(st.sampled_from([1, 3, 5]))
    istari = draw(st.integers(min_value=0, max_value=4))
    with_ainur = draw(st.booleans())
    valar = draw(st.sampled_from([1, 3])) if with_ainur else 0
    maiar = draw(st.integers(min_value=0, max_value=2)) if with_ainur else 0
    roles = ["valinor"] * valinor + ["istari"] * istari + ["valar"] * valar + ["maiar"] * maiar
    free = [o for o in range(1, hosts + 1) if not (dhcp[0] <= o <= dhcp[1] or pool[0] <= o <= pool[1])]
    need = 1 + 3 + len(roles)  # gateway, two VIPs, the Ainur service address, nodes
    assume(len(free) >= need)
    chosen = draw(st.lists(st.sampled_from(free), min_size=need, max_size=need, unique=True))
    gateway, ainur_vip, arda_vip, service_ip, *node_offsets = chosen
    # 47 random bits with a 0 inserted at the multicast bit: unique unicast MACs.
    macs = draw(st.lists(st.integers(min_value=1, max_value=(1 << 47) - 1), min_size=len(roles), max_size=len(roles), unique=True))
    nodes: list[dict[str, Any]] = []
    for i, (role, offset, mac) in enumerate(zip(roles, node_offsets, macs, strict=True)):
        if role in ("valar", "maiar"):
            board, arch = draw(st.sampled_from(AINUR_BOARDS))
        else:
            arch = draw(st.sampled_from(sorted(ARDA_BOARDS)))
            board = draw(st.sampled_from(ARDA_BOARDS[arch]))
        mac_int = ((mac >> 40) << 41) | (mac & ((1 << 40) - 1))
        nodes.append(
            {
                "name": f"node-{i}",
                "role": role,
                "arch": arch,
                "board": board,
                "mac": spell_mac(mac_int, draw(st.integers(0, 3))),
                "ip": at(offset),
                "installDisk": "/dev/sda",
            }
        )
    vlan_list: list[dict[str, Any]] = []
    if vlans:
        # 172.16/12 never overlaps the LAN (inside 10/8); workers only: control planes hold the VIP on the LAN.
        vlan_net = IPv4Network((draw(st.integers(min_value=0xAC100000 >> 8, max_value=0xAC1FFFFF >> 8)) << 8, 24))
        vlan_list.append({"id": draw(st.integers(1, 4094)), "name": "lab", "cidr": str(vlan_net), "gateway": str(vlan_net.network_address + 1)})
        for k, node in enumerate(nodes):
            if node["role"] == "istari" and draw(st.booleans()):
                node["vlan"] = "lab"
                node["ip"] = str(vlan_net.network_address + 10 + k)
    if selectors:
        for node in nodes:
            if node["role"] in ("valinor", "istari") and draw(st.booleans()):
                node["installDisk"] = draw(DISK_SELECTORS)
    nodes = draw(st.permutations(nodes))
    raw: dict[str, Any] = {
        "iluvatar:network": {
            "lan": str(lan),
            "gateway": at(gateway),
            "dns": [at(gateway)],
            "dhcpRange": {"start": at(dhcp[0]), "end": at(dhcp[1])},
            "loadBalancerPool": {"start": at(pool[0]), "end": at(pool[1])},
            "domain": "lab.home.arpa",
            **({"vlans": vlan_list} if vlan_list else {}),
        },
        "iluvatar:arda": {
            "clusterName": "arda",
            "vip": at(arda_vip),
            "talosVersion": "v1.12.4",
            "kubernetesVersion": "v1.34.1",
            "allowSchedulingOnControlPlanes": istari == 0,
        },
        "iluvatar:nodes": list(nodes),
    }
    if with_ainur:
        netboot: dict[str, Any] = {
            "mode": draw(st.sampled_from(["dhcp", "proxy"])),
            "unknownMacs": draw(st.sampled_from(["ignore", "generic-worker"])),
        }
        if netboot["unknownMacs"] == "generic-worker":
            disk: Any = draw(DISK_SELECTORS) if selectors and draw(st.booleans()) else "/dev/sda"
            netboot["genericWorker"] = {"board": draw(st.sampled_from(["generic-x86", "generic-arm64"])), "installDisk": disk}
        raw["iluvatar:ainur"] = {"vip": at(ainur_vip), "k3sVersion": "v1.33.6+k3s1", "sshAuthorizedKeys": [SSH_KEY], "netboot": netboot}
        raw["iluvatar:ainur"]["serviceIp"] = at(service_ip)
    return raw


def lan_of(raw: dict[str, Any]) -> IPv4Network:
    return IPv4Network(raw["iluvatar:network"]["lan"])


def ip(value: str) -> IPv4Address:
    return IPv4Address(value)
