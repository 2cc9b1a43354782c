"""Hypothesis strategies: random valid stacks, built so every rule holds by construction.

A stack may have the Ainur or not, VLANs with machines on them, and a load-balancer pool of
exactly the two addresses the Envoy gateways take. A property that needs one of these asks for
it (`raw_stacks(ainur=True)`) rather than returning early on the examples without it. Each
example reports what it has with `hypothesis.event`, so `pytest --hypothesis-show-statistics`
shows how many examples of each kind a property really checked.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypothesis import event
from hypothesis import strategies as st

from stacks import releases
from stacks.rules import K3S_NETWORKS, TALOS_NETWORKS

ARDA_BOARDS = {"amd64": ["generic-x86"], "arm64": ["rk1", "rpi4", "rpi5", "generic-arm64"]}
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q test"
AINUR_BOARDS = [("rpi5", "arm64"), ("rpi4", "arm64"), ("generic-x86", "amd64")]
VLAN_NAMES = ["iot", "cameras", "guests", "lab"]
# Install disk selectors a homelabber writes (any set of Talos's InstallDiskSelector fields).
DISK_SELECTORS = st.fixed_dictionaries(
    {},
    optional={
        "size": st.sampled_from([">= 100GB", "<= 2TB", "== 512GB", "> 64GiB"]),
        "model": st.sampled_from(["Samsung SSD 870*", "WDC WDS*", "KINGSTON*"]),
        "serial": st.sampled_from(["S5STNF0R*", "2142E5*"]),
        "type": st.sampled_from(["ssd", "hdd", "nvme", "sd"]),
        "wwid": st.sampled_from(["naa.5002538*", "eui.0025*"]),
        "busPath": st.sampled_from(["/pci0000:00/*", "/pci0000:00/0000:00:17.0/*"]),
    },
).filter(bool)


def spell_mac(value: int, style: int) -> str:
    h = f"{value:012x}"
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    return [":".join(pairs), "-".join(pairs).upper(), f"{h[0:4]}.{h[4:8]}.{h[8:12]}", h.upper()][style % 4]


@st.composite
def vlan_lists(draw: st.DrawFn, min_size: int = 0) -> list[dict[str, Any]]:
    """Up to three routed VLANs, each in its own /24 of 172.16.0.0/12 (the generated LANs are in 10.0.0.0/8)."""
    count = draw(st.integers(min_value=min_size, max_value=3))
    # From 2: 1 is the switches' default, untagged VLAN, which validate refuses as a VLAN (stacks.model.Vlan).
    ids = draw(st.lists(st.integers(min_value=2, max_value=4094), min_size=count, max_size=count, unique=True))
    names = draw(st.lists(st.sampled_from(VLAN_NAMES), min_size=count, max_size=count, unique=True))
    blocks = draw(st.lists(st.integers(min_value=0, max_value=(1 << 12) - 1), min_size=count, max_size=count, unique=True))
    vlans = []
    for vid, name, block in zip(ids, names, blocks, strict=True):
        prefix = draw(st.integers(min_value=24, max_value=28))
        base = int(IPv4Address("172.16.0.0")) + (block << 8)
        cidr = IPv4Network((base, prefix))
        # The VLAN's router at its first address: a Talos machine on it needs a default route.
        vlans.append({"id": vid, "name": name, "cidr": str(cidr), "gateway": str(cidr.network_address + 1)})
    return vlans


CLUSTER_NETWORKS = (*(net for _, net in K3S_NETWORKS), *TALOS_NETWORKS.values())


@st.composite
def raw_stacks(
    draw: st.DrawFn,
    ainur: bool | None = None,
    vlans: bool | None = None,
    two_address_pool: bool | None = None,
    selectors: bool = False,
    identity: bool = False,
) -> dict[str, Any]:
    """Raw config (as a stack file holds it) for a valid stack on a random LAN.

    `ainur`, `vlans` (VLANs with at least one worker on them) and `two_address_pool` force a
    feature on or off; None draws it. Only istari sit on VLANs: a control plane holds the Arda
    VIP on the LAN. With `selectors`, some Arda machines (and the generic worker) install to a
    disk selector instead of a path. With `identity`, a stack with the Ainur may sign in with Dex
    (`iluvatar:identity`, a static admin; its secret as `secure:`, which `parse_stack` reads as `Secure`).
    """
    prefix = draw(st.integers(min_value=20, max_value=26))
    # Not over a cluster's own pod or Service network (k3s's and Talos's defaults), which validation refuses.
    lan = draw(
        st.integers(min_value=0, max_value=(1 << 24) - 1)
        .map(lambda offset: IPv4Network(((10 << 24) | offset, prefix), strict=False))
        .filter(lambda net: not any(net.overlaps(cluster) for cluster in CLUSTER_NETWORKS))
    )
    hosts = lan.num_addresses - 2

    def at(offset: int) -> str:
        return str(lan.network_address + offset)

    valinor = draw(st.sampled_from([1, 3, 5]))
    istari = draw(st.integers(min_value=0, max_value=4))
    with_ainur = draw(st.booleans()) if ainur is None else ainur
    valar = draw(st.sampled_from([1, 3])) if with_ainur else 0
    maiar = draw(st.integers(min_value=0, max_value=2)) if with_ainur else 0
    roles = ["valinor"] * valinor + ["istari"] * istari + ["valar"] * valar + ["maiar"] * maiar

    # The DHCP range and the pool take at most half the LAN (either half), so the statics always fit.
    a, b, c = sorted(draw(st.lists(st.integers(min_value=2, max_value=hosts // 2), min_size=3, max_size=3, unique=True)))
    two = draw(st.booleans()) if two_address_pool is None else two_address_pool
    size = 2 if two else draw(st.integers(min_value=3, max_value=max(3, hosts // 2 - c + 1)))
    dhcp, pool = (a, b - 1), (c, c + size - 1)
    if draw(st.booleans()):  # or in the top half: mirrored, so a pool may end on the last host
        dhcp, pool = (hosts + 1 - dhcp[1], hosts + 1 - dhcp[0]), (hosts + 1 - pool[1], hosts + 1 - pool[0])
    event(f"load-balancer pool: {'two addresses' if size == 2 else 'more than two'}")

    vlan_list = draw(vlan_lists(min_size=1)) if vlans else ([] if vlans is False else draw(vlan_lists()))
    on_vlan: list[str | None] = [None] * len(roles)
    workers = [k for k, role in enumerate(roles) if role == "istari"]
    if vlans and not workers:  # a VLAN machine was asked for: make one worker
        roles.append("istari")
        on_vlan.append(None)
        workers.append(len(roles) - 1)
    if vlan_list:
        for k in workers:
            on_vlan[k] = draw(st.sampled_from([None, *(v["name"] for v in vlan_list)]))
        if vlans and all(v is None for v in on_vlan):
            on_vlan[draw(st.sampled_from(workers))] = vlan_list[0]["name"]
    vlan_machines = sum(v is not None for v in on_vlan)
    event(f"VLANs: {len(vlan_list)}, machines on them: {'none' if not vlan_machines else 'some'}")
    event(f"Ainur: {'yes' if with_ainur else 'no'}")

    lan_nodes = sum(v is None for v in on_vlan)
    free = [o for o in range(1, hosts + 1) if not (dhcp[0] <= o <= dhcp[1] or pool[0] <= o <= pool[1])]
    with_identity = identity and with_ainur and draw(st.booleans())
    need = 1 + 3 + lan_nodes + with_identity  # gateway, two VIPs, the Ainur service address, the LAN's nodes, Dex's front door
    assert len(free) >= need, "the pools take at most half the LAN and a /26 has 62 hosts: the statics always fit"
    gateway, ainur_vip, arda_vip, service_ip, *lan_offsets = draw(st.lists(st.sampled_from(free), min_size=need, max_size=need, unique=True))
    front_door = lan_offsets.pop() if with_identity else None
    vlan_ips: dict[str, list[str]] = {}
    for v in vlan_list:
        cidr = IPv4Network(v["cidr"])
        wanted = sum(name == v["name"] for name in on_vlan)
        offsets = draw(st.lists(st.integers(min_value=2, max_value=cidr.num_addresses - 2), min_size=wanted, max_size=wanted, unique=True))
        vlan_ips[v["name"]] = [str(cidr.network_address + o) for o in offsets]
    # 47 random bits with a 0 inserted at the multicast bit: unique unicast MACs.
    macs = draw(st.lists(st.integers(min_value=1, max_value=(1 << 47) - 1), min_size=len(roles), max_size=len(roles), unique=True))
    nodes: list[dict[str, Any]] = []
    lan_iter = iter(lan_offsets)
    for i, (role, vlan, mac) in enumerate(zip(roles, on_vlan, macs, strict=True)):
        if role in ("valar", "maiar"):
            board, arch = draw(st.sampled_from(AINUR_BOARDS))
        else:
            arch = draw(st.sampled_from(sorted(ARDA_BOARDS)))
            board = draw(st.sampled_from(ARDA_BOARDS[arch]))
        mac_int = ((mac >> 40) << 41) | (mac & ((1 << 40) - 1))
        node: dict[str, Any] = {
            "name": f"node-{i}",
            "role": role,
            "arch": arch,
            "board": board,
            "mac": spell_mac(mac_int, draw(st.integers(0, 3))),
            "ip": at(next(lan_iter)) if vlan is None else vlan_ips[vlan].pop(),
            "installDisk": "/dev/sda",
        }
        if vlan is not None:
            node["vlan"] = vlan
        nodes.append(node)
    if selectors:
        for node in nodes:
            if node["role"] in ("valinor", "istari") and draw(st.booleans()):
                node["installDisk"] = draw(DISK_SELECTORS)
    nodes = draw(st.permutations(nodes))
    network: dict[str, Any] = {
        "lan": str(lan),
        "gateway": at(gateway),
        "dns": [at(gateway)],
        "dhcpRange": {"start": at(dhcp[0]), "end": at(dhcp[1])},
        "loadBalancerPool": {"start": at(pool[0]), "end": at(pool[1])},
        "domain": "lab.home.arpa",
    }
    if vlan_list:
        network["vlans"] = vlan_list
    raw: dict[str, Any] = {
        "iluvatar:network": network,
        "iluvatar:arda": {
            "clusterName": "arda",
            "vip": at(arda_vip),
            "talosVersion": releases.TALOS,
            "kubernetesVersion": releases.KUBERNETES,
            "allowSchedulingOnControlPlanes": "istari" not in roles,
        },
        "iluvatar:nodes": list(nodes),
    }
    if with_ainur:
        netboot: dict[str, Any] = {
            "mode": draw(st.sampled_from(["dhcp", "proxy"])),
            "unknownMacs": draw(st.sampled_from(["ignore", "generic-worker"])),
        }
        if netboot["mode"] == "dhcp":
            # A first deployment in dhcp mode names the router's pool (stacks.netboot_mode.check): none, apart from any range.
            netboot["routerPool"] = "none"
        if netboot["unknownMacs"] == "generic-worker":
            disk: Any = draw(DISK_SELECTORS) if selectors and draw(st.booleans()) else "/dev/sda"
            netboot["genericWorker"] = {"board": draw(st.sampled_from(["generic-x86", "generic-arm64"])), "installDisk": disk}
        raw["iluvatar:ainur"] = {"vip": at(ainur_vip), "k3sVersion": releases.K3S, "sshAuthorizedKeys": [SSH_KEY], "netboot": netboot}
        raw["iluvatar:ainur"]["serviceIp"] = at(service_ip)
    if front_door is not None:
        event("identity: yes")
        role = draw(st.sampled_from(["cluster-admin", "admin", "edit", "view"]))
        raw["iluvatar:identity"] = {
            "ip": at(front_door),
            "connector": {"type": "static", "email": "admin@lab.example", "groups": ["admins"]},
            "groups": [{"group": "admins", "clusterRole": role}],
        }
        raw["iluvatar:identityConnectorSecret"] = {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}
    return raw


def lan_of(raw: dict[str, Any]) -> IPv4Network:
    return IPv4Network(raw["iluvatar:network"]["lan"])


def subnet_of(raw: dict[str, Any], node: dict[str, Any]) -> IPv4Network:
    """The subnet a generated node lives on: its VLAN's, or the LAN."""
    if node.get("vlan") is None:
        return lan_of(raw)
    return next(IPv4Network(v["cidr"]) for v in raw["iluvatar:network"]["vlans"] if v["name"] == node["vlan"])


def ip(value: str) -> IPv4Address:
    return IPv4Address(value)
