"""Stack rules: the checks that relate several parts of the config (addresses, roles, counts).

Each rule sees whatever sections parsed, so one broken node does not hide the problems
of the others, and yields `Problem`s naming the exact config path and offending value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_interface, ip_network
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml

from stacks import cel, encryption, netboot_mode, pins, releases
from stacks.addresses import CLIENTS, Held, IpArg, ip_args, routers
from stacks.apps import app_problems, host_network_problems
from stacks.boards import AINUR_ROLES, ARDA_ROLES, BOARDS, discovery_boards, version_tuple
from stacks.bus_paths import by_path_pattern, can_match, kernel_name_pattern
from stacks.categories import known_categories
from stacks.credentials import masked_kernel_arg
from stacks.disk_ids import by_id_has_serial as _by_id_has_serial
from stacks.disk_ids import by_id_has_wwid as _by_id_has_wwid
from stacks.disk_ids import by_id_name as _by_id_name
from stacks.disk_ids import by_path_one_disk, glob, namespace_links, nvme_wwid_of_link, nvme_wwid_parts, one_wwn, udev_spelling
from stacks.disk_ids import one_nvme_namespace as _one_nvme_namespace
from stacks.edge import edge_problems
from stacks.errors import InDhcpRange, Problem, show
from stacks.model import AddressRange, Ainur, App, Arda, Cloudflare, DiskSelector, Edge, Network, Node
from stacks.pi_revision import pi_revision
from stacks.power import TALOS_LINK_ALIAS
from stacks.reach import Clients, unreachable
from stacks.secrets import config_path
from stacks.talos_ports import KUBEPRISM_PORT

NET = "iluvatar:network"
NODES = "iluvatar:nodes"

# Kubernetes minors each Talos minor a stack may ask for supports (stacks.releases.TALOS_MINORS: machinery's
# compatibility packages; tests/stacks/test_releases.py reads them). Talos 1.13 and 1.14: the Talos acceptance check
# (tools/talos-check) validates every config with the provider's machinery (v1.13.0) and a 1.14.1 node's; Talos 1.12
# is only where a path starts (stacks.day2).
TALOS_KUBERNETES: dict[tuple[int, int], tuple[int, int]] = {row.minor: row.kubernetes for row in releases.TALOS_MINORS if row.target}


@dataclass(frozen=True)
class Taken:
    """What an address suggested as free must not be: every fixed address of the stack's one table (stacks.addresses:
    the machines, the VIPs, the front door, Headscale, the raw-port apps, and the LAN's devices the stack names, its
    NAS, NFS server, DNS servers and BMCs), and the ranges lent besides network.dhcpRange and the load-balancer pool
    (the discovery pool, the router's old pool), whose addresses the stack's own rules refuse to a machine or a VIP."""

    addresses: frozenset[IPv4Address] = frozenset()
    lent: tuple[AddressRange, ...] = ()

    def __contains__(self, ip: object) -> bool:
        return ip in self.addresses or (isinstance(ip, IPv4Address) and any(ip in r for r in self.lent))


@dataclass(frozen=True)
class Parsed:
    """The sections that parsed; None where a section is absent or broken."""

    network: Network | None
    ainur: Ainur | None
    ainur_set: bool
    arda: Arda | None
    nodes: Sequence[tuple[int, Node]]
    nodes_complete: bool  # every node entry parsed, so counting rules are meaningful
    apps: Sequence[tuple[int, App]] = ()
    edge: Edge | None = None  # None: iluvatar:edge is broken (absent means Edge())
    cloudflare: Cloudflare | None = None
    cloudflare_set: bool = False
    cloudflare_token_set: bool = False
    extra_categories: Sequence[str] = ()  # categories the stack adds to stacks.categories.DEFAULT_CATEGORIES
    taken: Taken = Taken()  # what stacks.load's address table holds, which a suggested free address avoids


def node_path(i: int, field: str = "") -> str:
    return f"{NODES}[{i}]" + (f".{field}" if field else "")


def check(p: Parsed) -> list[Problem]:
    problems: list[Problem] = []
    if p.network is not None:
        problems += _network(p.network)
        problems += _cluster_networks(p, p.network)
    problems += _address_filters(p)
    problems += _vips(p)
    problems += _nodes(p)
    problems += _discovery_names(p)
    if p.arda is not None:
        versions = _arda_versions(p.arda)
        problems += versions
        if not any(v.path == "iluvatar:arda.kubernetesVersion" for v in versions):
            # A minor Talos does not run is said once, as that.
            problems += _unreleased("iluvatar:arda.kubernetesVersion", p.arda.kubernetes_version, "Kubernetes")
        problems += _cilium_version(p.arda)
        problems += _cilium_values(p.arda)
    if p.ainur is not None:
        problems += _unreleased("iluvatar:ainur.k3sVersion", p.ainur.k3s_version, "k3s")
    if p.nodes_complete:
        problems += _counts(p)
    problems += _talos_patches(p)
    problems += _component_images(p)
    problems += _etcd_image(p)
    problems += _kernel_args(p)
    problems += _kernel_ip(p)
    problems += _encryption(p)
    problems += _netboot(p)
    problems += _edge(p)
    problems += _talos_control_args(p)
    problems += _cilium_pins(p)
    return problems


def _edge(p: Parsed) -> list[Problem]:
    """The edge's modes and addresses (stacks.edge) and the app registry (stacks.apps)."""
    out: list[Problem] = []
    taken = {n.ip: f"nodes[{i}].ip ({n.name})" for i, n in p.nodes}
    taken.update({ip: path.removeprefix("iluvatar:") for path, ip in _vip_list(p)})
    if p.edge is not None:
        out += edge_problems(p.edge, p.network, p.cloudflare, p.cloudflare_set, p.cloudflare_token_set, p.ainur_set, taken, has_apps=bool(p.apps))
    # With iluvatar:edge broken, its own errors are reported; an external app is not blamed for them.
    ingress = p.edge.ingress(p.cloudflare_set) if p.edge is not None else "cloudflare-tunnel"
    out += app_problems(p.apps, p.network, ingress, known_categories(p.extra_categories), _zone_names(p))
    out += host_network_problems(p.apps, p.nodes, p.nodes_complete)
    return out


def _builtin_names(p: Parsed) -> dict[str, str]:
    """The internal zone's names the program itself gives (plans.network.vip_names, plans.netboot.dns_records, the
    gateways of plans.network.gateway_addresses), by label under network.domain, and what owns each. A machine, an app
    or identity's names are checked against this one table, so a name the program adds here is refused for all of
    them."""
    names: dict[str, str] = {}
    if p.arda is not None:
        names[p.arda.cluster_name] = "the Arda VIP's name (arda.clusterName)"
    names["envoy-external"] = names["envoy-internal"] = "an Envoy gateway's name"
    if p.ainur_set:
        names["ainur"] = "the Ainur VIP's name"
        names["netboot"] = "ainur.serviceIp's name"
    if p.ainur is not None and p.ainur.git_mirror is not None:
        names["git"] = "the Git mirror's name"
    return names


def _zone_names(p: Parsed) -> dict[str, str]:
    """The internal zone's names that are not apps nor identity's (plans.netboot.dns_records), and what owns each: the
    machines' and the program's own (`_builtin_names`)."""
    if p.network is None:
        return {}
    domain = p.network.domain
    names = {f"{n.name}.{domain}": f"the machine {n.name}'s name (nodes[{i}].name)" for i, n in p.nodes}
    names.update({f"{label}.{domain}": owner for label, owner in _builtin_names(p).items()})
    return names


def _tiny_vlan(path: str, cidr: IPv4Network) -> Problem:
    """A VLAN of one or two addresses. A /31 has no network or broadcast address (RFC 3021: both are the two ends of a
    point-to-point link), so its gateway is no edge; what is wrong is that a VLAN is a subnet its router serves to the
    devices on it (stacks.model.Vlan), and a /31 holds the router and one device at most, a /32 the router alone."""
    room = (
        "two addresses, the two ends of a point-to-point link (RFC 3021: a /31 has no network or broadcast address), room for "
        "its router and one device at most"
        if cidr.prefixlen == 31
        else "one address, room for its router alone"
    )
    return Problem(
        path, f"{cidr} is {room}: too small for a VLAN; write the whole subnet its router serves on it, e.g. {cidr.supernet(new_prefix=24)}"
    )


def _edge_addresses(net: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    return net.network_address, net.broadcast_address


def free_address(net: Network, taken: Container[IPv4Address] = ()) -> IPv4Address | None:
    """The LAN's first host address a machine or a VIP may take: not the gateway, outside the DHCP range and the
    load-balancer pool, and no address in `taken` (as plans.ipam.free_static picks a new machine's)."""
    first, last = int(net.lan.network_address) + 1, int(net.lan.broadcast_address) - 1
    for i in range(first, last + 1):
        ip = IPv4Address(i)
        if ip != net.gateway and ip not in net.dhcp_range and ip not in net.load_balancer_pool and ip not in taken:
            return ip
    return None


def _write_static(net: Network, taken: Container[IPv4Address]) -> str:
    """The fix of a static address in the wrong place: where to write it, with the first free one."""
    free = free_address(net, taken)
    where = f"write an address inside network.lan {net.lan}, outside network.dhcpRange and network.loadBalancerPool"
    return f"{where}, e.g. {free}" if free is not None else f"{where} (none is free: widen the LAN or shrink a pool)"


def _address_in_lan(path: str, ip: IPv4Address, net: Network, what: str = "", taken: Container[IPv4Address] = ()) -> Iterator[Problem]:
    """Where a host address on the LAN must not be: outside it, on its edges, on the gateway."""
    fix = f"write the router's address, inside network.lan {net.lan}" if what == "gateway" else _write_static(net, taken)
    if ip not in net.lan:
        yield Problem(path, f"{ip} is outside network.lan {net.lan}; {fix}")
    elif ip in _edge_addresses(net.lan):
        kind = "network" if ip == net.lan.network_address else "broadcast"
        yield Problem(path, f"{ip} is the {kind} address of network.lan {net.lan}, which no host can have; {fix}")
    elif ip == net.gateway and what != "gateway":
        yield Problem(path, f"{ip} is network.gateway, the router's; {fix}")


def _static_address(path: str, ip: IPv4Address, net: Network, taken: Container[IPv4Address] = ()) -> Iterator[Problem]:
    """A static address (node or VIP) must also stay out of the pools others hand out. `taken`: the stack's other fixed
    addresses and lent ranges (a `Taken`), which the suggested fix avoids."""
    yield from _address_in_lan(path, ip, net, taken=taken)
    if ip in net.dhcp_range:
        yield InDhcpRange(
            path,
            f"{ip} is inside network.dhcpRange {net.dhcp_range}, so DHCP could hand it to another machine; {_write_static(net, taken)}",
            str(ip),
        )
    if ip in net.load_balancer_pool:
        yield Problem(
            path, f"{ip} is inside network.loadBalancerPool {net.load_balancer_pool}, so a Service could take it; {_write_static(net, taken)}"
        )


def dhcp_range_once(problems: Sequence[Problem], net: Network | None, taken: Taken) -> list[Problem]:
    """Two or more of the stack's fixed addresses inside network.dhcpRange are the range's mistake (one drawn over them,
    or the router's pool copied without looking), said once at network.dhcpRange with a range clear of them, not once
    per address with a fix each that the next address's fix clashes with. One alone keeps its own message."""
    inside = [p for p in problems if isinstance(p, InDhcpRange)]
    if net is None or len(inside) < 2:
        return list(problems)
    named = ", ".join(f"{p.path.removeprefix('iluvatar:')} ({p.address})" for p in inside)
    clear = _clear_range(net, taken, {IPv4Address(p.address) for p in inside})
    fix = (
        f"write a range clear of them, e.g. {{start: {clear.start}, end: {clear.end}}} (the LAN's longest run of free addresses"
        f"{'' if clear.size() >= net.dhcp_range.size() else f', {clear.size()} of the {net.dhcp_range.size()} it has now'}), and set the "
        "router's DHCP pool to it in proxy mode"
        if clear is not None
        else "give the fixed addresses room outside it (no run of free addresses is left on the LAN: widen it or shrink a pool)"
    )
    merged = Problem(
        f"{NET}.dhcpRange",
        f"{net.dhcp_range} holds {len(inside)} of the stack's fixed addresses: {named}; DHCP could hand any of them to another machine; {fix}",
    )
    return [p for p in problems if not isinstance(p, InDhcpRange)] + [merged]


def _clear_range(net: Network, taken: Taken, fixed: Container[IPv4Address]) -> AddressRange | None:
    """The LAN's longest run of host addresses that no fixed address, the gateway, the load-balancer pool or a lent
    range holds (the first of equals), capped at the current range's size: a DHCP range every rule takes."""
    best: tuple[int, int] | None = None
    run_start: int | None = None
    first, last = int(net.lan.network_address) + 1, int(net.lan.broadcast_address) - 1
    for i in range(first, last + 2):
        ip = IPv4Address(i)
        free = i <= last and ip != net.gateway and ip not in net.load_balancer_pool and ip not in taken and ip not in fixed
        if free and run_start is None:
            run_start = i
        elif not free and run_start is not None:
            if best is None or i - run_start > best[1] - best[0] + 1:
                best = (run_start, i - 1)
            run_start = None
    if best is None:
        return None
    end = min(best[1], best[0] + net.dhcp_range.size() - 1)
    return AddressRange(start=IPv4Address(best[0]), end=IPv4Address(end))


def _range(path: str, r: AddressRange, net: Network) -> Iterator[Problem]:
    for end, ip in (("start", r.start), ("end", r.end)):
        if ip not in net.lan:
            yield Problem(f"{path}.{end}", f"{ip} is outside network.lan {net.lan}; write an address inside it")
        elif ip in _edge_addresses(net.lan):
            yield Problem(
                f"{path}.{end}", f"{ip} is the network or broadcast address of network.lan {net.lan}; no host can have it: write a host address"
            )
    if net.gateway in r:
        # Each end the range can move to and still hold a host address: a range ending at the LAN's last host (the
        # gateway, often) can only end before it, one starting at its first only start after it.
        edges = _edge_addresses(net.lan)
        moves = []
        if net.gateway > r.start and net.gateway - 1 not in edges:
            moves.append(f"end it at {net.gateway - 1}")
        if net.gateway < r.end and net.gateway + 1 not in edges:
            moves.append(f"start it at {net.gateway + 1}")
        fix = " or ".join(moves) if moves else "write a range of other addresses"
        yield Problem(path, f"{r} contains network.gateway {net.gateway}; {fix}")


def _network(net: Network) -> list[Problem]:
    out: list[Problem] = []
    if net.lan.prefixlen > 29:
        out.append(Problem(f"{NET}.lan", f"{net.lan} is too small for a homelab (at most /29): write the LAN's real prefix, /24 for most routers"))
    out += _address_in_lan(f"{NET}.gateway", net.gateway, net, what="gateway")
    out += _range(f"{NET}.dhcpRange", net.dhcp_range, net)
    out += _range(f"{NET}.loadBalancerPool", net.load_balancer_pool, net)
    if net.load_balancer_pool.start <= net.load_balancer_pool.end and net.load_balancer_pool.size() < 2:
        out.append(
            Problem(
                f"{NET}.loadBalancerPool", f"{net.load_balancer_pool} has one address; the two Envoy gateways take its top two: give it at least two"
            )
        )
    if net.load_balancer_pool.overlaps(net.dhcp_range):
        out.append(
            Problem(
                f"{NET}.loadBalancerPool",
                f"{net.load_balancer_pool} overlaps network.dhcpRange {net.dhcp_range}, so DHCP could lend a Service's address: move one so they share none",
            )
        )
    # The Pis' netplan (plans.cloudinit), Talos's resolvers and the Ainur's forwarder all ask these, from the LAN.
    resolvers = Clients(
        "the Pis, Arda's machines and the Ainur's forwarder",
        "so no name outside the zone would resolve (get.k3s.io and factory.talos.dev among them)",
        "give the router's or the Pi-hole's LAN address",
    )
    for k, server in enumerate(net.dns):
        if (why := unreachable(str(server), resolvers, local=net.subnets())) is not None:
            out.append(Problem(f"{NET}.dns[{k}]", why))
    seen_ids: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    for i, vlan in enumerate(net.vlans):
        path = f"{NET}.vlans[{i}]"
        if vlan.id in seen_ids:
            out.append(Problem(f"{path}.id", f"{vlan.id} is already network.vlans[{seen_ids[vlan.id]}].id; give each VLAN its own id"))
        seen_ids.setdefault(vlan.id, i)
        if vlan.name in seen_names:
            out.append(Problem(f"{path}.name", f"{vlan.name} is already network.vlans[{seen_names[vlan.name]}].name; give each VLAN its own name"))
        elif vlan.name == "lan":
            # An app's `sources` entry `lan` is network.lan whatever the VLANs are named (plans.ports.source_ranges), so
            # a VLAN of that name could never be admitted to any app's address: the one word `sources` reserves.
            out.append(
                Problem(
                    f"{path}.name",
                    f"{vlan.name} is the word apps[].sources uses for network.lan, so no app's sources could ever name this VLAN; "
                    f"name it otherwise (e.g. vlan{vlan.id}, or for what it holds), and write that name in the sources of the apps it "
                    "should reach",
                )
            )
        seen_names.setdefault(vlan.name, i)
        if vlan.cidr.overlaps(net.lan):
            out.append(Problem(f"{path}.cidr", f"{vlan.cidr} overlaps network.lan {net.lan}; give the VLAN a subnet of its own"))
        if vlan.cidr.prefixlen >= 31:
            out.append(_tiny_vlan(f"{path}.cidr", vlan.cidr))
        elif vlan.gateway is not None:
            if vlan.gateway not in vlan.cidr:
                out.append(
                    Problem(
                        f"{path}.gateway", f"{vlan.gateway} is outside network.vlans[{i}].cidr {vlan.cidr}; write its router's address on the VLAN"
                    )
                )
            elif vlan.gateway in _edge_addresses(vlan.cidr):
                kind = "network" if vlan.gateway == vlan.cidr.network_address else "broadcast"
                out.append(
                    Problem(
                        f"{path}.gateway",
                        f"{vlan.gateway} is the {kind} address of network.vlans[{i}].cidr {vlan.cidr}; write its router's address on the VLAN",
                    )
                )
        for j, other in enumerate(net.vlans[:i]):
            if vlan.cidr.overlaps(other.cidr):
                out.append(Problem(f"{path}.cidr", f"{vlan.cidr} overlaps network.vlans[{j}].cidr {other.cidr}; give each VLAN a subnet of its own"))
    return out


# The clusters' own networks. k3s's pod and Service networks are its defaults: plans.k3s sets neither --cluster-cidr nor
# --service-cidr, and k3s then takes 10.42.0.0/16 and 10.43.0.0/16 (pkg/util/net.go GetDefaultAddresses, read at k3s's
# main branch, commit 0a3f10c; plans.nfs_guard.POD_CIDR relies on the first). Arda's are Talos's defaults
# (pkg/machinery/constants/constants.go:894 and :897 at v1.13.9) unless arda.patches set cluster.network's podSubnets or
# serviceSubnets, as plans.coredns reads them (a later patch's key wins). Inside a cluster a machine sends what is
# addressed to these to its pods (flannel's and Cilium's routes) or its Services (kube-proxy's and Cilium's), never to
# the LAN, so a LAN or VLAN host in one of them is unreachable from that cluster's machines and pods.
K3S_NETWORKS = (("the Ainur's pod network", IPv4Network("10.42.0.0/16")), ("the Ainur's Service network", IPv4Network("10.43.0.0/16")))
TALOS_NETWORKS = {"podSubnets": IPv4Network("10.244.0.0/16"), "serviceSubnets": IPv4Network("10.96.0.0/12")}
# Ranges offered in a fix for Arda's networks, the first that overlaps nothing of the stack's.
_FREE = {
    "podSubnets": ("10.244.0.0/16", "10.200.0.0/16", "172.20.0.0/16", "172.22.0.0/16"),
    "serviceSubnets": ("10.96.0.0/12", "10.112.0.0/12", "172.24.0.0/16", "172.26.0.0/16"),
}


@dataclass(frozen=True)
class _ClusterNet:
    net: IPv4Network
    name: str  # Arda's pod network
    source: str  # where it comes from: k3s's default, Talos's default, arda.patches[0]
    path: str | None  # the key that sets it; None for a default no key sets
    key: str = ""  # podSubnets or serviceSubnets for Arda's, "" for the Ainur's

    @property
    def what(self) -> str:
        return f"{self.net} ({self.name}, {self.source})"


# Talos reads cluster.network's podSubnets and serviceSubnets as lists of strings (`PodSubnet []string
# yaml:"podSubnets"` and `ServiceSubnet []string yaml:"serviceSubnets"`, pkg/machinery/config/types/v1alpha1/
# v1alpha1_types.go:1533 and :1539 at v1.13.9), and hands them to kube-apiserver's --service-cluster-ip-range and
# kube-controller-manager's --cluster-cidr as they are (internal/app/machined/pkg/controllers/k8s/
# control_plane_static_pod.go:392, :586-587), which refuse a word that is no CIDR. Talos sets no node CIDR size, so
# kube-controller-manager gives each machine a /24 of the pod network (its default node-cidr-mask-size-ipv4), unless
# a patch's controllerManager.extraArgs sets one.
NODE_CIDR_MASK = 24


def _arda_networks(arda: Arda) -> tuple[list[_ClusterNet], list[Problem]]:
    """Arda's pod and Service networks as Talos will run them (a later patch's key wins), and the problems of a patch
    that writes them in a shape Talos refuses: a value that is not a list, an entry that is not a subnet."""
    out: list[_ClusterNet] = []
    problems: list[Problem] = []
    for key, default in TALOS_NETWORKS.items():
        what = "Arda's pod network" if key == "podSubnets" else "Arda's Service network"
        found: tuple[int, list[object]] | None = None
        for k, patch in enumerate(arda.patches):
            cluster = patch.get("cluster") if "kind" not in patch else None
            network = cluster.get("network") if isinstance(cluster, dict) else None
            if not isinstance(network, dict) or key not in network:
                continue
            path = f"iluvatar:arda.patches[{k}].cluster.network.{key}"
            if isinstance(network[key], list):
                found = (k, network[key])
            else:
                written = show(network[key])
                problems.append(Problem(path, f"{written} is not a list: Talos takes {key} as a list of subnets; write [{written}]"))
        if found is None:
            out.append(_ClusterNet(default, what, "Talos's default", None, key))
            continue
        for n, value in enumerate(found[1]):
            path = f"iluvatar:arda.patches[{found[0]}].cluster.network.{key}[{n}]"
            if (bare := _bare_address(value)) is not None:
                # Said alone: read as the /32 (or /128) Python would make of it, it would also be counted as a network
                # of one address (the shares, the overlaps), which is not what was written.
                problems.append(Problem(path, _no_prefix(value, bare, key)))
                continue
            try:
                net = IPv4Network(str(value), strict=False)
            except ValueError:
                try:
                    IPv6Network(str(value), strict=False)
                except ValueError:
                    problems.append(
                        Problem(
                            path, f"{show(value)} is not a subnet: Talos passes it to Kubernetes, which takes a CIDR; write one, e.g. {_FREE[key][0]}"
                        )
                    )
                continue  # an IPv6 subnet: the LAN's plan is IPv4
            out.append(_ClusterNet(net, what, f"arda.patches[{found[0]}]", path, key))
    out += _cilium_pools(arda)
    return out, problems


# Cilium's IPAM modes: Iluvatar's values set `kubernetes` (plans.cilium.helm_values), where Cilium hands each machine's
# pods addresses from the machine's podCIDR, a share of Talos's podSubnets. In `cluster-pool` mode Cilium's operator
# ignores that and hands each machine a share of its own list instead (the chart's ipam.operator.
# clusterPoolIPv4PodCIDRList, cilium 1.18.4 templates/cilium-configmap.yaml:1093-1099, `cluster-pool-ipv4-cidr`), the
# chart's default list when the values give none: so that list is Arda's pod network too. Sprig's `join` takes a
# string as a list of one, which the operator splits at spaces.
CILIUM_POOL_KEY = "clusterPoolIPv4PodCIDRList"
# The chart's own default (cilium 1.18.4 values.yaml:1998 `mode: "cluster-pool"`, :2010 `clusterPoolIPv4PodCIDRList:
# ["10.0.0.0/8"]`), which tests/stacks/test_chart_owned.py holds equal to the pinned chart's values.yaml. A
# version with no entry here is read with the pinned one's: the default has been 10.0.0.0/8 since the chart had the key.
CILIUM_POOL_DEFAULT = {pins.CHARTS["cilium"]: ("10.0.0.0/8",)}


def cilium_ipam_mode(values: dict[str, Any]) -> Any:
    """The IPAM mode the chart renders from arda.cilium.values: as written, else Iluvatar's kubernetes. A null or empty
    mode is no "leave it": plans.merge.deep_merge copies it over Iluvatar's kubernetes, Helm drops the null, and the
    chart falls back to its own default, cluster-pool (cilium 1.18.4 templates/cilium-configmap.yaml:73 `coalesce
    .Values.ipam.mode $defaultIPAM`, values.yaml:1998)."""
    ipam = values.get("ipam")
    if not isinstance(ipam, dict) or "mode" not in ipam:
        return "kubernetes"
    mode = ipam["mode"]
    return "cluster-pool" if mode in (None, "") else mode


def _cilium_pools(arda: Arda) -> list[_ClusterNet]:
    """The pod network Cilium's cluster-pool IPAM hands out, when arda.cilium.values choose it: the values' list, else
    the chart's default (said at ipam.mode, the key that chose it). Entries that are no IPv4 subnet are Helm's and
    Cilium's to refuse."""
    values = arda.cilium.values
    ipam = values.get("ipam")
    mode = cilium_ipam_mode(values)
    if isinstance(ipam, dict) and mode == "multi-pool":
        return _cilium_multi_pools(ipam)
    if not isinstance(ipam, dict) or mode != "cluster-pool":
        return []
    base = "iluvatar:arda.cilium.values.ipam"
    operator = ipam.get("operator")
    given = operator.get(CILIUM_POOL_KEY) if isinstance(operator, dict) else None
    if given is None:
        default = CILIUM_POOL_DEFAULT.get(arda.cilium.version, CILIUM_POOL_DEFAULT[pins.CHARTS["cilium"]])
        source = f"Cilium {arda.cilium.version}'s default pool, ipam.operator.{CILIUM_POOL_KEY} being unset"
        if ipam.get("mode") in (None, ""):
            source += f", and ipam.mode {show(ipam.get('mode'))} being the chart's default mode, cluster-pool"
        return [_ClusterNet(IPv4Network(n), "Arda's pod network", source, f"{base}.mode", "cilium") for n in default]
    entries = [(f"{base}.operator.{CILIUM_POOL_KEY}[{n}]", v) for n, v in enumerate(given)] if isinstance(given, list) else []
    if isinstance(given, str):
        # The chart writes a string as it is (cilium 1.18.4 templates/cilium-configmap.yaml:1099); read at spaces, as the
        # operator reads the ConfigMap's words, and at commas, as a command-line list is read, so each range the text
        # may name is checked.
        words = given.replace(",", " ").split()
        entries = [(f"{base}.operator.{CILIUM_POOL_KEY}" + (f"[{n}]" if len(words) > 1 else ""), w) for n, w in enumerate(words)]
    out: list[_ClusterNet] = []
    for path, value in entries:
        try:
            net = IPv4Network(str(value), strict=False)
        except ValueError:
            continue
        out.append(_ClusterNet(net, "Arda's pod network", "Cilium's cluster-pool", path, "cilium"))
    return out


def _cilium_multi_pools(ipam: dict[str, Any]) -> list[_ClusterNet]:
    """The pools Cilium's multi-pool IPAM creates from ipam.operator.autoCreateCiliumPodIPPools (each pool's ipv4.cidrs,
    joined into the operator's auto-create-cilium-pod-ip-pools: cilium 1.18.4 templates/cilium-configmap.yaml:1111-1125)."""
    operator = ipam.get("operator")
    pools = operator.get("autoCreateCiliumPodIPPools") if isinstance(operator, dict) else None
    out: list[_ClusterNet] = []
    for name, spec in (pools or {}).items() if isinstance(pools, dict) else ():
        ipv4 = spec.get("ipv4") if isinstance(spec, dict) else None
        cidrs = ipv4.get("cidrs") if isinstance(ipv4, dict) else None
        for n, value in enumerate(cidrs if isinstance(cidrs, list) else []):
            try:
                net = IPv4Network(str(value), strict=False)
            except ValueError:
                continue
            path = config_path("iluvatar:arda.cilium.values.ipam.operator.autoCreateCiliumPodIPPools", (str(name), "ipv4", "cidrs")) + f"[{n}]"
            out.append(_ClusterNet(net, "Arda's pod network", f"Cilium's multi-pool pool {name}", path, "cilium"))
    return out


# An address without its prefix length (`10.96.0.10`) is no subnet to any consumer, though Python reads it as a /32.
# Talos's config validation never reads the two lists (ClusterConfig.Validate checks only cluster.network's dnsDomain:
# pkg/machinery/config/types/v1alpha1/v1alpha1_validation.go:425 at v1.13.0, the machinery tools/talos-check pins, and
# :408 at v1.14.1); its own parse of them needs the length (v1alpha1_clusterconfig.go:249 and :259 at v1.13.0 through
# siderolabs/net v0.4.0 SplitCIDRs, net.go:78 netip.ParsePrefix, an error; :214 and :234 at v1.14.1, the error dropped
# and the network read as the zero prefix), and at v1.13 kube-apiserver and kube-controller-manager get the word as
# written (control_plane_static_pod.go, above).
def _bare_address(value: object) -> IPv4Address | IPv6Address | None:
    """`value` as the address it is when written without a prefix length (`10.96.0.10`), else None."""
    if "/" in str(value):
        return None
    try:
        return ip_address(str(value))
    except ValueError:
        return None


def _no_prefix(value: object, address: IPv4Address | IPv6Address, key: str) -> str:
    """Why an address is no subnet, with the subnet of the size of Talos's default around it as the fix."""
    default = TALOS_NETWORKS[key]
    consumer = "kube-apiserver's --service-cluster-ip-range" if key == "serviceSubnets" else "kube-controller-manager's --cluster-cidr"
    fix = (
        f"write {ip_network(f'{address}/{default.prefixlen}', strict=False)}? (the /{default.prefixlen} around it, as Talos's default {default})"
        if isinstance(address, IPv4Address)
        else "write it as a subnet, address/length"
    )
    return f"{show(value)} is an address, not a subnet: Talos hands {key} to {consumer}, which takes a CIDR (address/length); {fix}"


def _node_cidr_mask(arda: Arda) -> int:
    """The size of each machine's share of the pod network: a patch's controllerManager.extraArgs, else /24."""
    mask = NODE_CIDR_MASK
    for patch in arda.patches:
        cluster = patch.get("cluster") if "kind" not in patch else None
        manager = cluster.get("controllerManager") if isinstance(cluster, dict) else None
        args = manager.get("extraArgs") if isinstance(manager, dict) else None
        if isinstance(args, dict):
            for name in ("node-cidr-mask-size", "node-cidr-mask-size-ipv4"):
                if str(args.get(name, "")).isdigit():
                    mask = int(args[name])
    return mask


def _free_shares(pods: IPv4Network, services: Sequence[IPv4Network], mask: int) -> int:
    """The /mask shares of the pod network kube-controller-manager can hand out: its range allocator occupies, in the
    cluster CIDR's share set, every share a Service network touches (filterOutServiceRange: `cidrSets[idx].Occupy(
    serviceCIDR)` for a Service network that contains the cluster CIDR or is contained by it; CidrSet.Occupy marks the
    share indices from the Service network's first address to its last, all of them when it holds the cluster CIDR)."""
    if mask < pods.prefixlen:
        return 0
    total = 1 << (mask - pods.prefixlen)
    taken: list[tuple[int, int]] = []
    for service in services:
        if not pods.overlaps(service):
            continue
        if service.prefixlen <= pods.prefixlen:
            return 0
        first = (int(service.network_address) - int(pods.network_address)) >> (32 - mask)
        last = (int(service.broadcast_address) - int(pods.network_address)) >> (32 - mask)
        taken.append((first, last))
    used, end = 0, -1
    for first, last in sorted(taken):
        if last > end:
            used += last - max(first, end + 1) + 1
            end = last
    return total - used


def _arda_own_networks(p: Parsed, arda: Arda, nets: Sequence[_ClusterNet], taken: Sequence[IPv4Network]) -> list[Problem]:
    """Arda's pod network against its Service network and its machines. kube-controller-manager's range allocator marks
    the shares of the pod network a Service network touches as taken (kubernetes pkg/controller/nodeipam/ipam/
    range_allocator.go filterOutServiceRange, read in the search index's recent multi-CIDR form, not at the pinned v1.35.1
    tag): a partial overlap only costs the shares the Service network covers, and pods never get Service addresses. So
    what is refused is what the allocator cannot use: a pod network inside a Service network (no share left), and fewer
    free shares than machines, since each machine needs a share of its own (its podCIDR, the one Cilium's `ipam.mode:
    kubernetes` hands its pods from, plans/cilium.py): the rest would start no pod."""
    pods = next((c for c in nets if c.key == "podSubnets"), None)
    services = [c for c in nets if c.key == "serviceSubnets"]
    if pods is None:
        return []
    out: list[Problem] = []

    def free(key: str) -> str:
        # The range being replaced is no obstacle to its replacement.
        others = [t for t in taken if not any(c.key == key and c.net == t for c in nets)]
        return next((f for f in _FREE[key] if not any(IPv4Network(f).overlaps(t) for t in others)), "a private range no network of the stack holds")

    for service in services:
        if pods.net.overlaps(service.net) and service.net.prefixlen <= pods.net.prefixlen:
            path, key = (pods.path, "podSubnets") if pods.path is not None else (service.path, "serviceSubnets")
            written = pods.net if key == "podSubnets" else service.net
            other = service.what if key == "podSubnets" else pods.what
            assert path is not None  # Talos's two defaults do not overlap
            out.append(
                Problem(
                    path,
                    f"{written} overlaps {other}, which holds the whole pod network: kube-controller-manager hands no machine "
                    f"the pod addresses inside the Service network (its range allocator marks them taken), so no machine "
                    f"would get a share; write {free(key)}",
                )
            )
    # Cilium's cluster-pool hands out every address of its pool, whatever Kubernetes' allocator would leave out: a pod
    # there shadows a Service's address.
    for pool in (c for c in nets if c.key == "cilium"):
        for service in (s for s in services if pool.net.overlaps(s.net)):
            assert pool.path is not None  # a Cilium pool is always a key's: its list's, or ipam.mode's
            instead = _free_pod_range([pool], taken, "<a free range>")
            said = f"{pool.net} ({pool.source})"
            fix = f"write {instead}"
            if pool.path.endswith(".mode"):
                said = f"cluster-pool hands out {pool.what}, which"
                fix = f"remove ipam.mode, or give the pool with ipam.operator.{CILIUM_POOL_KEY}: [{instead}]"
            out.append(
                Problem(
                    pool.path,
                    f"{said} overlaps {service.what}: Cilium would give pods addresses of Services, which Arda's machines "
                    f"send to the Services, never to those pods; {fix}",
                )
            )
    if out:
        return out
    machines = sum(1 for _, n in p.nodes if n.role in ARDA_ROLES)
    mask = _node_cidr_mask(arda)
    shares = _free_shares(pods.net, [c.net for c in services], mask)
    inside = [c for c in services if pods.net.overlaps(c.net)]
    path = pods.path if pods.path is not None else next((c.path for c in inside if c.path is not None), None)
    if path is not None and shares < machines:
        outside = f" outside {', '.join(c.what for c in inside)}" if inside else ""
        fix = (
            f"a larger range, e.g. {free('podSubnets')}"
            if path == pods.path
            else f"a Service network outside {pods.net}, e.g. {free('serviceSubnets')}"
        )
        out.append(
            Problem(
                path,
                f"{pods.net} holds {shares} /{mask} share(s) of the pod network{outside}, and Arda has {machines} machines: "
                f"kube-controller-manager gives each machine one, so {machines - shares} would start no pod; write {fix}",
            )
        )
    out += _cilium_pool_size(arda, nets, taken, machines)
    out += _cilium_default_pool(arda, nets, taken, machines)
    return out


def _pool_shares(pools: Sequence[_ClusterNet], mask: object) -> int | None:
    """How many /mask shares Cilium's operator can hand out of pools, a share per machine (None: no mask it takes)."""
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask <= 32:
        return None
    return sum(1 << (mask - c.net.prefixlen) for c in pools if c.net.prefixlen <= mask)


def _free_pod_range(pools: Sequence[_ClusterNet], taken: Sequence[IPv4Network], none: str = "a larger range") -> str:
    """The first of the usual pod ranges that meets none of the networks taken but the pools' own (none: none does)."""
    own = [c.net for c in pools]
    return next((f for f in _FREE["podSubnets"] if not any(IPv4Network(f).overlaps(t) for t in taken if t not in own)), none)


# The share of a cluster-pool each machine gets, unless ipam.operator.clusterPoolIPv4MaskSize says otherwise (cilium
# 1.18.4 values.yaml:2012).
CILIUM_POOL_MASK_DEFAULT = 24


def _cilium_pool_size(arda: Arda, nets: Sequence[_ClusterNet], taken: Sequence[IPv4Network], machines: int) -> list[Problem]:
    """Cilium's cluster-pool gives each machine a share of its pool, as kube-controller-manager does of podSubnets: a pool
    with fewer shares than machines leaves the rest without pod addresses."""
    pools = [c for c in nets if c.key == "cilium" and "multi-pool" not in c.source]  # a multi-pool pool has its own size
    operator = arda.cilium.values.get("ipam", {}).get("operator") if isinstance(arda.cilium.values.get("ipam"), dict) else None
    mask = operator.get("clusterPoolIPv4MaskSize", CILIUM_POOL_MASK_DEFAULT) if isinstance(operator, dict) else CILIUM_POOL_MASK_DEFAULT
    shares = _pool_shares(pools, mask)
    if not pools or shares is None or shares >= machines:
        return []
    last = pools[-1]
    assert last.path is not None
    written = ", ".join(str(c.net) for c in pools)
    instead = _free_pod_range(pools, taken)
    return [
        Problem(
            last.path,
            f"{written} holds {shares} /{mask} share(s) of Cilium's cluster-pool, and Arda has {machines} machines: Cilium's "
            f"operator gives each machine one, so {machines - shares} would start no pod; write a larger range, e.g. [{instead}], "
            "or a longer ipam.operator.clusterPoolIPv4MaskSize",
        )
    ]


# The pool a pod's address comes from under multi-pool unless the pod asks for another (Cilium's agent option
# ipam-default-ip-pool, whose default is "default").
CILIUM_DEFAULT_POOL = "default"


def _cilium_default_pool(arda: Arda, nets: Sequence[_ClusterNet], taken: Sequence[IPv4Network], machines: int) -> list[Problem]:
    """Multi-pool's default pool, read as cluster-pool's is: the chart creates only the pools
    ipam.operator.autoCreateCiliumPodIPPools lists (cilium 1.18.4 templates/cilium-configmap.yaml:1111-1125), and the
    operator gives each machine shares of the pool's ipv4.cidrs of ipv4.maskSize: none, or fewer shares than machines,
    and the pods of the rest get no address."""
    if cilium_ipam_mode(arda.cilium.values) != "multi-pool":
        return []
    base = "iluvatar:arda.cilium.values.ipam"
    pools = [c for c in nets if c.key == "cilium" and c.source == f"Cilium's multi-pool pool {CILIUM_DEFAULT_POOL}"]
    instead = _free_pod_range(pools, taken)
    if not pools:
        return [
            Problem(
                f"{base}.mode",
                f"multi-pool with no IPv4 pool named {CILIUM_DEFAULT_POOL} in ipam.operator.autoCreateCiliumPodIPPools: Cilium "
                f"takes pods' addresses from the pool {CILIUM_DEFAULT_POOL}, which the chart creates only from that list, so no "
                "pod on Arda gets an address and pulumi up stops at its gates; remove ipam.mode, or write "
                f"ipam.operator.autoCreateCiliumPodIPPools: {{{CILIUM_DEFAULT_POOL}: {{ipv4: {{cidrs: [{instead}], maskSize: 24}}}}}}",
            )
        ]
    ipam = arda.cilium.values["ipam"]
    spec = ipam["operator"]["autoCreateCiliumPodIPPools"][CILIUM_DEFAULT_POOL]
    mask = spec["ipv4"].get("maskSize")
    shares = _pool_shares(pools, mask)
    if shares is None or shares >= machines:
        return []
    last = pools[-1]
    assert last.path is not None
    written = ", ".join(str(c.net) for c in pools)
    return [
        Problem(
            last.path,
            f"{written} holds {shares} /{mask} share(s) of Cilium's multi-pool pool {CILIUM_DEFAULT_POOL}, and Arda has "
            f"{machines} machines: Cilium's operator gives each machine one, so {machines - shares} would start no pod; write "
            f"a larger range, e.g. [{instead}], or a longer maskSize",
        )
    ]


def _cluster_networks(p: Parsed, net: Network) -> list[Problem]:
    """A cluster's pod or Service network overlapping the LAN or a VLAN, partly or whole: the key the stack wrote is
    named (a patch's subnet, or else the LAN's or VLAN's cidr), with every cluster network it meets, once."""
    clusters: list[_ClusterNet] = []
    out: list[Problem] = []
    if p.ainur_set:
        clusters += [_ClusterNet(n, what, "k3s's default", None) for what, n in K3S_NETWORKS]
    arda_nets: list[_ClusterNet] = []
    if p.arda is not None:
        arda_nets, shapes = _arda_networks(p.arda)
        clusters += arda_nets
        out += shapes
    own = [(f"{NET}.lan", "network.lan", net.lan), *((f"{NET}.vlans[{i}].cidr", f"network.vlans[{i}].cidr", v.cidr) for i, v in enumerate(net.vlans))]
    taken = [n for _, _, n in own] + [c.net for c in clusters]
    why = "the cluster's machines send what is addressed there to its pods or Services, never to the LAN, so the hosts in the overlap are unreachable from them"
    for c in clusters:
        if c.path is None:
            continue
        met = [f"{name} {n}" for _, name, n in own if n.overlaps(c.net)]
        if met and c.key == "cilium" and c.path.endswith(".mode"):
            # The pool replaces the default it is offered for, so that default is no obstacle.
            pool = next((f for f in _FREE["podSubnets"] if not any(IPv4Network(f).overlaps(t) for t in taken if t != c.net)), "<a free range>")
            pods = next((n.net for n in clusters if n.key == "podSubnets"), TALOS_NETWORKS["podSubnets"])
            out.append(
                Problem(
                    c.path,
                    f"cluster-pool hands out {c.what}, which overlaps {' and '.join(met)}: {why}; remove ipam.mode (Iluvatar's "
                    f"kubernetes mode hands out Arda's pod network {pods}; Cilium's IPAM mode is never to be changed on a "
                    f"running cluster), or give the pool with ipam.operator.{CILIUM_POOL_KEY}: [{pool}]",
                )
            )
            continue
        if met:
            free = next((f for f in _FREE.get(c.key, _FREE["podSubnets"]) if not any(IPv4Network(f).overlaps(t) for t in taken)), None)
            instead = f"write {free}" if free else "write a private range no network of the stack holds"
            # A running Arda keeps the networks it was made with (stacks.day2 refuses the move against its record): the
            # fix that moves them is for an Arda not made yet.
            instead += f" before Arda is made; a running Arda keeps its {c.name.split(' ', 1)[1]}, so renumber {met[0].split()[0]} instead"
            out.append(Problem(c.path, f"{c.net} overlaps {' and '.join(met)}: {why}; {instead}"))
    for path, _, n in own:
        met_default = [c for c in clusters if c.path is None and c.net.overlaps(n)]
        if not met_default:
            continue
        if any(c.key == "" for c in met_default):
            fix = "renumber it away from 10.42.0.0/16 and 10.43.0.0/16 (k3s's, which Iluvatar does not move)"
        else:
            moves = [
                f"{c.key}: [{next((f for f in _FREE[c.key] if not any(IPv4Network(f).overlaps(t) for t in taken)), '<a free range>')}]"
                for c in met_default
            ]
            fix = f"renumber it, or move Arda's with iluvatar:arda.patches: [{{cluster: {{network: {{{', '.join(moves)}}}}}}}]"
        out.append(Problem(path, f"{n} overlaps {' and '.join(c.what for c in met_default)}: {why}; {fix}"))
    if p.arda is not None:
        # A Cilium pool said over the LAN is said once, at its key: its fix leaves the Service network too.
        said = {q.path for q in out}
        out += [q for q in _arda_own_networks(p, p.arda, arda_nets, taken) if not (q.path in said and q.path.startswith("iluvatar:arda.cilium"))]
    return out


# Talos picks etcd's addresses and the kubelet's node IP by filtering the machine's addresses through a list of subnets,
# siderolabs/net v0.4.0 FilterIPs (net.go:168-216): in the list's order, an entry adds the addresses it holds and a
# `!` entry removes the ones already added (so a `!` entry alone, or before the entry it meant to trim, leaves
# nothing), an address without a length is read as its /32 (ParseSubnetOrAddress, net.go:148-161), and a word that is
# neither makes the controller fail on it. The lists of every patch are appended, in apply order (arda.patches, then
# the node's talosPatches: plans.talos.node_patches), not replaced: EtcdAdvertisedSubnets, EtcdListenSubnets and
# KubeletNodeIPValidSubnets carry no `merge:"replace"` tag (pkg/machinery/config/types/v1alpha1/v1alpha1_types.go:1495,
# :1507, :790 at v1.13.9; pkg/machinery/config/merge/merge.go:81-91). The machine's address the stack knows is its
# nodes[].ip, the one address plans.talos writes on its link.
def _filter_ips(addresses: Sequence[IPv4Address], cidrs: Sequence[object]) -> list[IPv4Address] | None:
    """FilterIPs over `addresses`; None when an entry is no subnet or address (Talos's controller errors on it)."""
    out: list[IPv4Address] = []
    for entry in cidrs:
        text = str(entry)
        negative = text.startswith("!")
        parsed = _subnet_or_address(text.removeprefix("!"))
        if parsed is None:
            return None
        for ip in addresses:
            if ip in parsed and not negative and ip not in out:
                out.append(ip)
            elif ip in parsed and negative and ip in out:
                out.remove(ip)
    return out


def _subnet_or_address(text: str) -> IPv4Network | IPv6Network | None:
    try:
        return ip_network(text, strict=False) if "/" in text else ip_network(ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Subnets:
    """One subnet list of a machine's config as Talos reads it: every patch's entries appended."""

    key: str  # cluster.etcd.advertisedSubnets
    entries: list[object]
    paths: list[str]  # the patches' keys that wrote entries, in apply order


def _subnet_lists(
    patches: Sequence[tuple[str, dict[str, object]]], keys: tuple[str, ...], example: IPv4Network | None
) -> tuple[_Subnets, list[Problem]]:
    """The entries of one list key over `patches` (appended), and the keys written in a shape Talos cannot read."""
    entries: list[object] = []
    paths: list[str] = []
    problems: list[Problem] = []
    for path, patch in patches:
        current: object = patch if "kind" not in patch else None
        for key in keys:
            current = current.get(key) if isinstance(current, dict) else None
        if current is None:
            continue
        where = f"{path}.{'.'.join(keys)}"
        if not isinstance(current, list):
            problems.append(Problem(where, f"{show(current)} is not a list: Talos takes {keys[-1]} as a list of subnets; write [{show(current)}]"))
            continue
        for n, entry in enumerate(current):
            if not isinstance(entry, str) or _subnet_or_address(entry.removeprefix("!")) is None:
                problems.append(
                    Problem(
                        f"{where}[{n}]",
                        f"{show(entry)} is not a subnet: Talos reads each entry as a CIDR or an address, `!` before one to exclude it "
                        f"(siderolabs/net v0.4.0 net.go:148-161), and its controller fails on anything else; write one, e.g. "
                        f"{example or '192.168.1.0/24'}",
                    )
                )
        entries += current
        paths.append(where)
    return _Subnets(".".join(keys), entries, paths), problems


def _machine_subnet(p: Parsed, node: Node) -> IPv4Network | None:
    if p.network is None:
        return None
    vlan = next((v for v in p.network.vlans if v.name == node.vlan), None)
    return p.network.lan if vlan is None else vlan.cidr


def _deprecated_subnet(patches: Sequence[tuple[str, dict[str, object]]]) -> _Subnets:
    """cluster.etcd.subnet, the deprecated one-subnet form of advertisedSubnets: a string, the last patch's wins."""
    found = _Subnets("cluster.etcd.subnet", [], [])
    for path, patch in patches:
        cluster = patch.get("cluster") if "kind" not in patch else None
        etcd = cluster.get("etcd") if isinstance(cluster, dict) else None
        if isinstance(etcd, dict) and isinstance(etcd.get("subnet"), str) and etcd["subnet"]:
            found = _Subnets("cluster.etcd.subnet", [etcd["subnet"]], [f"{path}.cluster.etcd.subnet"])
    return found


def _patch_addresses(patches: Sequence[tuple[str, dict[str, object]]]) -> list[IPv4Address] | None:
    """The static addresses a node's patches give it on links of their own (a LinkConfig, VLANConfig, BondConfig...
    document's `addresses: [{address: 10.10.0.5/24}]`), beside the nodes[].ip plans.talos writes; None when a patch
    asks a DHCP server for one (DHCPv4Config, DHCPv6Config), whose address cannot be known here."""
    found: list[IPv4Address] = []
    for _, patch in patches:
        kind = patch.get("kind")
        if isinstance(kind, str) and kind.startswith("DHCP"):
            return None
        addresses = patch.get("addresses") if kind is not None else None
        for entry in addresses if isinstance(addresses, list) else []:
            address = entry.get("address") if isinstance(entry, dict) else None
            try:
                interface = ip_interface(str(address))
            except ValueError:
                continue
            if isinstance(interface.ip, IPv4Address):
                found.append(interface.ip)
    return found


def _address_filters(p: Parsed) -> list[Problem]:
    """A patch's etcd or kubelet subnets that leave a machine none of its address. etcd's SpecController filters the
    control plane's addresses through cluster.etcd's advertisedSubnets, the VIPs excluded (etcd/config.go:51-66 at
    v1.13.9: the VIP is never etcd's address), and listenSubnets (advertisedSubnets when unset, v1alpha1_etcdconfig.go:
    50-62; the deprecated `subnet` stands for advertisedSubnets when that is unset, :37-47), and with none left it writes
    no etcd spec and waits (etcd/spec.go:196-198 at v1.13.9): etcd never starts there. The kubelet's node IP:
    plans.talos writes machine.kubelet.nodeIP.validSubnets as the machine's subnet, and a patch's entries are appended
    to it, not put in its place (merge.go above), so a subnet a patch adds keeps the machine's address and is harmless;
    an exclusion can still remove it, and then NodeIPController finds "no suitable node IP" and the kubelet never
    registers the machine (k8s/nodeip.go:108-116 at v1.13.9)."""
    if p.arda is None:
        return []
    out: list[Problem] = []
    seen: set[str] = set()
    # (what the list picks, its first key's path, the entries as written) -> the machines it leaves without an address
    stranded: dict[tuple[str, str, str], tuple[_Subnets, list[Node]]] = {}
    for i, node in p.nodes:
        if node.role not in ARDA_ROLES:
            continue
        patches = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(p.arda.patches)]
        patches += [(node_path(i, f"talosPatches[{k}]"), patch) for k, patch in enumerate(node.talos_patches)]
        own = _machine_subnet(p, node)
        extra = _patch_addresses(patches)
        kubelet, problems = _subnet_lists(patches, ("machine", "kubelet", "nodeIP", "validSubnets"), own)
        # What each list picks, and the list Talos filters with (the VIP excluded from etcd's, Iluvatar's subnet first
        # in the kubelet's).
        lists: list[tuple[str, _Subnets, list[object]]] = []
        if node.role == "valinor":
            advertised, shapes = _subnet_lists(patches, ("cluster", "etcd", "advertisedSubnets"), own)
            listen, more = _subnet_lists(patches, ("cluster", "etcd", "listenSubnets"), own)
            problems += shapes + more
            advertise = advertised if advertised.entries else _deprecated_subnet(patches)
            if advertise.entries:
                # Unset, listenSubnets is advertisedSubnets (not the deprecated subnet).
                use = "advertise" if listen.entries or not advertised.entries else "advertise and listen"
                lists.append((use, advertise, [*advertise.entries, f"!{p.arda.vip}"]))
            if listen.entries:
                lists.append(("listen", listen, listen.entries))
            elif advertised.entries:
                lists.append(("listen", advertised, advertised.entries))
        if kubelet.entries:
            lists.append(("kubelet", kubelet, [*([str(own)] if own is not None else []), *kubelet.entries]))
        for problem in problems:
            if problem.path not in seen:
                seen.add(problem.path)
                out.append(problem)
        if problems or extra is None:
            continue  # a shape Talos cannot read is said alone; an address from DHCP may be the one the list picks
        said: set[str] = set()
        for use, found, cidrs in lists:
            if found.key in said or _filter_ips([node.ip, *extra], cidrs) != []:
                continue
            said.add(found.key)  # advertisedSubnets left with no address is said once, not again for listening
            stranded.setdefault((use, found.paths[0], yaml_flow(found.entries)), (found, []))[1].append(node)
    for (use, _, _), (found, machines) in stranded.items():
        out.append(Problem(found.paths[0], _stranded(p, use, found, machines)))
    return out


def _stranded(p: Parsed, use: str, found: _Subnets, machines: Sequence[Node]) -> str:
    """Why a subnet list that leaves machines no address stops them, and the fix."""
    assert p.arda is not None
    deprecated = found.key.endswith(".subnet")
    written = show(found.entries[0]) if deprecated else yaml_flow(found.entries)
    if len(found.paths) > 1:
        written += f" (with {', '.join(q.removeprefix('iluvatar:') for q in found.paths[1:])} appended, as Talos reads them)"
    names = ", ".join(f"{n.name} ({n.ip})" for n in machines)
    subnets = list(dict.fromkeys(str(s) for n in machines if (s := _machine_subnet(p, n)) is not None))
    key = found.key.rsplit(".", 1)[1]
    if use == "kubelet":
        return (
            f"{written} leaves no address of {names} once appended to the machine's subnet Iluvatar writes there: Talos's "
            f'NodeIPController picks the kubelet\'s node IP from the list, finds "no suitable node IP" and the kubelet never '
            f"registers the machine (internal/app/machined/pkg/controllers/k8s/nodeip.go:108-116 at v1.13.9); remove the "
            f"entries that exclude it, or the key (Iluvatar's own entry already picks the machine's address)"
        )
    doing = "listens on" if use == "listen" else "advertises to its peers"
    vip = "" if use == "listen" else f", the VIP {p.arda.vip} left out"
    also = " (and listens on, listenSubnets being unset)" if use == "advertise and listen" else ""
    own = ", ".join(subnets) if deprecated else f"[{', '.join(subnets)}]"
    fix = f"write {own}, the control planes' own subnet, or remove {key}" if subnets else f"remove {key}"
    bang = ""
    if any(str(e).startswith("!") for e in found.entries):
        bang = " (a `!` entry only takes out what an entry before it put in, siderolabs/net v0.4.0 net.go:168-216)"
    default = "listens on every address" if use == "listen" else "advertises the machine's first routed address"
    return (
        f"{written} holds no address of {names}{vip}: Talos's etcd {doing}{also} only the machine's addresses in these "
        f"subnets{bang} and, with none, writes no etcd spec (internal/app/machined/pkg/controllers/etcd/spec.go:196-198 at "
        f"v1.13.9), so etcd never starts there and Arda never bootstraps; {fix} (etcd then {default})"
    )


def cluster_networks(p: Parsed) -> list[_ClusterNet]:
    """Every cluster network the stack runs: k3s's two with the Ainur, Arda's two as Talos will run them."""
    clusters = [_ClusterNet(n, what, "k3s's default", None) for what, n in K3S_NETWORKS] if p.ainur_set else []
    return clusters + (_arda_networks(p.arda)[0] if p.arda is not None else [])


def devices_in_cluster_networks(p: Parsed, held: Sequence[Held], network: Network | None, target: str | None) -> list[Problem]:
    """A LAN device the clusters reach, off the LAN and its VLANs (those are the rule above's), inside a cluster's pod or
    Service network: that cluster's machines route it to their pods (flannel's routes on the Pis, Cilium's on Arda) or
    their Services (kube-proxy's and Cilium's DNAT), never to the device. The backup target's server and the DNS
    servers are reached from both clusters (k3s's etcd snapshots and the Pis' resolvers; VolSync, talos-backup and
    Talos's resolvers); the NFS class's server from Arda's pods alone (plans.storage: csi-driver-nfs on Arda), an NTP
    server of Arda's Talos patches from Arda's machines alone. `target`: the backup target as written. A host entry's
    address is left out: a name pinned to a ClusterIP is what Cilium's socket load balancing serves. An NTP server at a
    loopback, unspecified or link-local address is refused too: no Talos machine serves NTP to itself, and no host of
    the LAN answers at those."""
    if network is None:
        return []
    own = network.subnets()
    clusters = cluster_networks(p)
    devices: list[tuple[str, IPv4Address, str]] = [
        (f"iluvatar:{h.path}", h.ip, h.kind) for h in held if h.kind in ("nas", "nfs", "ntp", "mirror", "proxy", "resolver")
    ]
    devices += [(f"{NET}.dns[{k}]", ip, "dns") for k, ip in enumerate(network.dns)]
    names = {
        "nas": "the NAS",
        "nfs": "the NFS server",
        "dns": "the DNS server",
        "ntp": "the NTP server",
        "mirror": "the registry mirror",
        "proxy": "the proxy",
        "resolver": "the DNS server",
    }
    shown = {f"iluvatar:{h.path}": h.name for h in held if h.kind == "ntp" and h.name}
    # A mirror's or a proxy's URL, as its key holds it, with the host it stands for.
    shown |= {f"iluvatar:{h.path}": f"{h.written}: its server {h.name or h.ip}" for h in held if h.kind in ("mirror", "proxy")}
    # An ip= kernel argument names up to three servers under one key: each is shown with its own address.
    ip_arg = {f"iluvatar:{h.path}": h.written for h in held if h.written.startswith("ip=")}
    out: list[Problem] = []
    for path, ip, kind in devices:
        if path in ip_arg:
            shown[path] = f"{ip_arg[path]}: its server {ip}"
        if kind == "ntp" and (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
            what = "a loopback" if ip.is_loopback else "the unspecified" if ip.is_unspecified else "a link-local"
            out.append(
                Problem(
                    path,
                    f"{shown.get(path, ip)} is {what} address, where no NTP server answers Arda's machines (Talos runs none of its own), "
                    f"so {CLIENTS['ntp']}; write the LAN address of the NTP server (the router, a NAS), or remove it (with no server "
                    "left, Talos asks time.cloudflare.com)",
                )
            )
            continue
        if kind in ("mirror", "proxy") and (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
            what = "a loopback" if ip.is_loopback else "the unspecified" if ip.is_unspecified else "a link-local"
            out.append(
                Problem(
                    path,
                    f"{shown.get(path, ip)} is {what} address, where {names[kind]} does not answer Arda's machines (Talos runs none "
                    f"of its own), so {CLIENTS['mirror' if kind == 'mirror' else 'proxy']}; write the LAN address of {names[kind]} (a NAS, a host off Arda), or remove it",
                )
            )
            continue
        if any(ip in n for n in own):
            continue
        # The backups' server and the DNS servers are both clusters'; the NFS class's server and an NTP server Arda's.
        seen = [c for c in clusters if kind not in ("nfs", "ntp", "mirror", "proxy", "resolver") or c.key != ""]
        met = [c for c in seen if ip in c.net]
        if not met:
            continue
        whose = "the Ainur's machines" if met[0].key == "" else "Arda's machines"
        outside = ", ".join(str(c.net) for c in seen)
        written = f"{target}: its server {ip}" if kind == "nas" else shown.get(path, str(ip))
        out.append(
            Problem(
                path,
                f"{written} is inside {met[0].what}: {whose} send what is addressed there to their pods or Services, never to "
                f"{names[kind]}; give {names[kind]} an address outside {outside}",
            )
        )
    return out


def _vip_list(p: Parsed) -> list[tuple[str, IPv4Address]]:
    vips: list[tuple[str, IPv4Address]] = []
    if p.ainur is not None:
        vips.append(("iluvatar:ainur.vip", p.ainur.vip))
        vips.append(("iluvatar:ainur.serviceIp", p.ainur.service_ip))
        if p.ainur.git_mirror is not None:
            vips.append(("iluvatar:ainur.gitMirror.ip", p.ainur.git_mirror.ip))
    if p.arda is not None:
        vips.append(("iluvatar:arda.vip", p.arda.vip))
    return vips


def _fixed_addresses(p: Parsed) -> Taken:
    """What a suggested free address is not: the address table's and the lent ranges (`p.taken`), and the machines' and
    the VIPs' addresses, which are in the table whenever stacks.load built it."""
    own = frozenset([n.ip for _, n in p.nodes] + [ip for _, ip in _vip_list(p)])
    return Taken(p.taken.addresses | own, p.taken.lent)


def _vips(p: Parsed) -> list[Problem]:
    out: list[Problem] = []
    vips = _vip_list(p)
    node_ips = {n.ip: (i, n.name) for i, n in p.nodes}
    if p.arda is not None and p.ainur_set and p.arda.cluster_name == "ainur":
        out.append(Problem("iluvatar:arda.clusterName", "ainur is the Ainur VIP's DNS name; pick another cluster name"))
    taken = _fixed_addresses(p)
    for k, (path, ip) in enumerate(vips):
        if p.network is not None:
            out += _static_address(path, ip, p.network, taken)
        for other_path, other_ip in vips[:k]:
            if ip == other_ip:
                out.append(Problem(path, f"{ip} is also {other_path.removeprefix('iluvatar:')}; each cluster needs its own VIP"))
        if ip in node_ips:
            i, name = node_ips[ip]
            out.append(Problem(path, f"{ip} is also nodes[{i}].ip ({name}); a VIP must not be a machine's address"))
    return out


def _nodes(p: Parsed) -> list[Problem]:
    out: list[Problem] = []
    first: dict[str, dict[object, tuple[int, str]]] = {"name": {}, "mac": {}, "ip": {}}
    vlans = {v.name: v for v in p.network.vlans} if p.network is not None else {}
    # A machine's name is its record in the internal zone (plans.network), beside the program's own names.
    builtin = _builtin_names(p)
    for i, node in p.nodes:
        if node.name in builtin:
            full = f" ({node.name}.{p.network.domain})" if p.network is not None else ""
            out.append(Problem(node_path(i, "name"), f"{node.name} is {builtin[node.name]} in the internal zone{full}; pick another name"))
        if node.role in AINUR_ROLES and node.vlan is not None:
            out.append(
                Problem(
                    node_path(i, "vlan"), f"{node.vlan}: the Ainur serve DHCP, PXE and DNS on network.lan, so {node.name} must be on it (remove vlan)"
                )
            )
        for field, value in (("name", node.name), ("mac", node.mac), ("ip", node.ip)):
            if value in first[field]:
                j, other = first[field][value]
                fix = {
                    "name": "give each machine its own name",
                    "mac": f"write {node.name}'s own MAC (on its label, or `ip link` on it)",
                    "ip": "give each machine its own address"
                    + (f" ({_write_static(p.network, _fixed_addresses(p))})" if p.network is not None and node.vlan is None else ""),
                }[field]
                out.append(Problem(node_path(i, field), f"{value} is already nodes[{j}].{field} ({other}); {fix}"))
            else:
                first[field][value] = (i, node.name)

        if p.network is not None:
            if node.vlan is None:
                out += _static_address(node_path(i, "ip"), node.ip, p.network, _fixed_addresses(p))
            elif node.vlan not in vlans:
                known = ", ".join(sorted(vlans)) or "none defined"
                out.append(Problem(node_path(i, "vlan"), f"{node.vlan} is not in network.vlans (known: {known})"))
            else:
                out += _vlan_node(i, node, p.network)

        board = BOARDS[node.board]
        if node.arch != board.arch:
            out.append(Problem(node_path(i, "arch"), f"{node.arch} does not match board {board.name} ({board.description}), which is {board.arch}"))
        # A Talos no stack may ask for is said once, at arda.talosVersion (_arda_versions), with the release to write.
        supported = p.arda is not None and releases.minor_of(p.arda.talos_version) in TALOS_KUBERNETES
        if node.role in ARDA_ROLES and p.arda is not None and supported and version_tuple(p.arda.talos_version) < version_tuple(board.talos_since):
            # The fix stays in the board's first Talos minor where it can, so the Kubernetes pin that minor runs still fits.
            row = releases.BY_MINOR.get(releases.minor_of(board.talos_since))
            newest = f" ({row.newest}, the newest of its minor this Iluvatar knows)" if row is not None and row.newest != board.talos_since else ""
            out.append(
                Problem(
                    node_path(i, "board"),
                    f"{board.name} ({board.description}) runs Talos from {board.talos_since}, which role {node.role} needs; "
                    f"arda.talosVersion is {p.arda.talos_version}: set it to {board.talos_since} or later{newest}",
                )
            )
        if node.role in AINUR_ROLES and not board.runs_ainur:
            able = ", ".join(sorted(b.name for b in BOARDS.values() if b.runs_ainur))
            out.append(
                Problem(
                    node_path(i, "board"),
                    f"{board.name} cannot run the Ainur (Ubuntu and k3s), which role {node.role} needs (boards that can: {able})",
                )
            )
        if node.role in AINUR_ROLES and not p.ainur_set:
            out.append(Problem(node_path(i, "role"), f"{node.role} belongs to the Ainur, but iluvatar:ainur is not set"))

        if isinstance(node.install_disk, DiskSelector) and node.role in AINUR_ROLES:
            out.append(
                Problem(
                    node_path(i, "installDisk"),
                    f"{node.install_disk} is a Talos disk selector; {node.name} is {node.role}, which runs Ubuntu: give its /dev path",
                )
            )
        if isinstance(node.install_disk, DiskSelector) and (why := exact_size(node.install_disk.size)) is not None:
            out.append(Problem(node_path(i, "installDisk.size"), why))
        # A selector is never equal to a path; but a selector's serial names the same device as a data disk's
        # /dev/disk/by-id/ name holding that serial (udev's <bus>-<model>_<serial>[_<namespace>], 60-persistent-storage.rules).
        selected: set[str] = set()  # the data disks said to be the install disk: no other word on them
        if isinstance(node.install_disk, DiskSelector):
            selector = node.install_disk
            for d, data_disk in enumerate(node.data_disks):
                if selector.serial is not None and _by_id_has_serial(data_disk, selector.serial):
                    what, value = "serial", selector.serial
                elif selector.wwid is not None and _by_id_has_wwid(data_disk, selector.wwid):
                    what, value = "wwid", selector.wwid
                elif selector.bus_path is not None and (
                    _by_path_is_bus_path(data_disk, selector.bus_path) or _bus_path_names(selector.bus_path, data_disk)
                ):
                    what, value = "busPath", selector.bus_path
                elif (
                    selector.bus_path is not None
                    and (selector.wwid is None or selector.wwid.strip("*") == "")
                    and by_path_bus_path(data_disk, selector.bus_path) == "namespace"
                ):
                    selected.add(f"dataDisks[{d}]")
                    out.append(
                        Problem(
                            node_path(i, f"dataDisks[{d}]"),
                            f"{data_disk} is a namespace of the NVMe controller installDisk {selector} selects: an NVMe disk's "
                            "bus path is its controller's (go-blockdevice device_linux.go:355), one for every namespace, so busPath "
                            "selects each of them and Talos installs on the first by name (v1alpha1_sequencer_tasks.go:1518-1536 at "
                            "v1.13.9), namespace 1 if it is there, else this one; give installDisk the system namespace's wwid in "
                            "place of busPath, which is each namespace's own (`talosctl get disks -o yaml` shows it)",
                        )
                    )
                    continue
                elif selector.bus_path is not None and (why := _bus_path_may_take(selector.bus_path, data_disk)) is not None:
                    selected.add(f"dataDisks[{d}]")
                    out.append(
                        Problem(node_path(i, f"dataDisks[{d}]"), why.format(disk=data_disk, selector=selector, taken=_system_disk_taken(node)))
                    )
                    continue
                elif selector.bus_path is not None and by_path_bus_path(data_disk, selector.bus_path) == "class":
                    selected.add(f"dataDisks[{d}]")
                    out.append(
                        Problem(
                            node_path(i, f"dataDisks[{d}]"),
                            f"{data_disk} is a disk installDisk {selector} can select (busPath {selector.bus_path} matches every "
                            f"disk on the SATA controller this link names): Talos installs on the first disk by name its selector "
                            "matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), so the system disk and Ceph's would be one; "
                            "pin installDisk to the system disk's serial or wwid, or write its /dev/disk/by-id path",
                        )
                    )
                    continue
                elif selector.serial is not None and _by_id_has_serial(data_disk.lower(), selector.serial.lower()):
                    # The link carries the serial as the disk reports it; a glob matched case and all (as by_id_has_serial
                    # reads Talos's) in another case selects no disk, and corrected to the link's case, this one.
                    selected.add(f"dataDisks[{d}]")
                    out.append(
                        Problem(
                            node_path(i, "installDisk.serial"),
                            f"{selector.serial} is the serial of dataDisks[{d}] {data_disk} in another case: Talos matches a "
                            "serial as the disk reports it, case and all, so installDisk selects no disk and the install stops; "
                            "written as the link writes it, it would select that data disk, which Ceph takes: give installDisk "
                            "the system disk's serial as `talosctl get disks` shows it",
                        )
                    )
                    continue
                elif (why := _selector_may_take(selector, data_disk, BOARDS[node.board].talos_overlay is not None)) is not None:
                    selected.add(f"dataDisks[{d}]")
                    out.append(
                        Problem(
                            node_path(i, f"dataDisks[{d}]"),
                            f"{data_disk} is a disk installDisk {selector} can select ({why}): Talos installs on the first disk by "
                            "name its selector matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), so the system disk and "
                            "Ceph's would be one; pin installDisk to the system disk's serial or wwid, or write its /dev/disk/by-id path",
                        )
                    )
                    continue
                else:
                    continue
                selected.add(f"dataDisks[{d}]")
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{data_disk} is the disk installDisk selects ({what} {value}): {_system_disk_taken(node)}; name another "
                        f"disk, or give installDisk another disk's {what}",
                    )
                )
        if isinstance(node.install_disk, str):
            problems = install_disk_problems(node.install_disk)
            out += [Problem(node_path(i, "installDisk"), why) for why in problems]
            if not problems and (why := _no_mmc(node, node.install_disk, install=True)) is not None:
                out.append(Problem(node_path(i, "installDisk"), why))
        for d, disk in enumerate(node.data_disks):
            field = f"dataDisks[{d}]"
            if (why := no_such_device(disk, talos=node.role in ARDA_ROLES)) is not None:
                # Said alone: the name's partition or controller would point to a device that is not there either.
                out.append(Problem(node_path(i, field), why))
                continue
            parent = partition_of(disk)
            if parent is not None and field in selected:
                pass  # a partition of the disk installDisk selects: said above, and writing its disk would not fix it
            elif parent is not None and isinstance(node.install_disk, str) and _one_disk_by_name(parent, node.install_disk):
                out.append(
                    Problem(
                        node_path(i, field),
                        f"{disk} is a partition of installDisk {node.install_disk}{_other_link(parent, node.install_disk)}: Ceph "
                        "and Longhorn take whole disks, and this one holds the system; name another disk",
                    )
                )
            elif parent is not None:
                out.append(Problem(node_path(i, field), _partition_not_disk(disk, parent)))
            if (why := _install_emmc_area(node, disk) or _install_namespace_node(node, disk) or not_a_disk(disk, False)) is not None:
                out.append(Problem(node_path(i, field), why))
            if _NVME_CONTROLLER.match(disk):
                out.append(Problem(node_path(i, field), _nvme_controller(disk)))
        if node.serial is not None:
            # A Pi's serial is not any part of a MAC: the board's serial is its SoC's OTP number, its MAC the Raspberry Pi
            # OUI (dc:a6:32, d8:3a:dd, ...) and a number of its own. Not its own MAC's, nor (copied from the line above)
            # another machine's; the tail is the usual slip, the head (OUI and one byte) the other.
            tails = [(j, n, w) for j, n in p.nodes if (w := _mac_window(n.mac, node.serial)) is not None]
            own = [(j, n, w) for j, n, w in tails if j == i] or tails[:1]
            for j, n, w in own:
                out.append(
                    Problem(
                        node_path(i, "serial"),
                        f"{node.serial} is {w} of nodes[{j}].mac {n.mac}, not the Pi's serial; set the last 8 hex "
                        "digits of `grep Serial /proc/cpuinfo` (or of the serial on its HDMI diagnostics screen)",
                    )
                )
        if node.serial is not None and (revision := pi_revision(node.serial, node.board)) is not None:
            out.append(
                Problem(
                    node_path(i, "serial"),
                    f"{node.serial} is {revision.said()}, not the Pi's serial: its bootloader asks TFTP under the serial, so "
                    f"{node.name} would never netboot; set the last 8 hex digits of `grep Serial /proc/cpuinfo` (or of "
                    "`vcgencmd otp_dump | grep 28:`, the digits after 28:)",
                )
            )
        # Data disks named by path: a disk listed twice, or the install disk's path again.
        seen_disks: set[str] = set()
        taken = _system_disk_taken(node)
        for d, disk in enumerate(node.data_disks):
            if (why := _mmc_data_disk(node, disk)) is not None:
                out.append(Problem(node_path(i, f"dataDisks[{d}]"), why))
            elif disk == node.install_disk:
                out.append(Problem(node_path(i, f"dataDisks[{d}]"), f"{disk} is also installDisk: {taken}; name another disk"))
            elif isinstance(node.install_disk, str) and one_wwn(disk, node.install_disk):
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{disk} is installDisk {node.install_disk} by its other by-id link (udev links a SAS or SCSI disk's "
                        f"NAA as both wwn-0x<hex> and scsi-3<hex>, the same hex): {taken}; name another disk",
                    )
                )
            elif isinstance(node.install_disk, str) and by_path_one_disk(disk, node.install_disk) == "same":
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{disk} is installDisk {node.install_disk}{_other_link(disk, node.install_disk)}: {taken}; name another disk",
                    )
                )
            elif isinstance(node.install_disk, str) and _one_namespace(disk, node.install_disk):
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{disk} is installDisk {node.install_disk} by its other by-id name (udev links an NVMe namespace as both "
                        f"<model>_<serial> and <model>_<serial>_<namespace>): {taken}; name another disk",
                    )
                )
            elif isinstance(node.install_disk, str) and _one_nvme_namespace(disk, node.install_disk):
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{disk} is installDisk {node.install_disk} by its other by-id name (udev links an NVMe namespace "
                        "as both nvme-<model>_<serial> and nvme-<its wwid>, here nvme.<vendor>-<serial in hex>-<model in hex>-"
                        f"<namespace>, which carries the same model and serial): {taken}; name another disk",
                    )
                )
            elif disk in seen_disks:
                out.append(Problem(node_path(i, f"dataDisks[{d}]"), f"{disk} is listed twice"))
            elif (twin := next((s for s in sorted(seen_disks) if one_wwn(disk, s)), None)) is not None:
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{disk} is {twin} by its other by-id link (udev links a SAS or SCSI disk's NAA as both wwn-0x<hex> and "
                        "scsi-3<hex>, the same hex), so it is listed twice; name it once",
                    )
                )
            elif (twin := next((s for s in sorted(seen_disks) if by_path_one_disk(disk, s) == "same"), None)) is not None:
                out.append(
                    Problem(node_path(i, f"dataDisks[{d}]"), f"{disk} is {twin}{_other_link(disk, twin)}, so it is listed twice; name it once")
                )
            elif (twin := next((s for s in sorted(seen_disks) if _one_nvme_namespace(disk, s)), None)) is not None:
                out.append(
                    Problem(
                        node_path(i, f"dataDisks[{d}]"),
                        f"{disk} is {twin} by its other by-id name (udev links an NVMe namespace as both "
                        "nvme-<model>_<serial> and nvme-nvme.<vendor>-<serial in hex>-<model in hex>-<namespace>), so it is "
                        "listed twice; name it once",
                    )
                )
            seen_disks.add(disk)
    return out


def _one_disk_by_name(a: str, b: str) -> bool:
    """Whether two names written for disks are one disk by their spelling: the same name, or one disk's two by-path links."""
    return a == b or by_path_one_disk(a, b) == "same"


def _other_link(a: str, b: str) -> str:
    """Why by-path links `a` and `b` are one disk, as a message says it after the second ("" when they are one name)."""
    if a == b:
        return ""
    return (
        " by its other by-path link (udev links one disk as ID_PATH and beside it a SATA port's compat ata-<port>, a USB "
        "disk's usbv<revision>- and a virtio disk's virtio-pci- spelling, udev-builtin-path_id.c)"
    )


def _whole_disk_problem(disk: str, install: bool) -> str | None:
    """The first reason a lower-case kernel name is no whole disk (a partition, something other than a disk, an NVMe
    controller), as install_disk_problems and the data disks' checks say it; None when it is one."""
    if (parent := partition_of(disk)) is not None:
        return _partition_not_disk(disk, parent)
    if (why := not_a_disk(disk, install)) is not None:
        return why
    return _nvme_controller(disk) if _NVME_CONTROLLER.match(disk) else None


def install_disk_problems(disk: str) -> list[str]:
    """Why a /dev path is no disk the system can be installed on, each with its fix: a name no machine here has, a
    partition, something other than a whole disk (a RAID or device-mapper volume among them), an NVMe controller. The
    same for every machine Talos or Ubuntu installs on, the generic worker's included."""
    if (why := no_such_device(disk, install=True)) is not None:
        return [why]  # said alone: the name's partition or controller would point to a device that is not there either
    out: list[str] = []
    if (parent := partition_of(disk)) is not None:
        out.append(_partition_not_disk(disk, parent))
    if (why := not_a_disk(disk, True)) is not None:
        out.append(why)
    if _NVME_CONTROLLER.match(disk):
        out.append(_nvme_controller(disk))
    return out


def _partition_not_disk(disk: str, parent: str) -> str:
    return (
        f"{disk} is a partition of {parent}, not a disk: the system is written to a whole disk, and Ceph and Longhorn take "
        f"whole disks (lsblk lists the disk above its partitions); write {parent}"
    )


def _nvme_controller(disk: str) -> str:
    return f"{disk} is an NVMe controller, not a disk: the disk is its namespace {disk}n1 (lsblk lists it); write {disk}n1"


def _mac_window(mac: str, serial: str) -> str | None:
    """Which 8 hex digits of `mac` `serial` is, as a message says it (its tail first), or None."""
    digits = mac.replace(":", "").lower()
    at = next((k for k in (4, 0, 1, 2, 3) if digits[k : k + 8] == serial), None)
    return None if at is None else "the last 8 hex digits" if at == 4 else f"hex digits {at + 1} to {at + 8}"


# /dev/nvme0 is the NVMe controller's character device, not a block device: its namespaces are the disks (/dev/nvme0n1),
# which Talos and Ceph take (Linux drivers/nvme/host/core.c names the controller nvme%d and each namespace nvme%dn%d).
_NVME_CONTROLLER = re.compile(r"^/dev/nvme\d+$")


# Names no kernel these machines run gives a device. hdX: the old IDE driver's, gone from Linux since v5.14 (drivers/ide
# removed); every SATA or PATA disk is libata's and sd's, named sd<letter> (drivers/scsi/sd.c sd_format_disk_name("sd")),
# on Talos's kernel and on Ubuntu's alike. nvme<c>n0: namespace numbers start at 1 (drivers/nvme/host/core.c
# nvme_alloc_ns_head: head->instance = ida_alloc_min(&ctrl->subsys->ns_ida, 1, GFP_KERNEL), at v6.8 and v5.15 alike),
# so the first disk of controller 0 is nvme0n1.
_IDE_DISK = re.compile(r"^/dev/hd([a-z]+)(\d*)$")
# A kernel name (directly under /dev) with an upper-case letter: Linux's disk drivers name every disk in lower case
# (sd.c sd_format_disk_name("sd"), nvme%dn%d, mmcblk%d), and links under /dev/disk keep their own case.
_UPPER_CASE = re.compile(r"^/dev/([^/]*[A-Z][^/]*)$")
_NVME_NAMESPACE_0 = re.compile(r"^/dev/nvme(\d+)n0(?:p\d+)?$")


# A Linux software RAID's device (drivers/md: md0, md127, and mdadm's /dev/md/<name> links). Talos assembles an array
# only with its mdadm system extension, and Iluvatar's schematics carry iscsi-tools and util-linux-tools alone
# (plans.talos.STORAGE_EXTENSIONS), so on Arda's machines no such device appears. (As an install disk it is refused for
# any machine, the generic worker too: install_disk_problems.) udev links an array as /dev/disk/by-id/md-uuid-<uuid> and
# md-name-<name> too (mdadm's udev-md-raid-arrays.rules, installed as 63-md-raid-arrays.rules).
_MD_DEVICE = re.compile(r"^/dev/(md\d+(p\d+)?|md/.+|disk/by-id/md-(uuid|name)-.+)$")
# A device-mapper volume (drivers/md/dm.c names them dm-N, and dmsetup's /dev/mapper/<name> links): LUKS, LVM. Talos
# opens none a stack could name, so such a name never appears on Arda's machines; Rook's OSD encryption
# (arda.encryption, plans.storage) is the layer that sits on the physical disk. udev links a volume as
# /dev/disk/by-id/dm-name-<name> and dm-uuid-<uuid> too (lvm2's udev/13-dm-disk.rules.in).
_MAPPED = re.compile(r"^/dev/(dm-\d+|mapper/.+|disk/by-id/dm-(name|uuid)-.+)$")


def no_such_device(disk: str, talos: bool = False, install: bool = False) -> str | None:
    """Why a /dev name is one no machine here has (an IDE hdX, NVMe namespace 0, on Talos a software RAID), with the name to
    write; None otherwise. `install`: the name is an install disk's (the lower-case name an upper-case one is said as is
    checked as that)."""
    if talos and _MD_DEVICE.match(disk):
        return (
            f"{disk} is a software RAID device, which Talos never assembles here (its mdadm extension is not in Iluvatar's "
            "images): write one of the member disks instead (Ceph keeps its own copies across machines; lsblk -d -o "
            "NAME,SIZE,MODEL lists them)"
        )
    if talos and _MAPPED.match(disk):
        return (
            f"{disk} is a device-mapper volume (LUKS, LVM), which exists only once something opens it, and Talos here opens "
            "none: Ceph would get no disk and make no OSD; write the physical disk under it (lsblk -s lists it), as Ceph owns "
            "whole disks (Iluvatar encrypts each OSD itself with arda.encryption.enabled)"
        )
    if (upper := _UPPER_CASE.match(disk)) is not None:
        instead = "/dev/" + upper.group(1).lower()
        said = f"{disk} is no device name: the kernel names disks in lower case (sda, nvme0n1, mmcblk0) and /dev is case-sensitive"
        # The lower-case name is the fix only where the rules take it (/dev/HDA is /dev/hda, an IDE name): else its own
        # problem is said, with the fix that gives.
        lowered = no_such_device(instead, talos, install) or _whole_disk_problem(instead, install)
        if lowered is not None:
            return f"{said}; in lower case, {lowered}"
        return f"{said}; write {instead} if that is the disk (lsblk -d -o NAME,SIZE,MODEL lists them)"
    if (ide := _IDE_DISK.match(disk)) is not None:
        instead = f"/dev/sd{ide.group(1)}"  # the whole disk: a partition is no disk either (partition_of)
        return (
            f"{disk} is an IDE name, which no machine here has: Linux dropped its IDE driver in 5.14, and Talos's and Ubuntu's "
            f"kernels name every SATA or PATA disk sdX; write {instead} if that is the disk (lsblk -d -o NAME,SIZE,MODEL lists them)"
        )
    if (ns0 := _NVME_NAMESPACE_0.match(disk)) is not None:
        instead = f"/dev/nvme{ns0.group(1)}n1"
        return (
            f"{disk} names NVMe namespace 0, which Linux never gives: a controller's namespaces are numbered from 1, so its "
            f"first disk is {instead}; write {instead}"
        )
    return None


# A partition's kernel name, and the disk it is on (Linux block/partitions/core.c: a disk whose name ends in a digit
# takes "p" before the partition's number, nvme0n1p2 and mmcblk0p2; others take the number alone, sda2).
_PARTITION = re.compile(r"^(/dev/(?:nvme\d+n\d+|mmcblk\d+|loop\d+))p\d+$|^(/dev/(?:sd|vd|hd|xvd)[a-z]+)\d+$")


def partition_of(disk: str) -> str | None:
    """The disk a partition's path names a partition of (/dev/nvme0n1p2 -> /dev/nvme0n1; a by-id link's -partN), or None."""
    found = _PARTITION.match(disk)
    if found is not None:
        return found.group(1) or found.group(2)
    if disk.startswith("/dev/disk/") and (linked := re.match(r"^(.*)-part\d+$", disk)) is not None:
        return linked.group(1)
    return None


# Links udev makes for what is on a disk, never for the disk itself (60-persistent-storage.rules: by-partuuid and
# by-partlabel for a partition's GPT entry, by-uuid and by-label for a filesystem's). Talos's installer resolves the
# path it is given and writes a partition table there (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer_tasks.go:1541-1551 at v1.13.9), so a
# partition would get one nested inside it; Ceph and Longhorn take whole disks here (stacks.storage).
_ON_A_DISK = re.compile(r"^/dev/disk/by-(partuuid|partlabel|uuid|label)/")
# systemd-udevd's /dev/disk/by-diskseq/<n> (60-persistent-storage.rules, from the kernel's diskseq): a counter the kernel
# hands each block device as it is made in this boot, loop devices included (block/genhd.c: the counter and inc_diskseq,
# called by __alloc_disk_node), and again at each media change (block/disk-events.c: disk_check_events for one a drive
# reports, disk_force_media_change for a loop device's new file). It names no disk from one boot to the next, less even
# than a kernel name (which at least follows a bus's probe order, and is warned of only beside another of its bus), so
# it is refused on its own.
_BY_DISKSEQ = re.compile(r"^/dev/disk/by-diskseq/")
# An eMMC's hardware boot partitions and its replay-protected block (Linux drivers/mmc/core/block.c names them
# mmcblk%dboot%d and mmcblk%drpmb): /sys/block lists the boot partitions as disks of a few MiB, read-only by default
# (force_ro), which Talos's disk list takes as any other (controllers/block/disks.go:85 keeps every DeviceTypeDisk).
_EMMC_AREA = re.compile(r"^/dev/(mmcblk\d+)(boot\d+|rpmb)$")
# An MMC host's device by its /dev/disk/by-path link: path_id's platform branch prepends platform-<the host's device>
# and adds no hop of its own for MMC (udev-builtin-path_id.c builtin_path_id), so the card or eMMC is platform-<host>
# (platform-fe2e0000.mmc on an RK1, platform-fe340000.mmc on a Pi 4, platform-1000fff000.mmc on a Pi 5), and an
# eMMC's boot areas the same with -boot<n> (60-persistent-storage.rules: KERNEL=="mmcblk[0-9]boot[0-9]",
# SYMLINK+="disk/by-path/$env{ID_PATH}-boot%n").
_MMC_BY_PATH = re.compile(r"^(?P<host>/dev/disk/by-path/(?:\S+-)?platform-[^-/]*(?:mmc|sdhci)[^-/]*)(?:-(?P<area>boot\d+))?$")
# Software RAID and device-mapper volumes exist only once a running Linux assembles them: the firmware boots the
# install disk's EFI partition before any of that, so Talos must go on a physical disk.
_ASSEMBLED = re.compile(r"^/dev/(md\d+|md/.+|dm-\d+|mapper/.+|disk/by-id/(md-uuid|md-name|dm-name|dm-uuid)-.+)$")
# An LVM physical volume's link (lvm2's udev/69-dm-lvm.rules.in links a disk or partition holding a PV as
# /dev/disk/by-id/lvm-pv-uuid-<its PV uuid>): it names what is on a disk, as a filesystem's link does, and Rook's OSD
# preparation skips a device that holds an LVM PV, as Talos's installer would write over the volume group.
_LVM_PV = re.compile(r"^/dev/disk/by-id/lvm-pv-uuid-")
# Block devices that hold no disk: an optical drive (Talos's disk list marks it a CD, controllers/block/disks.go:183-184
# at v1.13.9) and memory (zram, the compressed swap; ram, which Talos skips by its major number 1, disks.go:89-94).
_NO_DISK = {"sr": "an optical drive", "zram": "a compressed RAM device (zram)", "ram": "a RAM disk"}
_NO_DISK_PATH = re.compile(r"^/dev/(sr|zram|ram)\d+$")
# udev's link to an optical drive (systemd's 60-cdrom_id.rules: SYMLINK+="cdrom" for the first one with ID_CDROM).
_CDROM = re.compile(r"^/dev/cdrom\d*$")
# Block devices backed by something else: a loop device by a file (losetup; on Ubuntu, each snap's squashfs), a network
# block device by a server (nbd-client). Neither is a disk a fresh machine has.
_BACKED = {
    "loop": "a loop device (a file attached as a disk by losetup)",
    "nbd": "a network block device (another machine's, once nbd-client connects it)",
}
_BACKED["ublkb"] = "a userspace block device (ublk, whatever server backs it once one runs)"
_BACKED["rbd"] = "a Ceph RBD image mapped as a disk (rbd map), a Ceph cluster's, once mapped"
_BACKED["bcache"] = "a bcache device, a cache set over other disks, once made and registered"
_BACKED_BY_OTHER = re.compile(r"^/dev/(loop|nbd|ublkb|rbd|bcache)\d+$")


def exact_size(size: str | None) -> str | None:
    """Why an install disk selector's size written without a comparison matches no disk, or None. Talos reads it as
    `disk.size == <size>` (pkg/machinery/config/types/v1alpha1/v1alpha1_provider.go:1333-1337 at v1.13.9), to the byte,
    and a disk sold as 500GB holds a little more than 500 000 000 000 bytes (500 107 862 016 is usual): the installer then
    stops with "no disks matched the expression" (v1alpha1_sequencer_tasks.go:1532-1534). `== 500GB` says it is meant."""
    if size is None or re.match(r"^\s*(>=|<=|>|<|==)", size):
        return None
    value = size.strip()
    return (
        f"{value} matches only a disk of exactly that many bytes (Talos compares disk.size == {value}), and a disk sold as that "
        f"size holds a little more, so the install would find no disk; write >= {value}, or == {value} if the disk holds exactly that"
    )


def not_a_disk(disk: str, install: bool) -> str | None:
    """Why a path names something other than a whole disk (a filesystem's or partition's link, an eMMC's boot area, a
    RAID or device-mapper volume as the install disk), with the fix; None when nothing here says so."""
    if (linked := _ON_A_DISK.match(disk)) is not None:
        what = "a partition" if linked.group(1).startswith("part") else "a filesystem"
        return (
            f"{disk} names {what} (by-{linked.group(1)}), not a disk: "
            + ("the system is written to a whole disk, its own partitions with it" if install else "Ceph and Longhorn take whole disks")
            + "; find the disk it is on with `lsblk -o NAME,TYPE,PARTUUID,UUID` and write the disk (/dev/sdb) or its /dev/disk/by-id link"
        )
    if _BY_DISKSEQ.match(disk) is not None:
        return (
            f"{disk} is a sequence number the kernel gives each block device as it appears in one boot (loop devices too), not "
            "a name of the disk: the same disk may have another number at the next boot, so "
            + ("Talos or Ubuntu would install on" if install else "Ceph or Longhorn would take")
            + " whichever device has this one then; write the disk's /dev/disk/by-id link (`ls -l /dev/disk/by-id/` on the machine)"
        )
    if (area := _EMMC_AREA.match(disk)) is not None:
        return (
            f"{disk} is the eMMC's {'replay-protected block' if area.group(2) == 'rpmb' else 'hardware boot partition'} (a few MiB, "
            f"read-only by default), not its user area: write /dev/{area.group(1)}"
        )
    if (link := _MMC_BY_PATH.match(disk)) is not None and link["area"] is not None:
        return (
            f"{disk} is the eMMC's hardware boot partition by its by-path link (udev links mmcblk<n>boot<m> as the eMMC's "
            f"link and -boot<m>; a few MiB, read-only by default), not its user area: write {link['host']}"
        )
    if (backed := _BACKED_BY_OTHER.match(disk)) is not None:
        return (
            f"{disk} is {_BACKED[backed.group(1)]}, not a physical disk: it exists only once something attaches it, which nothing "
            "does on a freshly installed machine, so the system or data would have nowhere to go; write one of the machine's "
            "SSDs or hard disks (lsblk -d -o NAME,SIZE,MODEL lists them)"
        )
    if _LVM_PV.match(disk) is not None:
        return (
            f"{disk} names an LVM physical volume (by-id lvm-pv-uuid-), what is on a disk or partition, not a disk: "
            + ("the system is written to a whole disk" if install else "Rook and Longhorn skip a device that holds a volume group")
            + "; find the disk under it with `lsblk -s` and write the disk (/dev/sdb) or its /dev/disk/by-id link, once it is emptied"
        )
    if _CDROM.match(disk) is not None:
        return f"{disk} is udev's link to an optical drive, not a disk the system or data can live on; write one of the machine's SSDs or hard disks (lsblk -d -o NAME,SIZE,MODEL lists them)"
    if (memory := _NO_DISK_PATH.match(disk)) is not None:
        return f"{disk} is {_NO_DISK[memory.group(1)]}, not a disk the system or data can live on; write one of the machine's SSDs or hard disks (lsblk -d -o NAME,SIZE,MODEL lists them)"
    if install and _ASSEMBLED.match(disk) is not None:
        return (
            f"{disk} is a software RAID or device-mapper volume, which exists only once a running Linux assembles it: the firmware "
            "boots the install disk before that, so the system goes on a physical disk; write one of its disks (lsblk -s lists them)"
        )
    return _no_disk_node(disk)


# The kernel names of whole disks. Talos lists the block devices of type disk alone (disks.go:85 at v1.13.9: a partition,
# and any character device, is never one of its disks) and installs on, or hands Ceph, what such a name opens; Ubuntu's
# lsblk -d lists the same. Linux names them sd<letters> (SATA, SAS, USB: drivers/scsi/sd.c sd_format_disk_name("sd")),
# nvme<controller>n<namespace> (drivers/nvme/host/core.c nvme_alloc_ns), mmcblk<n> (SD card, eMMC: drivers/mmc/core/
# block.c), vd<letters> (virtio-blk: drivers/block/virtio_blk.c) and xvd<letters> (Xen: drivers/block/xen-blkfront.c);
# hd<letters> is refused apart (no_such_device). Names said elsewhere are left to their own rule: a partition
# (partition_of), an NVMe controller, a RAID or device-mapper volume (no_such_device, _ASSEMBLED).
# The kernel writes its numbers with %d, never with a leading zero (nvme0n1, never nvme0n01). pmem<n>: a persistent
# memory namespace (drivers/nvdimm/pmem.c "pmem%d%s"), a block device of type disk Talos lists like the rest, which
# Talos's arm64 kernel builds in (siderolabs/pkgs kernel/build/config-arm64 CONFIG_BLK_DEV_PMEM=y).
_WHOLE_DISK = re.compile(r"^/dev/(?:sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|nvme(?:0|[1-9][0-9]*)n[1-9][0-9]*|(?:mmcblk|pmem)(?:0|[1-9][0-9]*))$")
# A kernel name with a number written with a leading zero, which the kernel never writes.
_LEADING_ZERO = re.compile(r"^/dev/(?:nvme|mmcblk|pmem)[0-9]*(?:n[0-9]+)?$")
_SAID_APART = re.compile(r"^/dev/(?:nvme\d+|md\d+|md/.+|dm-\d+|mapper/.+)$")
# The NVMe generic character device of a namespace (drivers/nvme/host/core.c nvme_add_ns_cdev names it ng<controller>n
# <namespace>, on a machine without NVMe multipath the numbers of the namespace's own nvme<c>n<n>), which `nvme list`
# prints in its Generic column.
_NVME_GENERIC = re.compile(r"^/dev/ng(\d+)n(\d+)$")
# One controller's path to a multipath NVMe namespace: drivers/nvme/host/core.c nvme_alloc_ns (multipath.c
# nvme_set_disk_name in older kernels) names it nvme<subsystem>c<controller>n<namespace> and marks it GENHD_FL_HIDDEN
# (no /dev node; /sys/block lists it); the namespace's disk is nvme<subsystem>n<namespace>.
_NVME_PATH = re.compile(r"^/dev/nvme(\d+)c\d+n(\d+)$")
# SCSI generic character devices: drivers/scsi/sg.c's sg<n> (lsscsi -g prints it beside the disk's sdX) and the block
# layer's bsg/<h:c:t:l> (block/bsg.c).
_SCSI_GENERIC = re.compile(r"^/dev/(?:sg\d+|bsg/.+)$")


# The /dev/disk links udev makes (systemd's 60-persistent-storage.rules): a whole disk's by-id and by-path, and those
# other rules refuse (by-partuuid, by-partlabel, by-uuid, by-label: what is on a disk; by-diskseq: one boot's count).
_DISK_LINK = re.compile(r"^/dev/disk/(?:by-(?:id|path)/[^/]+|by-(?:partuuid|partlabel|uuid|label|diskseq)/.*)$")
# A loop device's links (60-persistent-storage.rules: by-loop-inode, by-loop-ref, from the backing file).
_LOOP_LINK = re.compile(r"^/dev/disk/by-loop-(?:inode|ref)/")


def _no_disk_node(disk: str) -> str | None:
    """Why a /dev name is no whole disk's kernel name (`_WHOLE_DISK`) nor a /dev/disk link udev makes for a disk
    (`_DISK_LINK`), with the name to write; None for those, and a name another rule says."""
    if disk.startswith("/dev/disk/"):
        if disk != disk.lower() and _BY_PATH_LINK.match(disk.lower()) is not None:
            # path_id writes pci-<the PCI device's sysfs name>, which the kernel writes in lower-case hex, and the
            # transports' words in lower case (udev-builtin-path_id.c "pci-%s", "nvme-%s", "ata-%s.%u").
            return f"{disk} is no link udev writes: it writes a disk's by-path link in lower case; write {disk.lower()}"
        if _DISK_LINK.match(disk):
            return None
        if _LOOP_LINK.match(disk):
            return (
                f"{disk} is udev's link to a loop device (a file attached as a disk by losetup), not a physical disk: it exists "
                "only once something attaches it, which nothing does on a freshly installed machine; write one of the "
                "machine's SSDs or hard disks by its /dev/disk/by-id link (`ls -l /dev/disk/by-id/` on it lists them)"
            )
        return (
            f"{disk} is no link udev makes for a disk: it links a whole disk under /dev/disk/by-id/ and /dev/disk/by-path/ "
            "(60-persistent-storage.rules); write the disk's /dev/disk/by-id link (`ls -l /dev/disk/by-id/` on the machine "
            "lists them)"
        )
    if not disk.startswith("/dev/") or _WHOLE_DISK.match(disk) or _SAID_APART.match(disk):
        return None
    if partition_of(disk) is not None:
        return None
    lists = "lsblk -d -o NAME,SIZE,MODEL lists them"
    if _LEADING_ZERO.match(disk) and (written := re.sub(r"(?<=[a-z])0+(?=[0-9])", "", disk)) != disk and _WHOLE_DISK.match(written):
        return f"{disk} is no name the kernel writes, which writes its numbers without a leading zero: write {written}"
    if (generic := _NVME_GENERIC.match(disk)) is not None:
        namespace = f"/dev/nvme{generic.group(1)}n{generic.group(2)}"
        return (
            f"{disk} is the NVMe generic character device of namespace {namespace} (nvme list's Generic column), not a block "
            f"device: Talos installs on and lists block disks alone (disks.go:85 at v1.13.9), and Ceph and Longhorn take block "
            f"devices; write {namespace}"
        )
    if (path := _NVME_PATH.match(disk)) is not None:
        namespace = f"/dev/nvme{path.group(1)}n{path.group(2)}"
        return (
            f"{disk} is one controller's path to the multipath NVMe namespace {namespace}, which the kernel keeps hidden (no "
            f"/dev node; /sys/block lists it), so no such device opens; write {namespace}"
        )
    if _SCSI_GENERIC.match(disk) is not None:
        return (
            f"{disk} is a SCSI generic character device, not a block device: Talos installs on and lists block disks alone "
            "(disks.go:85 at v1.13.9), and Ceph and Longhorn take block devices; write the disk's /dev/sdX (lsscsi -g prints "
            "it on the same line) or its /dev/disk/by-id link"
        )
    if disk == "/dev/root":
        return (
            "/dev/root is no device: it is the name df and mount print for the root filesystem's device when the kernel "
            "mounted it from root=, and no /dev/root node exists (Talos's /dev has none); write the disk whose partition is "
            "mounted on / (lsblk shows it above that partition) or its /dev/disk/by-id link"
        )
    return (
        f"{disk} is no whole disk's name: Talos installs on and lists block disks alone (disks.go:85 at v1.13.9), which the "
        "kernel names sdX, nvmeXnY, mmcblkX, vdX or xvdX, and Ceph and Longhorn take whole disks; write the disk's own name "
        f"({lists}) or its /dev/disk/by-id link"
    )


# What giving Rook the system disk does: plans.storage never wipes a disk, and Rook's OSD preparation skips a device
# with partitions or a filesystem, so the machine adds no OSD (and Ceph's copies per host may then have too few hosts).
_SYSTEM_DISK_TO_ROOK = "Talos installs the system on it, so Rook finds it partitioned and makes no OSD on this machine"
# The same on a machine of the Ainur, which runs Ubuntu and gives its dataDisks[0] to Longhorn (plans.cloudinit): cloud-init's
# disk_setup and fs_setup leave a disk that has a partition table alone (overwrite: false), the LABEL=longhorn mount
# (nofail) then mounts nothing, and Longhorn writes to /var/lib/longhorn on the system's root filesystem.
_SYSTEM_DISK_TO_LONGHORN = (
    "Ubuntu runs from it, and cloud-init never formats a disk that holds partitions (disk_setup overwrite: false), so Longhorn "
    "gets no disk of its own and writes to the system's root filesystem"
)


def _system_disk_taken(node: Node) -> str:
    """What naming the system disk as a data disk does on this machine: Talos and Rook on Arda, Ubuntu and Longhorn on the Ainur."""
    return _SYSTEM_DISK_TO_LONGHORN if node.role in AINUR_ROLES else _SYSTEM_DISK_TO_ROOK


# The mmcblk indices a Pi's card (or a Compute Module's eMMC) may take, by the kernel that names it. Linux numbers an MMC
# host by its device tree's mmcN alias, else in the order the hosts probe (drivers/mmc/core/host.c, mmc_alloc_host). The
# Raspberry Pi kernel's trees, which the firmware ships, alias mmc0 = &emmc2, the card's host (raspberrypi/linux
# arch/arm/boot/dts/broadcom/bcm2711-rpi-ds.dtsi): Ubuntu's raspi kernel on the Ainur boots them, and so does Talos
# through its rpi_generic overlay (siderolabs/sbc-raspberrypi copies the firmware's boot/ whole). But
# mainline's trees have no mmc alias (torvalds/linux arch/arm/boot/dts/broadcom/bcm2711-rpi.dtsi aliases only emmc2bus,
# ethernet0, pcie0 and blconfig; the 2022 patch adding mmc0 = &emmc2, so that the card's "/dev/mmcblk ID ... won't change
# depending on the probe order", was not merged), and the Wi-Fi's SDIO host probes beside the card's: a Talos Pi 4 booted
# another way (the Pi 4 UEFI firmware, as Sidero's guide netboots it) has had its card as mmcblk1 (siderolabs/sidero#838,
# "RPI4 specified install disk does not exists /dev/mmcblk0", Talos v1.0.3). Talos's Pi 5 overlay boots the Raspberry Pi
# kernel's bcm2712 trees (sbc-raspberrypi artifacts/dtb/raspberrypi), whose card is mmcblk0 (`talosctl get disks` on a
# Pi 5 lists mmcblk0, talos-rpi5/talos-builder#22).
# A Turing RK1's one MMC device is its eMMC, mmcblk0 alone. Talos's turingrk1 overlay boots mainline's tree for it
# (siderolabs/sbc-rockchip v0.2.0 installers/turingrk1/src/main.go:21 installs rockchip/rk3588-turing-rk1.dtb, which
# artifacts/dtb/turingrk1/pkg.yaml:26-27 builds from Linux 6.18.2, Pkgfile:22). That tree aliases mmc0 = &sdhci
# (torvalds/linux arch/arm64/boot/dts/rockchip/rk3588-turing-rk1.dtsi:21), the eMMC's host (`no-sd; no-sdio;
# non-removable` there), and enables no other MMC host: the RK3588's sdmmc and sdio hosts stay "disabled" as
# rk3588-base.dtsi leaves them. The Turing Pi 2's SD card slot is wired to its BMC, not to a module.
_ONE_MMC_BOARDS = ("rpi4", "rpi5", "rk1")


def _mmc_indices(node: Node) -> range:
    return range(2) if node.board == "rpi4" and node.role in ARDA_ROLES else range(1)


def _is_the_mmc(node: Node, disk: object) -> bool:
    """Whether `disk` names the one MMC device of a Pi or an RK1: /dev/mmcblkN at an index its kernel gives it
    (`_mmc_indices`), an mmc- by-id link (a whole device, no -partN), or the by-path link of an MMC host
    (`_MMC_BY_PATH`): the board's one MMC block device hangs off one host, and the link does not tell N, so it is
    taken for that device."""
    if not isinstance(disk, str):
        return False
    path = re.fullmatch(r"/dev/mmcblk(\d+)", disk)
    if path is not None:
        return int(path.group(1)) in _mmc_indices(node)
    if (link := _MMC_BY_PATH.match(disk)) is not None:
        return link["area"] is None
    return disk.startswith("/dev/disk/by-id/mmc-") and partition_of(disk) is None


def _board_name(node: Node) -> str:
    if node.board == "rk1":
        return "Turing RK1 (rk1)"
    return f"{'Pi 4' if node.board == 'rpi4' else 'Pi 5'} ({node.board})"


def _other_disks(node: Node) -> str:
    """The disks to name instead of the MMC one, and how to list them on this machine."""
    if node.board == "rk1":
        # Talos has no shell to run ls in: its API lists the disks, by serial and by-id name.
        return "the RK1's NVMe, SATA or USB disk (`talosctl get disks -n <its address>` lists them)"
    return "the Pi's NVMe or USB disk (ls -l /dev/disk/by-id/ on it)"


def _no_mmc(node: Node, disk: str, *, install: bool) -> str | None:
    """Why /dev/mmcblkN is no device of this Raspberry Pi or RK1 (an index its kernel never gives its one MMC device,
    `_mmc_indices`), or None; as installDisk (install) or as a data disk."""
    path = re.fullmatch(r"/dev/mmcblk(\d+)", disk)
    if node.board not in _ONE_MMC_BOARDS or path is None or _is_the_mmc(node, disk):
        return None
    if node.board == "rk1":
        what, card = "the eMMC on the module", "/dev/mmcblk0 (the Turing Pi 2's SD card slot is its BMC's)"
    else:
        what = "the SD card slot (or a Compute Module's eMMC)"
        card = (
            "/dev/mmcblk0, or /dev/mmcblk1 where Talos's kernel numbers the Wi-Fi's SDIO host first"
            if len(_mmc_indices(node)) > 1
            else "/dev/mmcblk0"
        )
    if install:
        # Talos's installer looks for the disk by its name and, finding none, leaves the machine in maintenance mode.
        lost = (
            "it is not the disk Ubuntu runs from"
            if node.role in AINUR_ROLES
            else "Talos finds no disk to install on and the machine stays in maintenance mode"
        )
        names = " or ".join(f"/dev/mmcblk{n}" for n in _mmc_indices(node))
        fix = f"write the {'eMMC' if node.board == 'rk1' else 'card'}'s {names}, or name {_other_disks(node)}"
    else:
        lost = (
            "cloud-init finds no such disk to format, and Longhorn writes to the root filesystem"
            if node.role in AINUR_ROLES
            else "Rook finds no such disk and makes no OSD on this machine"
        )
        fix = f"name {_other_disks(node)}, or leave dataDisks out"
    return f"{disk} is no device on a {_board_name(node)}: its one MMC device, {what}, is {card}, so {lost}; {fix}"


def _install_namespace_node(node: Node, disk: str) -> str | None:
    """Why an NVMe namespace's generic character device or hidden multipath path is no data disk where its namespace is
    installDisk: the namespace not_a_disk would have written instead is the system disk. None elsewhere."""
    found = _NVME_GENERIC.match(disk) or _NVME_PATH.match(disk)
    if found is None or node.install_disk != f"/dev/nvme{found.group(1)}n{found.group(2)}":
        return None
    what = "the NVMe generic character device" if disk.startswith("/dev/ng") else "one controller's hidden path to the namespace"
    return f"{disk} is {what} of installDisk {node.install_disk}, not a block device of its own: {_system_disk_taken(node)}; name another disk"


def _install_emmc_area(node: Node, disk: str) -> str | None:
    """Why an eMMC boot area (/dev/mmcblkNbootM, or its by-path link's -bootM) is no data disk of a Pi or an RK1 whose
    installDisk is its one MMC device: the area is on the chip the system boots from, so the user area not_a_disk
    would have written instead is the install disk itself. None elsewhere."""
    area = _EMMC_AREA.match(disk)
    link = _MMC_BY_PATH.match(disk)
    if node.board not in _ONE_MMC_BOARDS or (area is None and (link is None or link["area"] is None)):
        return None
    if not isinstance(node.install_disk, str) or not (re.fullmatch(r"/dev/mmcblk\d+", node.install_disk) or _is_the_mmc(node, node.install_disk)):
        return None
    return (
        f"{disk} is a hardware boot partition (a few MiB, read-only by default) of the {_board_name(node)}'s one MMC device, "
        f"installDisk {node.install_disk}, which it boots from, not a disk Ceph or Longhorn can take; name "
        f"{_other_disks(node)}, or leave dataDisks out"
    )


def _mmc_data_disk(node: Node, disk: str) -> str | None:
    """Why an MMC name is no data disk of this Raspberry Pi or RK1, or None. A Pi 4 or 5 has one MMC block device, its
    SD card slot (a Compute Module's eMMC in its place, a CM4 with eMMC leaving its carrier's slot unwired); the Wi-Fi's
    SDIO controller is an MMC host too, but no block device. Its kernel names the card mmcblk0, or on a Talos Pi 4
    mmcblk0 or mmcblk1 (`_mmc_indices`), so a higher index is no device there. An RK1's one is its eMMC, mmcblk0. That
    device, by path or by its mmc- by-id link, is what the machine boots from when installDisk names it (by path or by
    link: the same device either way), and an empty slot on a maia that netboots. A machine that boots from NVMe or USB
    may keep its card (or eMMC) as its data disk: that one is accepted."""
    if node.board not in _ONE_MMC_BOARDS:
        return None
    path = re.fullmatch(r"/dev/mmcblk(\d+)", disk)
    if path is None and not _is_the_mmc(node, disk):
        return None
    if (why := _no_mmc(node, disk, install=False)) is not None:
        return why
    board = _board_name(node)
    fix = f"name {_other_disks(node)}, or leave dataDisks out"
    ainur = node.role in AINUR_ROLES
    if ainur and node.boot == "netboot":
        # A netbooted maia's dataDisks are no Longhorn disk either (stacks.storage.longhorn_pis).
        return (
            f"{disk} is an MMC device, and a {board} has one, its SD card slot, which a Pi that netboots leaves empty ({node.name} "
            "boots from the Ainur); and a netbooted maia's dataDisks are no Longhorn disk: leave dataDisks out"
        )
    if isinstance(node.install_disk, str) and (re.fullmatch(r"/dev/mmcblk\d+", node.install_disk) or _is_the_mmc(node, node.install_disk)):
        lost = "Longhorn would get no disk of its own and write to the card's root filesystem" if ainur else _SYSTEM_DISK_TO_ROOK
        it = "the eMMC" if node.board == "rk1" else "the SD card (or eMMC)"
        return f"{disk} is an MMC device, and a {board} has one, {it} it boots from, installDisk {node.install_disk}: {lost}; {fix}"
    return None


def _bus_path_names(bus_path: str, disk: str) -> bool:
    """Whether a busPath glob ends in the kernel name a data disk is written by (`.../nvme/nvme0/nvme0n1` and
    `/dev/nvme0n1`): the sysfs path under /sys/devices ends in the block device's own name, the name /dev gives it."""
    last = bus_path.rstrip("/").rsplit("/", 1)[-1]
    return disk.startswith("/dev/") and not disk.startswith("/dev/disk/") and "*" not in last and last == disk.removeprefix("/dev/")


# A /dev/disk/by-path/ link of an NVMe namespace or a SATA disk as systemd-udevd's path_id builtin writes it
# (src/udev/udev-builtin-path_id.c): pci-<controller's PCI address>-nvme-<nsid>; for a SATA disk, handle_scsi_ata's
# pci-<controller>-ata-<port>.<target> (.<pmp port>.0 behind a port multiplier) and its compat link pci-<controller>-
# ata-<port> (ID_PATH_ATA_COMPAT), both linked (60-persistent-storage.rules). <port> is the ata_port's port_no, the
# port's number on its own controller from 1 (Linux drivers/ata/libata-core.c: local_port_no = i + 1 for each port of a
# host, which libata-transport.c shows as port_no), while busPath's ata<N> is print_id, counted on across controllers
# from the global ata_print_id as each registers: the two are one on the controller counted first.
_BY_PATH_LINK = re.compile(
    r"^/dev/disk/by-path/pci-(?P<pci>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f])-"
    r"(?:nvme-(?P<nsid>[0-9]+)|ata-(?P<port>[0-9]+)(?:\.(?P<target>[0-9]+)|\.(?P<pmp>[0-9]+)\.0)?)$"
)
# A PCI address in a busPath (domain:bus:device.function), a glob's `*` in place of any part; the SCSI components
# target<h>:<c>:<t> and <h>:<c>:<t>:<l> under an ata port are not one.
_BUS_PATH_PCI = re.compile(r"^[0-9a-f*]+:[0-9a-f*]+:[0-9a-f*]+\.[0-9a-f*]+$")
_BUS_PATH_SCSI = re.compile(r"^(?:target)?[0-9]+:(?P<channel>[0-9]+):(?P<target>[0-9]+)(?::[0-9]+)?$")


def by_path_bus_path(disk: str, bus_path: str) -> Literal["same", "maybe", "class", "namespace"] | None:
    """Whether `disk`, a /dev/disk/by-path/ link (`_BY_PATH_LINK`), is the device a busPath glob (Talos's disk.bus_path,
    the sysfs path under /sys/devices, which Talos matches whole) selects: "same" when the link's controller is the
    glob's last PCI address and, for SATA, its port the glob's ata<N> (and its target or port-multiplier port the glob's
    SCSI address, where both say one), which for SATA is known of port 1 and ata1 alone; "maybe" when the link's port
    is N or lower, as it is for the same port of a controller whose ports were counted after another's; "class" when the glob ends in `*` right after the link's SATA
    controller, so matches each of its disks; "namespace" for an NVMe namespace other than 1 of the controller the glob
    names; None when they differ or the glob does not say."""
    found = _BY_PATH_LINK.match(disk.lower())
    if found is None:
        return None
    # Compared as written: Talos's glob is case-exact against sysfs's lower-case hex (a busPath in upper case is
    # refused on its own, stacks.model), and numbers are ASCII digits alone, as the kernel writes them.
    parts = [p for p in bus_path.split("/") if p]
    pcis = [k for k, p in enumerate(parts) if _BUS_PATH_PCI.match(p)]
    if not pcis or not glob(parts[pcis[-1]], found["pci"]):
        return None
    after = parts[pcis[-1] + 1 :]
    if found["nsid"] is not None:
        # An NVMe disk's bus path is its controller's nvme device (device_linux.go:355 cuts the namespace), the same for
        # each namespace: the glob selects them all, and namespace 1, first by name, is the one Talos installs on.
        if after[:1] not in ([], ["nvme"], ["*"]):
            return None
        return "same" if int(found["nsid"]) == 1 else "namespace"
    if after[:1] == ["nvme"]:
        return None
    ata = next((int(p[3:]) for p in after if re.fullmatch(r"ata[0-9]+", p)), None)
    if ata is None:
        return "class" if after and all(p.strip("*") == "" for p in after) else None
    port = int(found["port"])
    scsi = next((m for p in after if (m := _BUS_PATH_SCSI.match(p)) is not None), None)
    if scsi is not None and found["target"] is not None and (int(scsi["channel"]), int(scsi["target"])) != (0, int(found["target"])):
        return None
    if scsi is not None and found["pmp"] is not None and int(scsi["channel"]) != int(found["pmp"]):
        return None
    # ata<N> is port N of this controller only where no port was counted before it; ata1 always is port 1.
    return "same" if port == ata == 1 else "maybe" if port <= ata else None


def _by_path_is_bus_path(disk: str, bus_path: str) -> bool:
    """Whether `disk` is a /dev/disk/by-path/ link of the device a busPath glob selects: by_path_bus_path for an NVMe
    or SATA link; for another link path_id writes (virtio, SCSI, USB, an MMC host, a SoC's PCIe), a busPath without `*`
    that is one of the bus paths the link reads back to (stacks.bus_paths)."""
    if _BY_PATH_LINK.match(disk.lower()) is not None:
        return by_path_bus_path(disk, bus_path) == "same"
    pattern = by_path_pattern(disk) if disk.startswith("/dev/disk/by-path/") else None
    return pattern is not None and "*" not in bus_path and can_match(bus_path, pattern)


def _bus_path_may_take(bus_path: str, disk: str) -> str | None:
    """Why an install selector's busPath may select data disk `disk` where the rules cannot say it does, as a message
    with {disk}, {selector} and {taken} to fill, or None: a glob with `*` that can match one of the bus paths the disk's
    name reads back to (stacks.bus_paths: go-glob's `*` spans `/`, so a glob of a controller, a root port or `*/nvme` takes
    each disk under it, and Talos installs on the first by name), or a by-path link whose way to the disk validate does
    not read back, beside any busPath. A glob the rules already read for the disk (by_path_bus_path) is said there."""
    if bus_path.strip("*") == "" or partition_of(disk) is not None or by_path_bus_path(disk, bus_path) is not None:
        return None
    parts = [p for p in bus_path.split("/") if p]
    first = next((k for k, p in enumerate(parts) if "*" in p), None)
    if (
        first is not None
        and first > 0
        and parts[first].startswith("*")
        and all(re.fullmatch(r"pci[0-9a-f]{4}:[0-9a-f]{2}|platform", p) for p in parts[:first])
    ):
        return None  # a bus root, then a wildcard: it asks nothing of the disk, which stacks.warn._every_disk warns of
    if disk.startswith("/dev/disk/by-path/"):
        pattern = by_path_pattern(disk)
        if pattern is None:
            return (
                "{disk} may be the disk installDisk {selector} selects: validate does not read this by-path link's way back to "
                "the bus path Talos matches busPath against (disk.bus_path, the device's sysfs path), so it cannot tell the two "
                "apart, and if they are one, {taken}; name the data disk by its /dev/disk/by-id link (`talosctl get disks -o "
                "yaml` shows each disk's bus_path)"
            )
    else:
        pattern = kernel_name_pattern(disk)
    if pattern is None or "*" not in bus_path or not can_match(bus_path, pattern):
        return None
    return (
        f"{{disk}} is a disk installDisk {{selector}} can select (busPath {bus_path} can match the bus path its name reads "
        "back to: go-glob's * takes any run of characters, / included): Talos installs on the first disk by name its "
        "selector matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), so the system disk and Ceph's would be one; "
        "pin installDisk to the system disk's serial or wwid, or write its /dev/disk/by-id path"
    )


def _one_namespace(a: str, b: str) -> bool:
    """Whether two /dev/disk/by-id/ NVMe names are one namespace's two links: udev writes nvme-<model>_<serial> and
    nvme-<model>_<serial>_<namespace> for the same device (60-persistent-storage.rules since systemd v252)."""
    if not (a.startswith("/dev/disk/by-id/nvme-") and b.startswith("/dev/disk/by-id/nvme-")):
        return False
    return "-part" not in a + b and namespace_links(_by_id_name(a), _by_id_name(b))


def _transport(disk: str) -> str | None:
    """The transport Talos reads for a disk (disk.transport), as its /dev name or by-id link shows it: nvme, mmc, or
    another (SATA, SCSI, USB, virtio), None when the name does not say."""
    if disk.startswith("/dev/disk/by-path/"):
        # path_id's last hop names the transport (udev-builtin-path_id.c): -nvme-<nsid> for an NVMe namespace, an mmc
        # host's platform or PCI device for an SD card or eMMC, -ata-, -usb-, -sas-, -scsi- or virtio for the rest.
        if re.search(r"-nvme-\d+$", disk):
            return "nvme"
        if "mmc" in disk:
            return "mmc"
        return "other" if re.search(r"-(?:ata|usb|sas|scsi)-|virtio", disk) else None
    name = _by_id_name(disk) if disk.startswith("/dev/disk/by-id/") else disk.removeprefix("/dev/")
    if name.startswith("nvme"):
        return "nvme"
    if name.startswith(("mmc", "mmcblk")):
        return "mmc"
    if name.startswith(("sd", "vd", "hd", "xvd", "ata-", "scsi-", "usb-", "wwn-", "virtio-")):
        return "other"
    return None


def _selector_may_take(selector: DiskSelector, disk: str, card_first: bool = False) -> str | None:
    """What of a selector with no serial, wwid or busPath (which name one disk, checked apart) matches the data disk
    `disk` as its name shows it, or None: its type nvme or sd against the disk's transport (Talos reads type nvme as
    disk.transport == "nvme" and sd as "mmc", v1alpha1_provider.go:1424-1427 at v1.13.9), its model glob against a by-id
    link's model (udev writes the model's spaces as `_`), its type ssd or hdd against an NVMe name (never rotational). A
    part the name does not show (size; ssd/hdd of another disk) decides nothing; a part it shows that differs means another
    disk. A selector of size alone is warned of instead (stacks.warn), as its bound may be the very thing that tells the
    disks apart."""
    # A glob of `*` alone matches every disk's value (Talos's glob(pattern, disk.<field>), v1alpha1_provider.go:1357-1406
    # at v1.13.9), so it names no disk: the rest of the selector is what chooses.
    if any(g is not None and g.strip("*") != "" for g in (selector.serial, selector.wwid, selector.bus_path)):
        return None
    found: list[str] = []
    transport = _transport(disk)
    if selector.type in ("nvme", "sd") and transport is not None:
        wanted = "nvme" if selector.type == "nvme" else "mmc"
        if transport != wanted:
            return None
        found.append(f"type {selector.type} is disk.transport == {wanted}, and {disk} is {'an NVMe' if wanted == 'nvme' else 'an SD/eMMC'} disk")
    if selector.type in ("ssd", "hdd") and transport == "nvme":
        # Talos reads ssd as !disk.rotational and hdd as disk.rotational (v1alpha1_provider.go:1429-1447 at v1.13.9), and an
        # NVMe namespace is never rotational (the kernel's nvme driver marks none so: /sys/block/nvme0n1/queue/rotational 0).
        # A single-board computer (a board of an Image Factory overlay) has its SD card or eMMC, /dev/mmcblk0: not
        # rotational either, and first by name, so ssd selects it there (`card_first`).
        if selector.type == "hdd" or card_first:
            return None
        found.append(f"type ssd is !disk.rotational, and {disk} is an NVMe disk, never rotational")
    if selector.model is not None and (wwid := nvme_wwid_of_link(disk)) is not None and (parts_of := nvme_wwid_parts(wwid)):
        # The model as the controller reports it, blanks and all, as Talos reads disk.model.
        if not glob(selector.model, parts_of[1]):
            return None
        found.append(f"model {selector.model} matches {parts_of[1]}, the model its nvme-nvme. link carries")
    elif selector.model is not None and disk.startswith("/dev/disk/by-id/"):
        parts = _by_id_name(disk).split("_")
        bus, _, first = parts[0].partition("-")
        if bus == "nvme" and first:
            # An NVMe link's model is the sysfs model Talos reads (ID_MODEL=$attr{model}), spelled by udev.
            names = ["_".join([first, *parts[1:k]]) for k in range(1, len(parts) + 1)]
            pattern = "*".join(udev_spelling(part) for part in selector.model.split("*"))
            if not any(glob(pattern, n) for n in names):
                return None
            found.append(f"model {selector.model} matches the model in its by-id name")
        elif bus in ("ata", "scsi", "usb", "mmc"):
            # Talos globs the sysfs device/model (go-blockdevice block/device_linux.go:343 at v2.0.3): for a disk behind
            # the SCSI layer the 16-character INQUIRY product (libata's is the first 16 characters of the IDENTIFY model,
            # USB's the bridge's, without the vendor usb_id writes first), which this link, udev's IDENTIFY model or
            # vendor_model, does not tell; an MMC card has its name there, not a model.
            found.append(
                f"model {selector.model} is matched against the model the disk reports to the kernel, its 16-character SCSI "
                f"INQUIRY product as `talosctl get disks` shows it, which its {bus}- link does not spell"
            )
    return "; ".join(found) or None


def _vlan_node(i: int, node: Node, net: Network) -> Iterator[Problem]:
    """A machine on a VLAN: inside its subnet, not on its edges or its router, routed if it runs Talos."""
    j, vlan = next((j, v) for j, v in enumerate(net.vlans) if v.name == node.vlan)
    fix = f"write a host address of {vlan.cidr}" + (f" other than its gateway {vlan.gateway}" if vlan.gateway is not None else "")
    if node.ip not in vlan.cidr:
        yield Problem(
            node_path(i, "ip"),
            f"{node.ip} is outside network.vlans {node.vlan} {vlan.cidr}; {fix}, or move {node.name} to the VLAN its address is on",
        )
    elif vlan.cidr.prefixlen >= 31:
        return  # no host address to offer: the VLAN's size is said at its cidr (_tiny_vlan)
    elif node.ip in _edge_addresses(vlan.cidr):
        yield Problem(
            node_path(i, "ip"), f"{node.ip} is the network or broadcast address of VLAN {node.vlan} {vlan.cidr}, which no host can have; {fix}"
        )
    elif node.ip == vlan.gateway:
        # Either key may be the slip (the stack alone cannot tell which was written last): both ways out.
        yield Problem(
            node_path(i, "ip"),
            f"{node.ip} is network.vlans[{j}].gateway ({node.vlan}), its router's; {fix}, or, if {node.name} does have "
            f"{node.ip}, write the router's own address in network.vlans[{j}].gateway",
        )
    if node.role in ARDA_ROLES and vlan.gateway is None:
        yield Problem(
            node_path(i, "vlan"),
            f"{node.vlan} has no gateway, and {node.name} runs Talos, which needs a default route; set network.vlans[{j}].gateway",
        )
    if node.role == "valinor":
        # Arda's VIP is on network.lan (a static LAN address); a Layer-2 VIP moves only between
        # machines that share its network, so every control plane must be on the LAN.
        yield Problem(
            node_path(i, "vlan"),
            f"{node.name} is valinor (a control plane), which must sit on network.lan {net.lan} with the Arda VIP; "
            f"a Layer-2 VIP cannot move to VLAN {node.vlan}",
        )


def _arda_versions(arda: Arda) -> list[Problem]:
    talos = tuple(int(x) for x in arda.talos_version[1:].split(".")[:2])
    kube = tuple(int(x) for x in arda.kubernetes_version[1:].split(".")[:2])
    if (talos[0], talos[1]) not in TALOS_KUBERNETES:
        return [
            Problem(
                "iluvatar:arda.talosVersion",
                f"{arda.talos_version} is not a Talos release this version of Iluvatar supports ({releases.target_span()}){_talos_hint(talos)}",
            )
        ]
    row = releases.BY_MINOR[(talos[0], talos[1])]
    if releases.release(arda.talos_version) > releases.release(row.newest):
        # The installer image of a patch past the table's newest was not there when it was read (or, released since,
        # was never checked against this Iluvatar's pins): `up` would fail at the first install or upgrade.
        return [
            Problem(
                "iluvatar:arda.talosVersion",
                f"{arda.talos_version} is past the newest Talos {releases.show(row.minor)} patch this Iluvatar knows, {row.newest} (the "
                f"newest the Go module proxy served whole when it was made), so its installer image is not one Iluvatar was checked "
                f"against and may not exist; write {row.newest} or an older {releases.show(row.minor)} patch (a patch released since "
                "needs an Iluvatar that knows it)",
            )
        ]
    low, high = TALOS_KUBERNETES[(talos[0], talos[1])]
    if kube[0] != 1 or not low <= kube[1] <= high:
        # Below the range: a cluster on that Kubernetes is moved on the way by the Talos upgrade's own run (stacks.releases).
        # The example is at Rook's floor too (stacks.storage, which leaves a version this rule refuses to it), so it is
        # accepted with Ceph on Arda or without.
        lowest = releases.lowest_kubernetes(arda.talos_version)
        older = (
            f"; a cluster on an older Kubernetes is moved on the way, one minor at a time, in the run that upgrades Talos: set "
            f"1.{low} or later{f' (e.g. {lowest})' if lowest else ''} (`iluvatar versions STACK --previous OUTPUTS.json` lists the path "
            "from what runs; docs/day2.md#across-talos-minors)"
            if kube[0] == 1 and kube[1] < low
            else _kubernetes_above(arda, kube, high)
        )
        return [
            Problem(
                "iluvatar:arda.kubernetesVersion",
                f"{arda.kubernetes_version} is not supported by Talos {arda.talos_version} (it supports Kubernetes 1.{low} to 1.{high}){older}",
            )
        ]
    return []


def _kubernetes_above(arda: Arda, kube: tuple[int, ...], high: int) -> str:
    """The fix for a Kubernetes above what the stack's Talos runs (up to 1.`high`): the newest release this Talos runs
    that also had a release when KUBERNETES_NEWEST was read (the table's top minor may be below Talos's `high`, and
    _unreleased refuses a minor above it), and the Talos that runs the minor written, when it had a release."""
    newest = releases.newest_kubernetes(arda.talos_version)
    if newest is None:
        return f"; write a Kubernetes 1.{high} release"
    fix = f"; write {newest} (the newest Kubernetes release Talos {arda.talos_version} runs that this Iluvatar knows)"
    runs = [row.newest for row in releases.TALOS_MINORS if row.target and row.kubernetes[0] <= kube[1] <= row.kubernetes[1]]
    released = kube[0] == 1 and kube[1] in releases.KUBERNETES_NEWEST
    # Only a release that exists: a patch past its minor's newest is refused by _unreleased under any Talos.
    if released and runs and releases.release(arda.kubernetes_version) <= releases.release(releases.KUBERNETES_NEWEST[kube[1]]):
        fix += f", or arda.talosVersion {runs[-1]}, which runs 1.{kube[1]}"
    return fix


def _unreleased(path: str, version: str, what: str) -> list[Problem]:
    """A Kubernetes (or k3s, which follows its patches) patch above the newest of its minor when the table was read: the
    images and the binary it names do not exist (or, released since, were never checked against this Iluvatar's pins); a
    minor above the table's newest likewise. Older minors the table does not list are not judged (Talos refuses them)."""
    major, minor, patch = releases.release(version)
    top = max(releases.KUBERNETES_NEWEST)
    if major == 1 and minor > top:
        # The table holds every minor released when it was read: one above it had no release then.
        latest = releases.KUBERNETES_NEWEST[top]
        instead = latest if what == "Kubernetes" else f"{latest}+k3s1"
        return [
            Problem(
                path,
                f"{version}: Kubernetes 1.{minor} had no release when this Iluvatar was made (the newest minor the Go module proxy "
                f"served k8s.io/kubernetes on {releases.KUBERNETES_NEWEST_ASKED} is 1.{top}, at {latest}), so its images do not "
                f"exist; write {instead} or an older release (a minor released since needs an Iluvatar that knows it)",
            )
        ]
    newest = releases.KUBERNETES_NEWEST.get(minor) if major == 1 else None
    if newest is None:
        return []
    if patch <= releases.release(newest)[2]:
        return _k3s_revision(path, version) if what == "k3s" else []
    example = newest if what == "Kubernetes" else f"{newest}+k3s1"
    return [
        Problem(
            path,
            f"{version} is past the newest Kubernetes 1.{minor} patch, {newest} (as the Go module proxy served k8s.io/kubernetes on "
            f"{releases.KUBERNETES_NEWEST_ASKED}), so its images do not exist; write {example} or an older 1.{minor} patch "
            "(a patch released since needs an Iluvatar that knows it)",
        )
    ]


def _k3s_revision(path: str, version: str) -> list[Problem]:
    """A k3s revision (`+k3sN`) of a released Kubernetes patch that k3s never released (stacks.releases.K3S_REVISIONS):
    get.k3s.io's installer finds no files for it, and the Pis come up without k3s."""
    kubernetes, revision = version.split("+k3s")
    released = releases.k3s_revisions(kubernetes)
    if int(revision) in released:
        return []
    source = f"k3s's release notes, k3s-io/docs docs/release-notes/v1.{releases.release(version)[1]}.X.md, read on {releases.K3S_REVISIONS_READ}"
    if not released:
        following = f"v{'.'.join(map(str, releases.release(version)[:2]))}.{releases.release(version)[2] + 1}"
        return [
            Problem(
                path,
                f"{version}: k3s made no release of Kubernetes {kubernetes} ({source}), so get.k3s.io's installer finds no files "
                f"for it and the Pis come up without k3s; write {following}+k3s1",
            )
        ]
    revisions = " and ".join(f"{kubernetes}+k3s{r}" for r in released)
    newest = f"{kubernetes}+k3s{released[-1]}"
    return [
        Problem(
            path,
            f"{version}: k3s released Kubernetes {kubernetes} as {revisions} only ({source}; k3s numbers its revisions from 1), "
            f"so get.k3s.io's installer finds no files for {version} and the Pis come up without k3s; write {newest} (a revision "
            "released since needs an Iluvatar that knows it)",
        )
    ]


def _talos_hint(talos: tuple[int, ...]) -> str:
    """The path that would work for a Talos minor no stack may ask for."""
    last = releases.targets()[-1]
    newest = releases.BY_MINOR[last].newest
    if talos[:2] in releases.BY_MINOR:
        rolls = ", then ".join(f"Talos {releases.BY_MINOR[(last[0], m)].newest}" for m in range(talos[1] + 1, last[1] + 1))
        return (
            f"; Talos {releases.show((talos[0], talos[1]))} is only where a path starts: set {newest}, and `pulumi up` rolls every "
            f"machine one minor at a time ({rolls}; docs/day2.md#across-talos-minors)"
        )
    if talos[:2] > releases.targets()[-1]:
        return f"; the newest it knows is {newest}"
    return (
        f"; a cluster on it first goes to Talos {releases.show(releases.TALOS_MINORS[0].minor)} with an Iluvatar that knows both "
        f"(a new cluster: write {newest})"
    )


# The names a device looks up to find a proxy or a tunnel router without being told: browsers and Windows with proxy
# auto-detection ask for wpad.<search domain> (Web Proxy Auto-Discovery) and fetch its /wpad.dat, Windows for
# isatap.<domain> (the ISATAP IPv6 tunnel router). Windows' DNS server answers neither by default (its "global query
# block list" is exactly these two), and dnsmasq's example configuration (dnsmasq.conf.example:686-689 at v2.90)
# ignores a DHCP client claiming the name wpad, "a security hole", CERT VU#598349.
DISCOVERY_NAMES = {
    "wpad": "browsers and Windows with proxy auto-detection look it up in the LAN's domain and take the proxy settings it serves (wpad.dat)",
    "isatap": "Windows looks it up to find an IPv6 tunnel router and sends its IPv6 traffic through it",
}


def _discovery_names(p: Parsed) -> list[Problem]:
    """A machine or an app named wpad or isatap: the internal zone would answer the name every browser (or Windows PC)
    of the house asks without being told to, and whatever holds it is handed their proxy settings, so their web traffic
    (or their IPv6 traffic). Refused, not warned: no machine is meant to be one by chance."""
    out: list[Problem] = []
    for i, node in p.nodes:
        if node.name in DISCOVERY_NAMES:
            out.append(
                Problem(
                    node_path(i, "name"),
                    f"{node.name}: the internal zone would answer {node.name} with this machine, and {DISCOVERY_NAMES[node.name]}, "
                    "which hands it their traffic; name the machine otherwise",
                )
            )
    for i, app in p.apps:
        label = app.host.split(".", 1)[0].lower()
        if label in DISCOVERY_NAMES:
            out.append(
                Problem(
                    f"iluvatar:apps[{i}].host",
                    f"{app.host}: its first label is {label}, and {DISCOVERY_NAMES[label]}, which hands the app their traffic; "
                    "give the app another host",
                )
            )
    return out


# The oldest Cilium that serves every object Iluvatar makes for it: the load-balancer pool is a cilium.io/v2
# CiliumLoadBalancerIPPool (plans.cilium), the version Cilium serves from 1.18.0 (cilium/cilium pull 39090, "Promote
# CiliumLoadBalancerIPPool CRD to v2 API version"; before it, only v2alpha1). The L2 announcement policy is
# cilium.io/v2alpha1, served from 1.14.
CILIUM_OLDEST = (1, 18)


def _cilium_version(arda: Arda) -> list[Problem]:
    """A Cilium release older than CILIUM_OLDEST: `up` could not apply the load-balancer pool (the API server knows no
    cilium.io/v2 CiliumLoadBalancerIPPool there), so no LoadBalancer Service of Arda's would get an address: the
    gateways, the LAN resolver, every raw-port app. A version that is not a release at all is the model's to refuse;
    a newer one than the pin is warned of (stacks.warn), as Helm alone knows whether it exists."""
    major, minor, _ = (int(part) for part in arda.cilium.version.split("."))
    if (major, minor) >= CILIUM_OLDEST:
        return []
    oldest = f"{CILIUM_OLDEST[0]}.{CILIUM_OLDEST[1]}"
    return [
        Problem(
            "iluvatar:arda.cilium.version",
            f"{arda.cilium.version} is older than Cilium {oldest}, the first to serve the cilium.io/v2 CiliumLoadBalancerIPPool "
            "Iluvatar makes for network.loadBalancerPool: `up` could not create the pool, and no LoadBalancer Service of Arda's "
            "(envoy-internal, envoy-external, every raw-port app) would get an address; write "
            f"{pins.CHARTS['cilium']}, the release this Iluvatar installs and is checked with",
        )
    ]


# The chart values a typed key of arda.cilium sets (plans.cilium.helm_values); `values` are merged over them, so one
# given in both silently wins over the typed key.
CILIUM_TYPED = {
    ("loadBalancer", "algorithm"): "loadBalancerAlgorithm",
    ("hubble", "enabled"): "hubble",
    ("hubble", "relay", "enabled"): "hubble",
    ("hubble", "ui", "enabled"): "hubble",
}


def _cilium_values(arda: Arda) -> list[Problem]:
    out: list[Problem] = []
    for keys, typed in CILIUM_TYPED.items():
        value: object = arda.cilium.values
        for key in keys:
            value = value.get(key, _ABSENT) if isinstance(value, dict) else _ABSENT
        if value is not _ABSENT:
            out.append(
                Problem(
                    f"iluvatar:arda.cilium.values.{'.'.join(keys)}",
                    f"{show(value)}: arda.cilium.{typed} sets this ({show(getattr(arda.cilium, _SNAKE[typed]))}), and values win over it "
                    f"without a word; set arda.cilium.{typed} and remove this one",
                )
            )
    return out


_ABSENT = object()
_SNAKE = {"loadBalancerAlgorithm": "load_balancer_algorithm", "hubble": "hubble"}


def _to_odd(count: int, allowed: tuple[int, ...], role: str) -> str:
    """The fix for a count of a cluster's etcd members that has no quorum: the allowed counts nearest it."""
    if count == 0:
        return f"set role: {role} on one machine"
    near = [c for c in (count + 1, count - 1) if c in allowed] or [max(allowed)]
    return f"add or remove a machine with role: {role} to make it {' or '.join(map(str, near))}"


def _counts(p: Parsed) -> list[Problem]:
    out: list[Problem] = []
    roles = [n.role for _, n in p.nodes]
    valinor, istari, valar = roles.count("valinor"), roles.count("istari"), roles.count("valar")
    if valinor == 0 or valinor % 2 == 0:
        out.append(
            Problem(
                NODES,
                f"Arda has {valinor} valinor (control planes); etcd needs an odd number (1, 3 or 5) to keep quorum; {_to_odd(valinor, (1, 3, 5), 'valinor')}",
            )
        )
    if p.arda is not None and istari == 0 and valinor > 0 and not p.arda.allow_scheduling_on_control_planes:
        out.append(
            Problem(
                "iluvatar:arda.allowSchedulingOnControlPlanes",
                "false, and Arda has no istari (workers): nothing could run workloads; add an istari or set it to true",
            )
        )
    if p.ainur_set and (valar == 0 or valar % 2 == 0):
        out.append(
            Problem(
                NODES,
                f"Ainur has {valar} valar (k3s servers); embedded etcd needs an odd number (1 or 3) to keep quorum; {_to_odd(valar, (1, 3), 'valar')}",
            )
        )
    if p.ainur is not None and p.ainur.secrets_encryption and valar > 1:
        # k3s writes its key into the datastore's bootstrap data only when the cluster is created with the flag
        # (pkg/cluster/storage.go Save: "bootstrap key already exists" with override false), so on a cluster that ran
        # without it each server turning it on generates its own key (pkg/daemons/control/deps/deps.go
        # genEncryptionConfigAndState; k3s-io/k3s#7195). And rotate-keys reloads only the server it runs on: the others
        # read the rewritten Secrets only after a restart of each, in order (k3s docs cli/secrets-encrypt.md, its
        # High-Availability steps). plans.k3s.secrets_rewrite_script does the single-server procedure only.
        out.append(
            Problem(
                "iluvatar:ainur.secretsEncryption",
                f"true, while the Ainur have {valar} valar (k3s servers): on several servers k3s's secrets encryption needs "
                "its key shared before the roll and every server restarted in order after the rewrite; set it false (that `up` "
                "runs k3s's disable on the running valar first, ainur-secrets-off, docs/security.md#the-ainurs-secrets-at-rest), "
                "or keep one valar; the HA procedure is not built",
            )
        )
    if p.ainur is not None and p.ainur.secrets_decrypted:
        out.append(
            Problem(
                "iluvatar:ainur.secretsDecrypted",
                "true: this key is no longer read; the `up` that turns iluvatar:ainur.secretsEncryption off runs k3s's "
                "disable on the first valar itself (ainur-secrets-off) and rolls no valar until k3s says Disabled; remove it",
            )
        )
    return out


# Talos config documents Iluvatar renders from the inventory (plans.talos), with what from, and the name it gives the
# document when it is one of several a machine may hold (None: refused whatever its name). A user patch of the same kind
# and name would silently fight the inventory, so it is refused with where to edit instead. The link documents name the
# alias of the inventory's NIC alone: a LinkConfig or LinkAliasConfig for another NIC (a second NIC on a storage
# network) is the patch's own, as Talos documents a physical link's static addresses (a LinkConfig named by the link).
GENERATED_DOCUMENTS: dict[str, tuple[str, str | None]] = {
    "HostnameConfig": ("the node's name", None),
    "LinkAliasConfig": ("the node's mac", TALOS_LINK_ALIAS),
    "LinkConfig": ("the node's ip and network.gateway", TALOS_LINK_ALIAS),
    "ResolverConfig": ("network.dns", None),
    "Layer2VIPConfig": ("arda.vip", None),
}
V1ALPHA1_SECTIONS = {"version", "debug", "machine", "cluster"}
# v1alpha1 settings Talos refuses beside the documents above (their V1Alpha1ConflictValidate),
# or that would fight them for the same link, with what Iluvatar generates them from.
V1ALPHA1_CONFLICTS = {
    ("machine", "install", "disk"): "set the node's installDisk instead",
    ("machine", "install", "diskSelector"): "set the node's installDisk instead",
    ("machine", "network", "hostname"): "Iluvatar sets the hostname from the node's name (HostnameConfig), and Talos refuses both",
    ("machine", "features", "stableHostname"): "Iluvatar sets the hostname from the node's name (HostnameConfig), and Talos refuses both",
    ("machine", "network", "interfaces"): (
        f"Iluvatar configures the node's NIC, the link {TALOS_LINK_ALIAS} of its mac, from its ip (LinkConfig), and gives it no "
        "other address; configure another NIC with documents of its own naming it by its MAC (apiVersion: v1alpha1, kind: "
        "LinkAliasConfig, name: nic1, selector: {match: 'mac(link.permanent_addr) == \"<its mac>\"'}; apiVersion: v1alpha1, "
        "kind: LinkConfig, name: nic1, addresses: [{address: 10.99.0.31/24}])"
    ),
    ("machine", "network", "nameservers"): "Iluvatar sets the resolvers from network.dns (ResolverConfig), and Talos refuses both",
    ("machine", "network", "searchDomains"): "Iluvatar sets the resolvers from network.dns (ResolverConfig), and Talos refuses both",
    ("machine", "network", "disableSearchDomain"): "Iluvatar sets the resolvers from network.dns (ResolverConfig), and Talos refuses both",
    # Talos's bootstrap CoreDNS and Iluvatar's (plans.coredns) would both own kube-system/kube-dns.
    (
        "cluster",
        "coreDNS",
    ): "Iluvatar runs Arda's CoreDNS itself (plans.coredns) and turns Talos's off; Talos's would own kube-system/kube-dns beside it",
}
# v1alpha1 settings every Arda machine must agree on: a node's own patch may not set them.
CLUSTER_WIDE = {
    ("cluster", "network"): "every machine's kubelets and CoreDNS's Service take the cluster DNS address from it; set it in arda.patches",
}
# machine.install settings a patch may not carry, with what to set instead. Talos applies a change of machine.install
# to a running machine without a reboot (v1.12.4 internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go:145,172)
# and reads it only when an installer runs (an install, v1alpha1_sequencer_tasks.go:1491-1543; an upgrade,
# internal/pkg/install/install.go:268-279), so a change never reaches the machine, and nothing says so.
INSTALL_APPLIES = "Talos applies a machine.install change without a reboot and reads it only when an installer runs, so it never takes effect;"
INSTALL_ONLY = {
    # Deprecated (v1alpha1_types.go:775-778): the schematic's customization.extraKernelArgs is the way (plans.talos).
    "extraKernelArgs": "set {keys} instead: the board's schematic carries them, and its machines upgrade to it one at a time",
    # Deprecated (v1alpha1_types.go:786-789): extensions come with the installer image, from the schematic.
    "extensions": "system extensions come from the board's Image Factory schematic, which Iluvatar builds (plans.talos)",
    # Deprecated, "It never worked" (v1alpha1_types.go:790-793).
    "bootloader": "Talos ignores it (deprecated: it never worked); remove it",
}
# Every config document kind both the Talos provider's machinery (v1.13.0) and a Talos 1.14 node (machinery v1.14.1)
# know: their config.schema.json files; tests/test_talos_check.py keeps this in step. A kind only 1.14 knows
# (UnattendedInstallConfig, the Kube* documents) is refused by the provider when it generates the config.
TALOS_KINDS = frozenset(
    {
        "BlackholeRouteConfig", "BondConfig", "BridgeConfig", "DHCPv4Config", "DHCPv6Config", "DummyLinkConfig",
        "EnvironmentConfig", "EthernetConfig", "EventSinkConfig", "ExistingVolumeConfig", "ExtensionServiceConfig",
        "ExternalVolumeConfig", "HCloudVIPConfig", "HostnameConfig", "KmsgLogConfig", "KubeSpanConfig",
        "KubeSpanEndpoints", "Layer2VIPConfig", "LinkAliasConfig", "LinkConfig", "NetworkDefaultActionConfig",
        "NetworkRuleConfig", "OOMConfig", "PCIDriverRebindConfig", "RawVolumeConfig", "RegistryAuthConfig",
        "RegistryMirrorConfig", "RegistryTLSConfig", "ResolverConfig", "RoutingRuleConfig", "SideroLinkConfig",
        "StaticHostConfig", "SwapVolumeConfig", "TCPProbeConfig", "TimeSyncConfig", "TrustedRootsConfig",
        "UserVolumeConfig", "VLANConfig", "VRFConfig", "VolumeConfig", "WatchdogTimerConfig", "WireguardConfig",
        "ZswapConfig",
    }
)  # fmt: skip
# The kinds of TALOS_KINDS a Talos 1.12 node does not register (machinery v1.12.4's config.schema.json against
# v1.13.0's; tests/test_talos_check.py reads both). Its decoder refuses the whole config for one of them ("... not
# registered", pkg/machinery/config/configloader/internal/decoder at v1.12.4), so a stack that runs Talos 1.12, or
# moves to 1.13 in one step (the new config is staged on the running 1.12, stacks.day2), may not use them.
TALOS_KINDS_SINCE_1_13 = frozenset(
    {"BlackholeRouteConfig", "EnvironmentConfig", "ExternalVolumeConfig", "KubeSpanConfig", "RoutingRuleConfig", "TCPProbeConfig", "VRFConfig"}
)


def kinds_1_12_refuses(patches: Sequence[tuple[str, dict[str, object]]], running: str) -> list[Problem]:
    """A document kind a Talos 1.12 node refuses, in a patch for machines that run (or stage their config on) 1.12."""
    return [
        Problem(
            path,
            f"{patch['kind']} is a config document Talos v1.13 added, and {running} refuses the whole config for it; remove it, "
            f"or use it once Arda runs Talos v1.13",
        )
        for path, patch in patches
        if patch.get("kind") in TALOS_KINDS_SINCE_1_13
    ]


def _has(patch: dict[str, object], keys: tuple[str, ...]) -> bool:
    current: object = patch
    for key in keys:
        if not isinstance(current, dict) or key not in current:
            return False
        current = current[key]
    return True


# A PTP clock is a time source, not a disk: machine.time.servers takes "the path to the PTP device as \"/dev/ptp0\" or
# \"/dev/ptp_kvm\"" beside NTP servers (machinery v1.14.1 config/types/v1alpha1/v1alpha1_types.go:784-785), as do a
# TimeSyncConfig's ntp.servers (Talos reads any /dev/ path among the servers as a PTP device: internal/pkg/ntp/ntp.go:305
# at v1.13.0, IsPTPDevice) and ptp.devices (config/types/network/time_sync.go:84-91 at v1.13.0). Only at those keys:
# elsewhere a /dev/ptp path is a device like any other.
_PTP_CLOCK = re.compile(r"^/dev/ptp")
_TIME_SOURCES: dict[str | None, tuple[tuple[str, ...], ...]] = {
    None: (("machine", "time", "servers"),),
    "TimeSyncConfig": (("ntp", "servers"), ("ptp", "devices")),
}


def _device_paths(value: object, at: tuple[str, ...] = (), clocks: tuple[tuple[str, ...], ...] = ()) -> Iterator[str]:
    """The /dev/ paths a patch names, but a PTP clock at a key that takes one (`clocks`, by their keys from the patch's root)."""
    if isinstance(value, str) and value.startswith("/dev/") and not (at in clocks and _PTP_CLOCK.match(value)):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _device_paths(v, (*at, str(k)), clocks)
    elif isinstance(value, list):
        for v in value:
            yield from _device_paths(v, at, clocks)


def yaml_flow(value: object, unicode: bool = False) -> str:
    """A value as YAML spells it on one line (`[console=ttyS2, quiet]`, `true`), for a message; `unicode` writes a
    character outside ASCII (masked_kernel_arg's `…`) as itself."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=unicode).strip().removesuffix("\n...").strip()


def kernel_args_flow(args: Sequence[object]) -> str:
    """Kernel arguments for a message, each as masked_kernel_arg prints it: one may hold a credential."""
    return yaml_flow([masked_kernel_arg(a) if isinstance(a, str) else a for a in args], unicode=True)


def _patch(
    path: str,
    patch: dict[str, object],
    disks: set[str],
    owner: str,
    boards: Sequence[str] = (),
    ceph: Sequence[tuple[str, str]] = (),
) -> Iterator[Problem]:
    kind = patch.get("kind")
    if kind is None:
        unknown = sorted(set(patch) - V1ALPHA1_SECTIONS)
        if unknown:
            yield Problem(
                path, f"{', '.join(unknown)} is not a v1alpha1 config section (machine, cluster); a config document needs apiVersion and kind"
            )
        for keys, source in V1ALPHA1_CONFLICTS.items():
            if _has(patch, keys):
                yield Problem(path, f"sets {'.'.join(keys)}; {source}")
        machine = patch.get("machine")
        install = machine.get("install") if isinstance(machine, dict) else None
        if isinstance(install, dict) and "image" in install:
            yield Problem(path, "sets machine.install.image; Iluvatar derives it from the node's board and arda.talosVersion")
        if isinstance(install, dict):
            for key, instead in INSTALL_ONLY.items():
                if key in install:
                    where = instead.format(
                        keys=" and ".join(f"iluvatar:arda.kernelArgs.{b}" for b in sorted(set(boards))) or "iluvatar:arda.kernelArgs"
                    )
                    value = install[key]
                    shown = kernel_args_flow(value) if key == "extraKernelArgs" and isinstance(value, list) else yaml_flow(value)
                    yield Problem(path, f"sets machine.install.{key} ({shown}); {INSTALL_APPLIES} {where}")
    else:
        if "apiVersion" not in patch:
            yield Problem(path, f"document {kind} has no apiVersion")
        generated = GENERATED_DOCUMENTS.get(kind) if isinstance(kind, str) else None
        if generated is not None and generated[1] is None:
            yield Problem(path, f"{kind} is generated from {generated[0]}; change that in the stack instead")
        elif generated is not None and patch.get("name") == generated[1]:
            yield Problem(
                path,
                f"{kind} {generated[1]} is generated from {generated[0]}; change that in the stack instead, or configure another "
                "NIC in the machine's own patches, named by an alias on its MAC (apiVersion: v1alpha1, kind: LinkAliasConfig, name: "
                "nic1, selector: {match: 'mac(link.permanent_addr) == \"<its mac>\"'}), with name: nic1",
            )
        elif kind not in TALOS_KINDS:
            yield Problem(
                path,
                f"{kind} is not a config document both the Talos provider (machinery v1.13.0) and Talos v1.14 know; one of them would refuse the whole config",
            )
    yield from _patch_keys(path, patch)
    yield from _patch_directives(path, patch)
    machine_section = patch.get("machine") if "kind" not in patch else None
    install_section = machine_section.get("install") if isinstance(machine_section, dict) else None
    system_disk = install_section.get("disk") if isinstance(install_section, dict) else None
    kind = patch.get("kind")
    clocks = _TIME_SOURCES.get(kind, ()) if kind is None or isinstance(kind, str) else ()
    for device in sorted(set(_device_paths(patch, (), clocks))):
        taken = next(((key, disk) for key, disk in ceph if _one_disk(device, disk)), None)
        if taken is not None:
            key, disk = taken
            if device == disk:
                said = f"{device} is also {key}"
            elif partition_of(device) is not None:
                said = f"{device} is a partition of {key} {disk}"
            else:
                said = f"{device} is {key} {disk} by its other by-id name"
            yield Problem(path, f"{said}, which Ceph takes as an OSD: {_CLAIMED}")
            continue
        if device not in disks:
            known = ", ".join(sorted(disks)) or "none"
            if device == system_disk:
                # The install disk holds the system: listed in dataDisks it would be handed to Ceph as an OSD.
                yield Problem(
                    path,
                    f"{device} is not a disk of {owner} in the inventory (known: {known}); it is the patch's machine.install.disk, "
                    "the system disk: write it as the node's installDisk, never in dataDisks (that hands it to Ceph)",
                )
                continue
            yield Problem(
                path,
                f"{device} is not a disk of {owner} in the inventory (known: {known}); the inventory lists only the install disk "
                "and dataDisks, which Ceph takes as OSDs (never beside a patch's claim): remove it from the patch, or remove the patch",
            )
    match = _disk_selector(patch)
    if match is not None:
        yield from _volume_on_ceph(f"{path}.provisioning.diskSelector.match", match, owner, ceph)


# A data disk is Ceph's alone: Rook's OSD prepare takes only an empty device. A patch that names it takes it too: a
# machine.disks entry with partitions becomes a VolumeConfig that partitions the disk and formats it XFS at boot
# (internal/app/machined/pkg/controllers/block/user_disk_config.go:151,187-206 at v1.14.0-rc.1), and a mount or a
# device path hands it to the kubelet or a pod to write to. The inventory has no key for a disk outside Ceph (a patch
# naming one is refused below), so the one fix that validates is the patch without it.
_CLAIMED = (
    "this patch names it too, and a disk Ceph takes must be Ceph's alone (Talos partitions and formats a disk a "
    "machine.disks entry claims at boot, user_disk_config.go:151,187-206 at v1.14.0-rc.1; a mount hands it to whatever "
    "writes there), so Rook's OSD prepare finds it in use and makes no OSD; remove it from the patch (or remove the patch): "
    "the inventory has no disk outside Ceph but the install disk for a patch to use"
)


# A volume document (VolumeConfig, UserVolumeConfig, RawVolumeConfig, SwapVolumeConfig) names its disk by a CEL
# expression, provisioning.diskSelector.match, which Talos evaluates against every disk
# (internal/app/machined/pkg/controllers/block/internal/volumes/locate.go:251-261 at v1.14.0-beta.1) and provisions the
# volume on a blank one it is true for (volumes/disk.go:47-63): on a first install, or when a disk is replaced, Ceph's
# disk is blank then, and a data disk it selects is claimed as a machine.disks entry claims it (_CLAIMED).
_SELECTED = (
    "this patch's volume is provisioned on it too, and a disk Ceph takes must be Ceph's alone (Talos evaluates the "
    "selector against every disk and makes the volume a partition of a blank one it matches, volumes/locate.go:251-261 "
    "at v1.14.0-beta.1; a data disk is blank at the first install and after a replacement), so Rook's OSD prepare finds "
    "it in use and makes no OSD"
)


def _disk_selector(patch: dict[str, object]) -> str | None:
    """A volume document's CEL disk selector (provisioning.diskSelector.match), or None."""
    provisioning = patch.get("provisioning") if "kind" in patch else None
    selector = provisioning.get("diskSelector") if isinstance(provisioning, dict) else None
    match = selector.get("match") if isinstance(selector, dict) else None
    return match if isinstance(match, str) else None


def _ceph_disk(disk: str) -> cel.Disk:
    """A data disk as stacks.cel models it: never the system disk (installDisk is refused among dataDisks)."""
    return cel.inventory_disk(disk, system_disk=False, transport=_transport(disk))


def _excluding(disks: Sequence[str]) -> str:
    """The `&&` parts that are false for each of `disks`: its kernel name by dev_path, a /dev/disk link by symlinks
    (Talos lists a disk's /dev/disk links there; dev_path is always the kernel name)."""
    parts = [f"disk.dev_path != '{d}'" if not d.startswith("/dev/disk/") else f"!('{d}' in disk.symlinks)" for d in disks]
    return " && ".join(dict.fromkeys(parts))


def volume_fix(match: str, disks: Sequence[str]) -> str:
    """The selector with the parts that keep it off `disks` appended (a group when it has a top-level || or ?:)."""
    grouped = f"({match.strip()})" if "||" in match or "?" in match else match.strip()
    return f"{grouped} && {_excluding(disks)}"


def _noted(keys: Sequence[str], unknown: Sequence[str]) -> str:
    """A verdict's parenthesis: the data disks one name is (when several), and the fields the inventory does not tell."""
    notes = ([", ".join(keys)] if keys else []) + ([f"the inventory does not tell its {', '.join(unknown)}"] if unknown else [])
    return f" ({'; '.join(notes)})" if notes else ""


def _off_ceph(match: str, ceph: Sequence[tuple[str, str]]) -> str:
    """`match` with the parts that keep it off each data disk it may select appended (itself when it selects none)."""
    node = cel.parse(match)
    taken = [disk for _, disk in ceph if cel.evaluate(node, _ceph_disk(disk)).value is not False]
    return volume_fix(match, list(dict.fromkeys(taken))) if taken else match


def _volume_on_ceph(path: str, match: str, owner: str, ceph: Sequence[tuple[str, str]]) -> Iterator[Problem]:
    """A selector Talos refuses (stacks.cel.RefusedError: it type-checks the selector as it reads the config, so the
    config is refused at apply), on any machine; and on one with data disks, a volume selector that is true, or may be
    (the inventory does not tell the fields it reads), for a data disk: Ceph's disk would be provisioned. An expression
    outside what stacks.cel reads is refused there as well, as which disks it selects cannot be told."""
    try:
        node = cel.parse(match)
    except cel.RefusedError as e:
        fix = (
            f"write `{_off_ceph(e.fix, ceph)}`"
            if e.fix is not None
            else e.advice
            if e.advice is not None
            else "write it in what Talos's environment has (disk.<field>, system_disk, glob() and the uint size units, as "
            "in Talos's own `disk.size > 120u * GB && disk.size < 1u * TB`)"
        )
        yield Problem(
            path,
            f"{match} is refused by Talos, which type-checks the selector as it reads the config (volume_config.go:436-437, "
            f"cel.go:65-80 at v1.14.0-rc.1), so the machine config is refused at apply: {e}; {fix}",
        )
        return
    except cel.UnreadableError as e:
        if not ceph:
            return
        yield Problem(
            path,
            f"{match}: Iluvatar cannot tell which disks it selects, as {e}, and {owner} has data disks Ceph takes "
            f"({', '.join(sorted({d for _, d in ceph}))}); write it with disk.<field> compared by ==, !=, <, >, in, "
            "startsWith, endsWith, contains, matches or glob(), size(), exists() or all(), joined by &&, || and !, with "
            f"`&& {_excluding(sorted({d for _, d in ceph}))}` to keep it off them, or select the install disk: `system_disk`",
        )
        return
    results = [(key, disk, cel.evaluate(node, _ceph_disk(disk))) for key, disk in ceph]
    taken = [(key, disk, r) for key, disk, r in results if r.value is not False]
    if not taken:
        return
    # A stack-wide patch meets one disk name on several machines: one verdict a name, with every data disk it is.
    verdicts: dict[tuple[str, bool, tuple[str, ...]], list[str]] = {}
    for key, disk, r in taken:
        verdicts.setdefault((disk, r.value is True, tuple(sorted(r.unknown))), []).append(key)
    said = ", ".join(
        ("selects " if sure else "may select ")
        + (f"{keys[0]} {disk}" if len(keys) == 1 else disk)
        + _noted(keys if len(keys) > 1 else [], [] if sure else unknown)
        for (disk, sure, unknown), keys in verdicts.items()
    )
    fix = volume_fix(match, [disk for _, disk, _ in taken])
    yield Problem(
        path,
        f"{match} {said}, which Ceph takes as {'an OSD' if len(taken) == 1 else 'OSDs'}: {_SELECTED}; select the disk the "
        f"volume should use (`system_disk`: the install disk), or write `{fix}` to keep it off Ceph's",
    )


def _one_disk(device: str, disk: str) -> bool:
    """Whether a patch's /dev path is data disk `disk` or a partition of it: the same name, an NVMe namespace's other
    by-id link or by-path link (by_path_one_disk), or a partition's kernel name or -partN link. A kernel name beside a link is not compared (the stack
    does not tie them; stacks.warn warns of the pair in the inventory)."""
    named = [device] if (parent := partition_of(device)) is None else [device, parent]
    return any(d == disk or _one_namespace(d, disk) or _one_nvme_namespace(d, disk) or by_path_one_disk(d, disk) == "same" for d in named)


# `$patch: delete` in a patch makes it a delete selector: Talos removes the map (or the list item, or the document) it
# sits in from the config it patches, Iluvatar's generated one, before any later patch is merged
# (pkg/machinery/config/configloader/internal/decoder/delete.go:61-66,146-151 and configpatcher/strategic.go:52-66 at
# v1.14.0-beta.1). Every rule here reads a patch as merged into what plans.talos generates (a map merged, a list
# appended), so a delete takes away what they count on: machine.kubelet.nodeIP's subnet, cluster.etcd's, a volume,
# a whole generated document. It is refused wherever it is, not under the generated keys alone: which keys Iluvatar
# generates follows the stack (its nodes, options and Talos version), and under a key it does not generate the delete
# removes only what the user's own earlier patch set there, which that patch can leave out instead. Talos reads no
# other `$patch` value (`replace` is Kubernetes's, not Talos's): such a key is refused too, as it does nothing.
PATCH_DIRECTIVE = (
    "from the config it patches (decoder/delete.go:146-151, configpatcher/strategic.go:52-66 at v1.14.0-beta.1), and "
    "what Iluvatar generated there with it, while validate's rules read a patch as merged into Iluvatar's config, so they "
    "cannot see past it; remove `$patch` and write the values wanted (a patch's map is merged into Iluvatar's, a list "
    "appended), or change the stack setting Iluvatar generates the key from"
)


def _deleted(where: str) -> str:
    """What a `$patch: delete` at `where` deletes: a list's item is the one whose value of the item's other key is the
    same (decoder/delete.go:61-66), a map's key the whole key."""
    if not where:
        return "the whole document"
    if where.endswith("]"):
        return f"the {where.rsplit('[', 1)[0]} item whose other key matches"
    return where


def _patch_directives(path: str, patch: object, where: str = "") -> Iterator[Problem]:
    """Each `$patch` key in a patch, at any depth (PATCH_DIRECTIVE)."""
    if isinstance(patch, dict):
        for key, value in patch.items():
            if key != "$patch":
                yield from _patch_directives(path, value, f"{where}.{key}" if where else str(key))
                continue
            at = f"{path}.{where}.$patch" if where else f"{path}.$patch"
            if value == "delete":
                yield Problem(at, f"delete is refused: Talos deletes {_deleted(where)} {PATCH_DIRECTIVE}")
            else:
                yield Problem(
                    at,
                    f"{yaml_flow(value)} is refused: Talos knows `$patch: delete` alone (decoder/delete.go:146 at v1.14.0-beta.1; "
                    "`replace` is Kubernetes's strategic merge, not Talos's), and Iluvatar refuses that too, as its rules cannot "
                    "see past a delete; remove it",
                )
    elif isinstance(patch, list):
        for i, item in enumerate(patch):
            yield from _patch_directives(path, item, f"{where}[{i}]")


def _patch_keys(path: str, patch: dict[str, object]) -> Iterator[Problem]:
    """A volume key in a patch that stacks.encryption refuses in the stack: a patch's document is merged into Iluvatar's
    of the same kind and name (a VolumeConfig EPHEMERAL's `encryption.keys` list with it), so a key written there
    would seal the volume as surely as one the stack chose."""
    enc = patch.get("encryption")
    keys = enc.get("keys") if isinstance(enc, dict) else None
    for k, key in enumerate(keys if isinstance(keys, list) else []):
        for kind in encryption.REFUSED:
            if isinstance(key, dict) and kind in key:
                yield Problem(f"{path}.encryption.keys[{k}].{kind}", f"is refused: {encryption.REFUSED[kind]}; use iluvatar:arda.encryption")


def _paths(node: Node) -> set[str]:
    """The disks a node names by /dev path (a selector names none)."""
    return {d for d in (node.install_disk, *node.data_disks) if isinstance(d, str)}


# The Kubernetes components' images a v1alpha1 patch may pin, with the repository Talos takes each from
# (pkg/machinery/constants/constants.go:381-387 and the kubelet's and kube-proxy's beside them at v1.13.9). The
# provider generates each as `<repository>:<kubernetesVersion>` (pkg/machinery/config/generate/init.go:28,149-160,
# worker.go:32 at v1.13.9), and a patch's image replaces it. Iluvatar upgrades Kubernetes by generating the config
# again at the new kubernetesVersion and applying the same patches over it (components/arda.machine_configuration),
# so a pinned tag stays where it was, and the upgrader waits for the pods the config names (upgrader/internal/
# staticpods Images): what runs is the patch's release at every kubernetesVersion, not the one validate, the
# outputs and the day-2 plan name. (talosctl upgrade-k8s, which Iluvatar does not run, would instead overwrite the
# image with its --*-image repository and the new tag, dropping a mirror's name: pkg/cluster/kubernetes/
# talos_managed.go:358-372.)
COMPONENT_IMAGES: dict[tuple[str, ...], tuple[str, str]] = {
    ("cluster", "apiServer", "image"): ("kube-apiserver", "registry.k8s.io/kube-apiserver"),
    ("cluster", "controllerManager", "image"): ("kube-controller-manager", "registry.k8s.io/kube-controller-manager"),
    ("cluster", "scheduler", "image"): ("kube-scheduler", "registry.k8s.io/kube-scheduler"),
    # Off unless a patch sets cluster.proxy.disabled false (plans.talos turns it off for Cilium; the *bool false replaces it).
    ("cluster", "proxy", "image"): ("kube-proxy (when a patch turns it on)", "registry.k8s.io/kube-proxy"),
    ("machine", "kubelet", "image"): ("the kubelet", "ghcr.io/siderolabs/kubelet"),
}
# The kubelet's image variants Talos's own upgrade keeps beside the tag (pkg/cluster/kubernetes/kubelet.go:170-178 at
# v1.13.9): the same release.
KUBELET_VARIANTS = ("", "-fat", "-slim")


def image_tag(image: str) -> str | None:
    """An image reference's tag (`v1.34.12`), None when it has none (a bare name is `:latest`; a digest names no
    release)."""
    name = image.split("@", 1)[0]
    _, colon, tag = name.rpartition(":")
    return tag if colon and "/" not in tag else None


def _component_images(p: Parsed) -> list[Problem]:
    """A patch that pins a Kubernetes component's image to another release than arda.kubernetesVersion. One of the
    same tag from another registry (a mirror) is accepted: it runs the release the stack names, and at the next
    kubernetesVersion its tag differs and this rule refuses it, naming the key, so it is never left behind unsaid."""
    if p.arda is None:
        return []
    version = p.arda.kubernetes_version
    out: list[Problem] = []
    for path, patch in talos_patch_paths(p):
        if "kind" in patch:
            continue
        for keys, (component, repository) in COMPONENT_IMAGES.items():
            image: object = patch
            for key in keys:
                image = image.get(key) if isinstance(image, dict) else None
            if not isinstance(image, str):
                continue
            tag = image_tag(image)
            variants = KUBELET_VARIANTS if keys[0] == "machine" else ("",)
            if tag is not None and tag in (f"{version}{v}" for v in variants):
                continue
            said = f"is tag {tag}, not" if tag is not None else "has no tag (a bare name is :latest, a digest names no release), so it is not"
            registry = repository.split("/", 1)[0]
            out.append(
                Problem(
                    f"{path}.{'.'.join(keys)}",
                    f"{image} {said} arda.kubernetesVersion {version}: the patch's image replaces the one Talos takes from "
                    f"kubernetesVersion, so {component} runs another release than the one validate, the outputs and the day-2 "
                    f"plan name, and stays there at every later kubernetesVersion (Iluvatar's upgrade applies the patch over the "
                    f"new release's config); remove image from the patch (Talos then runs {repository}:{version}); for a mirror, "
                    f"add {{apiVersion: v1alpha1, kind: RegistryMirrorConfig, name: {registry}, endpoints: [{{url: <the mirror>}}]}} "
                    f"to iluvatar:arda.patches instead, or write the mirror's image with the tag {version}",
                )
            )
    return out


# An etcd image's tag as a release: etcd's own (v3.6.12), Talos's from 1.14 on (3.7.1), or registry.k8s.io's build of
# it (3.5.21-0, the -<n> a rebuild of the same etcd).
_ETCD_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-\d+)?$")


def etcd_release(image: str) -> tuple[int, int, int] | None:
    """The etcd release an image's tag names, or None (no tag, or a tag of no release)."""
    tag = image_tag(image)
    m = _ETCD_TAG.match(tag) if tag is not None else None
    return (int(m[1]), int(m[2]), int(m[3])) if m is not None else None


def newer_etcd_patch(talos: str, image: str) -> bool:
    """Whether `image` is a later patch release of the etcd minor Talos `talos` runs (3.7.2 beside its 3.7.1): etcd keeps
    one data version a minor (its cluster version is major.minor, etcd server/etcdserver/version), so it starts on the
    release's data and the release's etcdutl reads its snapshots; stacks.warn says it is pinned, not refused here."""
    if talos not in releases.ETCD:
        return False  # the release's own patch is not known: compared by minor alone
    want = tuple(int(x) for x in releases.etcd_of(talos).split("."))
    have = etcd_release(image)
    return have is not None and have[:2] == want[:2] and have > want


def _etcd_image(p: Parsed) -> list[Problem]:
    """A patch that pins cluster.etcd.image to another etcd than the one arda.talosVersion runs (stacks.releases.etcd_of:
    its release where the table knows it, else its minor). Talos runs the config's etcd image in place of its
    DefaultEtcdVersion (stacks.releases.ETCD), and Iluvatar applies the same patches over every later Talos's config, so
    a pinned etcd stays where it was. A lower minor than a cluster has run is a downgrade etcd refuses to start: the
    member exits (etcd v3.5 server/etcdserver/api/membership/downgrade.go mustDetectDowngrade, v3.6 on server/etcdserver/
    version/downgrade.go MustDetectDowngrade: "cluster cannot be downgraded"),
    and with it the Kubernetes API of a control plane. One of the same release from another registry (a mirror) is
    accepted, as COMPONENT_IMAGES's are: at the next Talos its release differs and this rule names it then. A later patch
    of the same minor is an upgrade etcd takes (newer_etcd_patch): warned of (stacks.warn), not refused."""
    if p.arda is None:
        return []
    talos = p.arda.talos_version
    if releases.minor_of(talos) not in releases.ETCD_MINOR:
        return []  # a Talos release this Iluvatar does not support: refused as that
    etcd = releases.etcd_of(talos)
    want = tuple(int(x) for x in etcd.split("."))
    default_tag = ("v" if releases.minor_of(talos) < (1, 14) else "") + etcd
    out: list[Problem] = []
    for path, patch in talos_patch_paths(p):
        cluster = patch.get("cluster") if "kind" not in patch else None
        etcd_config = cluster.get("etcd") if isinstance(cluster, dict) else None
        image = etcd_config.get("image") if isinstance(etcd_config, dict) else None
        if not isinstance(image, str):
            continue
        tag = image_tag(image)
        m = _ETCD_TAG.match(tag) if tag is not None else None
        have = tuple(int(x) for x in m.groups()[: len(want)]) if m is not None else None
        if have == want or newer_etcd_patch(talos, image):
            continue
        if tag is None:
            said = "has no tag (a bare name is :latest, a digest names no release), so it is not"
        elif have is None:
            said = f"is tag {tag}, no etcd release, not"
        else:
            said = f"is etcd {'.'.join(m.groups()[:3]) if m is not None else tag}, not"
        harm = (
            f"a lower etcd minor than {want[0]}.{want[1]} is a downgrade etcd refuses once the cluster has run {want[0]}.{want[1]}: "
            'the member exits ("cluster cannot be downgraded") and Arda\'s API stops with it; '
            if have is not None and have[:2] < want[:2]
            else ""
        )
        out.append(
            Problem(
                f"{path}.cluster.etcd.image",
                f"{image} {said} etcd {etcd}, the etcd Talos {talos} runs: {harm}the patch's image replaces the one Talos takes "
                "from its release, so etcd runs another release than the one validate, the day-2 plan and the restore drill's "
                "etcdutl follow, and stays there at every later talosVersion (Iluvatar's upgrade applies the patch over the new "
                f"release's config); remove image from the patch (Talos then runs registry.k8s.io/etcd:{default_tag}); for a "
                "mirror, add {apiVersion: v1alpha1, kind: RegistryMirrorConfig, name: registry.k8s.io, endpoints: [{url: <the "
                f"mirror>}}]}} to iluvatar:arda.patches instead, or write the mirror's image with the tag {default_tag}",
            )
        )
    return out


def _talos_patches(p: Parsed) -> list[Problem]:
    out: list[Problem] = []
    arda_nodes = [(i, n) for i, n in p.nodes if n.role in ARDA_ROLES]
    for i, node in p.nodes:
        if node.talos_patches and node.role not in ARDA_ROLES:
            out.append(Problem(node_path(i, "talosPatches"), f"{node.name} is {node.role}, which does not run Talos"))
            continue
        disks = _paths(node)
        ceph = [(f"dataDisks[{d}]", disk) for d, disk in enumerate(node.data_disks)]
        for k, patch in enumerate(node.talos_patches):
            out += _patch(node_path(i, f"talosPatches[{k}]"), patch, disks, node.name, [node.board], ceph)
            out += [
                Problem(node_path(i, f"talosPatches[{k}]"), f"sets {'.'.join(keys)}; {why}")
                for keys, why in CLUSTER_WIDE.items()
                if "kind" not in patch and _has(patch, keys)
            ]
    if p.arda is not None and p.arda.patches:
        shared = set.intersection(*(_paths(n) for _, n in arda_nodes)) if arda_nodes else set()
        for k, patch in enumerate(p.arda.patches):
            everyone = [(f"nodes[{i}].dataDisks[{d}] of {n.name}", disk) for i, n in arda_nodes for d, disk in enumerate(n.data_disks)]
            out += _patch(f"iluvatar:arda.patches[{k}]", patch, shared, "every Arda node", [n.board for _, n in arda_nodes], everyone)
    if p.arda is not None and releases.minor_of(p.arda.talos_version) == (1, 12):
        out += kinds_1_12_refuses(talos_patch_paths(p), f"Talos {p.arda.talos_version}")
    return out + _install_nic_links(p) + _link_names_refused(p) + _routing_rule_links(p) + _shared_identities(p) + _time_sync_conflicts(p)


# The names under which a patch's link document reaches the install NIC, which plans.talos configures as lan0 (its
# LinkAliasConfig by the node's MAC). Talos resolves every link document's name, alias, altname or kernel name alike, to
# the one link (siderolabs/talos internal/app/machined/pkg/controllers/network/link_config.go:431 at v1.14.0-rc.1, the
# nearest tag the mirror has to v1.14.1; bond and bridge members :482, :498; DHCP operator_config.go:128) and the later
# document's settings win (:441), so a document naming the install NIC by another name overrides lan0's. The stack
# knows two such names: power.wakeOnLan.link (its kernel name) and enx<mac>, systemd's predictable name from the MAC.
# Aliases are sorted by name and a link keeps the first that matches it (link_alias_config.go:128-130, :165-176), so an
# alias sorting before lan0 or selecting the node's MAC takes the NIC from lan0, which then names nothing.
_NAMED_LINK_DOCUMENTS = frozenset({"LinkConfig", "DHCPv4Config", "DHCPv6Config"})
_MEMBER_DOCUMENTS = frozenset({"BondConfig", "BridgeConfig", "VRFConfig"})
_SELECTED_MAC = re.compile(r'mac\(link\.permanent_addr\)\s*==\s*"([0-9A-Fa-f:]{17})"')
_OTHER_NIC_FIX = (
    "name another NIC by a LinkAliasConfig selecting its own MAC under a name sorting after lan0 (apiVersion: v1alpha1, "
    "kind: LinkAliasConfig, name: nic1, selector: {match: 'mac(link.permanent_addr) == \"<its mac>\"'}) and use that name"
)


def _install_nic_names(node: Node) -> dict[str, str]:
    """The names the stack ties to a node's install NIC, each with where it comes from."""
    names = {TALOS_LINK_ALIAS: f"the link Iluvatar configures from {node.name}'s ip"}
    where = f"the install NIC, which Iluvatar configures as {TALOS_LINK_ALIAS} from {node.name}'s ip"
    names[f"enx{node.mac.replace(':', '').lower()}"] = f"systemd's name from {node.name}'s mac {node.mac} for {where}"
    if node.power is not None and node.power.wake_on_lan is not None:
        names.setdefault(node.power.wake_on_lan.link, f"{node.name}'s power.wakeOnLan.link, the kernel name of {where}")
    return names


def _install_nic_links(p: Parsed) -> list[Problem]:
    """Patch documents that reach the install NIC under another name, take its alias, or enslave or down it."""
    shared = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(p.arda.patches)] if p.arda is not None else []
    out: list[Problem] = []
    for i, node in p.nodes:
        if node.role not in ARDA_ROLES:
            continue
        names = _install_nic_names(node)
        patches = [*shared, *((node_path(i, f"talosPatches[{k}]"), patch) for k, patch in enumerate(node.talos_patches))]
        others = {patch.get("name") for _, patch in patches if patch.get("kind") == "LinkAliasConfig" and _alias_selects_other_mac(patch, node.mac)}
        for path, patch in patches:
            # A document of arda.patches reaches every machine: it is said once, of the first it would harm.
            if not any(problem.path.startswith(f"{path}.") for problem in out):
                out += _install_nic_document(path, patch, node, names, others)
    return out


def _selector(patch: dict[str, object]) -> str:
    selector = patch.get("selector")
    match = selector.get("match") if isinstance(selector, dict) else None
    return match if isinstance(match, str) else ""


def _alias_selects_other_mac(patch: dict[str, object], mac: str) -> bool:
    match = _selector(patch)
    macs = {m.lower() for m in _SELECTED_MAC.findall(match)}
    return bool(macs) and mac.lower() not in match.lower()


def _install_nic_document(path: str, patch: dict[str, object], node: Node, names: dict[str, str], others: set[object]) -> Iterator[Problem]:
    kind, name = patch.get("kind"), patch.get("name")
    if kind == "LinkAliasConfig" and isinstance(name, str) and name != TALOS_LINK_ALIAS:
        if name < TALOS_LINK_ALIAS:
            yield Problem(
                f"{path}.name",
                f"{name} sorts before {TALOS_LINK_ALIAS}: Talos gives each link the first alias by name that matches it, so were its "
                f"selector to match {node.name}'s NIC ({node.mac}), this alias would take it and {TALOS_LINK_ALIAS} (its address and "
                f"default route) would name no link; name it to sort after {TALOS_LINK_ALIAS} (nic1, storage0)",
            )
        elif node.mac.lower() in _selector(patch).lower():
            yield Problem(
                f"{path}.selector.match",
                f"selects {node.name}'s own MAC {node.mac}, the NIC Iluvatar aliases as {TALOS_LINK_ALIAS}; select another NIC's "
                'MAC (mac(link.permanent_addr) == "<its mac>")',
            )
    elif kind in _NAMED_LINK_DOCUMENTS and isinstance(name, str):
        if name in names and (name != TALOS_LINK_ALIAS or kind != "LinkConfig"):
            fix = "Iluvatar gives it a static address; remove the document" if kind != "LinkConfig" else "change that in the stack instead"
            yield Problem(
                f"{path}.name",
                f"{name} is {names[name]}: Talos applies a {kind} to every name of its link, overriding "
                f"{TALOS_LINK_ALIAS}'s settings; {fix}, or {_OTHER_NIC_FIX}",
            )
        elif kind == "LinkConfig" and patch.get("up") is False and name not in others:
            yield Problem(
                f"{path}.up",
                f"false on {name}, which nothing ties to a NIC other than {node.name}'s install NIC ({node.mac}): were it that NIC, "
                f"Talos would take {TALOS_LINK_ALIAS} down and the machine off the LAN; {_OTHER_NIC_FIX}",
            )
    elif kind in _MEMBER_DOCUMENTS:
        links = patch.get("links")
        for k, link in enumerate(links if isinstance(links, list) else []):
            if isinstance(link, str) and link in names:
                yield Problem(
                    f"{path}.links[{k}]",
                    f"{link} is {names[link]}: Talos makes it a member of {kind.removesuffix('Config').lower()} {name}, and its address and default route stop working; "
                    f"{_OTHER_NIC_FIX}",
                )


# The link documents' keys that name a link which must already exist on the machine, as against the name of a link the
# document creates (a bond, a VLAN). Talos configures a link by name only once a link of that name exists: a physical
# link it does not find is left alone, silently (siderolabs/talos internal/app/machined/pkg/controllers/network/
# link_spec.go:448 at v1.14.0-rc.1, :345 at v1.13.0), a VLAN waits for its parent (:464; :361), an address for its link
# (address_spec.go:208; :199), and a member or DHCP client is a setting of the link it names. So a name no link of the
# machine has configures nothing there. An EthernetConfig is left out: Talos hands its name to ethtool as it is
# (ethernet_spec.go:110-112), so it takes a kernel name alone, which the stack cannot check (power.wakeOnLan.link is one).
_LINK_NAME_KEYS: dict[str, str] = {"LinkConfig": "name", "DHCPv4Config": "name", "DHCPv6Config": "name", "VLANConfig": "parent"}
# The documents that create a link of their name, which other documents may then name.
_LOGICAL_LINK_DOCUMENTS = frozenset({"BondConfig", "BridgeConfig", "VLANConfig", "DummyLinkConfig", "VRFConfig", "WireguardConfig"})
# systemd's predictable name from a NIC's MAC (`enx` and the MAC's 12 hex digits): the one kernel name that says which NIC.
_ENX = re.compile(r"^enx([0-9a-f]{12})$")


def _named_links(path: str, patch: dict[str, object]) -> Iterator[tuple[str, str]]:
    """The links a document names as existing ones (`_LINK_NAME_KEYS`, a bond's, bridge's or VRF's members), each with
    its key."""
    kind = patch.get("kind")
    key = _LINK_NAME_KEYS.get(kind) if isinstance(kind, str) else None
    if key is not None and isinstance(name := patch.get(key), str):
        yield f"{path}.{key}", name
    elif kind in _MEMBER_DOCUMENTS:
        links = patch.get("links")
        for k, link in enumerate(links if isinstance(links, list) else []):
            if isinstance(link, str):
                yield f"{path}.links[{k}]", link


def _alias_fix(key: str, mac: str, known: Container[str], each: Sequence[tuple[int, Node]] = ()) -> str:
    """The document that names a NIC by its MAC, and the key to write its name at: an alias after lan0 no document
    of the machine's patches takes, a member its own (links[1] nic2). For a key of arda.patches (`each`, the Arda
    machines), the alias goes in each machine's own patches, each selecting its own NIC: an alias selects one MAC, which
    one machine has at most."""
    field = key.rsplit(".", 1)[1]
    member = int(field.split("[", 1)[1].rstrip("]")) if field.startswith("links[") else 0
    alias = [f"nic{n}" for n in range(1, 100) if f"nic{n}" not in known][member]
    where = (
        f" in the own patches of {_machines([n.name for _, n in each], 0)} ({', '.join(node_path(i, 'talosPatches') for i, _ in each)}), each selecting its own NIC's MAC"
        if len(each) > 1
        else f" in {each[0][1].name}'s own patches ({node_path(each[0][0], 'talosPatches')})"
        if each
        else ""
    )
    return (
        f"{where}: {{apiVersion: v1alpha1, kind: LinkAliasConfig, name: {alias}, selector: {{match: 'mac(link.permanent_addr) == \"{mac}\"'}}}}, "
        f"and {field}: {alias}" + (f" (or {field}: {TALOS_LINK_ALIAS} for the install NIC)" if field == "parent" else "")
    )


# A selector that names one NIC by its MAC, as the alias fix writes it (Talos's CEL link locator, mac() of a link's
# permanent_addr or hardware_addr). Any other selector may match several of a machine's links.
_ONE_MAC_SELECTOR = re.compile(r'^\s*mac\(link\.(?:permanent_addr|hardware_addr)\)\s*==\s*"([0-9A-Fa-f:]{17})"\s*$')


@dataclass(frozen=True)
class Alias:
    """A LinkAliasConfig of a patch."""

    key: str  # the document's config path
    name: str
    mac: str  # the 12 hex digits of the one MAC its selector names; else ""
    pattern: re.Pattern[str] | None  # for a pattern alias (net%d), the names it gives


def _aliases(patches: Sequence[tuple[str, dict[str, object]]]) -> list[Alias]:
    """The patches' aliases in the order Talos applies them: by name (link_alias_config.go:129-131 at v1.14.0-rc.1)."""
    out: list[Alias] = []
    for path, patch in patches:
        if patch.get("kind") == "LinkAliasConfig" and isinstance(name := patch.get("name"), str):
            one = _ONE_MAC_SELECTOR.match(_selector(patch))
            # A pattern alias's name is a prefix and %d (pkg/machinery/config/types/network/link_alias.go:159-163); Talos
            # numbers the links it matches from 0 (link_alias_config.go:183-187).
            pattern = re.compile(re.escape(name.split("%", 1)[0]) + r"\d+") if "%" in name else None
            out.append(Alias(path, name, one[1].replace(":", "").lower() if one else "", pattern))
    return sorted(out, key=lambda a: a.name)


@dataclass(frozen=True)
class LinkName:
    """A link a patch names that a machine it reaches is not known to have (`unknown_link_names`)."""

    key: str  # the config path, `iluvatar:` and all
    name: str
    machines: tuple[str, ...]  # the machines' names
    owner: tuple[str, str] | None  # for an enx<mac> name of another inventory machine's MAC: its key and its name
    mac: str  # the MAC an enx<mac> name or `via` says, written as the inventory writes one; else ""
    fix: str
    via: str = ""  # the key of the alias of arda.patches that gives the name to the one machine of its MAC at most
    elsewhere: str = ""  # the key of an alias of that name in another machine's own patches


def _colons(digits: str) -> str:
    return ":".join(digits[j : j + 2] for j in range(0, 12, 2))


def unknown_link_names(nodes: Sequence[tuple[int, Node]], shared: Sequence[dict[str, object]]) -> list[LinkName]:
    """The links a patch names (`_named_links`) that an Arda machine it reaches is not known to have, each once for its
    key with every such machine. Known are the names the stack ties to the machine's install NIC (`_install_nic_names`:
    lan0, enx<mac>, power.wakeOnLan.link), lo, and the links its patches (`shared`, arda.patches, and its own) create
    or alias (`_LOGICAL_LINK_DOCUMENTS`, a LinkAliasConfig, a pattern alias's numbered names). An alias of arda.patches
    selecting one MAC is known on none of two or more machines: one machine has that NIC at most (`via`). Any other
    name is a kernel name the inventory cannot tell; an enx<mac> name says its MAC, and is certainly not the machine's
    when that MAC is another inventory machine's."""
    macs = {n.mac.replace(":", "").lower(): (i, n) for i, n in nodes}
    arda = [(i, n) for i, n in nodes if n.role in ARDA_ROLES]
    found: dict[str, LinkName] = {}
    avoid: dict[str, set[str]] = {}
    everywhere: set[str] = set()
    shared_paths = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(shared)]
    own = {i: [(node_path(i, f"talosPatches[{k}]"), patch) for k, patch in enumerate(node.talos_patches)] for i, node in arda}
    elsewhere = {a.name: a.key for i in own for a in _aliases(own[i])}
    for i, node in arda:
        patches = [*shared_paths, *own[i]]
        aliases = _aliases(patches)
        partial = {a.name: a for a in aliases if a.key.startswith("iluvatar:arda.") and a.mac and len(arda) > 1}
        known = {"lo", *_install_nic_names(node)}
        known |= {name for _, patch in patches if patch.get("kind") in _LOGICAL_LINK_DOCUMENTS and isinstance(name := patch.get("name"), str)}
        known |= {a.name for a in aliases if a.name not in partial and a.pattern is None}
        patterns = [a.pattern for a in aliases if a.pattern is not None]
        everywhere.update(known, partial)
        for path, patch in patches:
            for key, name in _named_links(path, patch):
                if name in known or any(pattern.fullmatch(name) for pattern in patterns):
                    continue
                enx = _ENX.match(name.lower())
                via = partial.get(name)
                mac = _colons(enx[1]) if enx else _colons(via.mac) if via is not None else ""
                other = macs.get(enx[1]) if enx else None
                owner = (f"nodes[{other[0]}].mac", other[1].name) if other is not None else None
                # The fix's alias takes a name no link of the machines has; a shared alias the fix removes frees its own.
                avoid.setdefault(key, set()).update(known, partial if via is None or not key.startswith("iluvatar:arda.") else ())
                if key in found:
                    found[key] = replace(found[key], machines=(*found[key].machines, node.name))
                else:
                    # Another machine's MAC is no fix: the machine's own NIC is meant, whose MAC the inventory lacks.
                    fix = mac if enx and owner is None else "<its mac>"
                    via_key = via.key if via is not None else ""
                    found[key] = LinkName(key, name, (node.name,), owner, mac, fix, via_key, "" if via is not None else elsewhere.get(name, ""))
    # The fix for a key of arda.patches goes in the own patches of each machine that lacks the link, or, where the fix
    # renames the link, of every Arda machine (the name is new to them all).
    out: list[LinkName] = []
    for f in found.values():
        lacking = [(i, n) for i, n in arda if n.name in f.machines]
        if not f.key.startswith("iluvatar:arda."):
            out.append(replace(f, fix=_alias_fix(f.key, f.fix, avoid[f.key])))
        elif f"{f.key.rsplit('.', 1)[1]}: {f.name}" in _alias_fix(f.key, f.fix, avoid[f.key], lacking):
            out.append(replace(f, fix=_alias_fix(f.key, f.fix, avoid[f.key], lacking)))
        else:
            out.append(replace(f, fix=_alias_fix(f.key, f.fix, everywhere, arda)))
    return out


def _machines(names: Sequence[str], arda: int) -> str:
    """The machines a message names: "every Arda machine" when a shared patch reaches them all unknown."""
    if len(names) == arda and arda > 1:
        return f"every Arda machine ({', '.join(names)})"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# Why a name no link of the machine has configures nothing, for the messages.
_UNAPPLIED = (
    "Talos configures a link by name only once a link of that name exists, and leaves the document unapplied, silently, "
    "while none does (siderolabs/talos internal/app/machined/pkg/controllers/network/link_spec.go:448 and :464, "
    "address_spec.go:208 at v1.14.0-rc.1)"
)


def _link_names_refused(p: Parsed) -> list[Problem]:
    """An enx<mac> name of another inventory machine's MAC in a patch that reaches a machine: that NIC is not its. A
    name of arda.patches that an alias of arda.patches gives the NIC of one MAC: at most one machine has it."""
    arda = [(i, n) for i, n in p.nodes if n.role in ARDA_ROLES]
    out: list[Problem] = []
    for f in unknown_link_names(p.nodes, p.arda.patches if p.arda is not None else ()):
        if f.owner is not None:
            out.append(
                Problem(
                    f.key,
                    f"{f.name} is systemd's name for {f.owner[1]}'s NIC ({f.owner[0]} {f.mac}), which {_machines(f.machines, len(arda))} "
                    f"{'does' if len(f.machines) == 1 else 'do'} not have: {_UNAPPLIED}, so it configures nothing there; name the NIC meant by its own MAC{f.fix}",
                )
            )
        elif f.via and f.key.startswith("iluvatar:arda."):
            out.append(
                Problem(
                    f.key,
                    f"{f.name} is the alias {f.via} gives the NIC of MAC {f.mac}, which one machine has at most, so on the others of "
                    f"{_machines(f.machines, len(arda))} no link is named {f.name}: {_UNAPPLIED}, so there the document configures nothing; "
                    f"remove {f.via} and name each machine's NIC by its MAC{f.fix}",
                )
            )
    return out + _alias_conflicts(p)


def _alias_conflicts(p: Parsed) -> list[Problem]:
    """A LinkAliasConfig that names no link of a machine it reaches: one selecting another inventory machine's MAC, or a
    MAC an alias before it by name selects (Talos skips an alias for a link already aliased: link_alias_config.go:163-176
    at v1.14.0-rc.1)."""
    macs = {n.mac.replace(":", "").lower(): (i, n) for i, n in p.nodes}
    shared = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(p.arda.patches)] if p.arda is not None else []
    out: list[Problem] = []
    for i, node in p.nodes:
        if node.role not in ARDA_ROLES:
            continue
        first: dict[str, Alias] = {TALOS_LINK_ALIAS: Alias("", TALOS_LINK_ALIAS, node.mac.replace(":", "").lower(), None)}
        by_mac = {first[TALOS_LINK_ALIAS].mac: first[TALOS_LINK_ALIAS]}
        for a in _aliases([*shared, *((node_path(i, f"talosPatches[{k}]"), patch) for k, patch in enumerate(node.talos_patches))]):
            other = macs.get(a.mac)
            key = f"{a.key}.selector.match"
            if any(q.path == key for q in out) or not a.mac or a.name == TALOS_LINK_ALIAS:
                continue
            if other is not None and other[1].name != node.name and (not a.key.startswith("iluvatar:arda.") or other[1].role not in ARDA_ROLES):
                out.append(
                    Problem(
                        key,
                        f"selects {_colons(a.mac)}, {other[1].name}'s MAC (nodes[{other[0]}].mac), a NIC {node.name} does not have, so no "
                        f"link of it is named {a.name}: {_UNAPPLIED}, so a document naming {a.name} configures nothing there; "
                        f'select the MAC of {node.name}\'s own NIC (mac(link.permanent_addr) == "<its mac>")',
                    )
                )
            elif a.mac in by_mac and by_mac[a.mac].key and a.mac != first[TALOS_LINK_ALIAS].mac:
                before = by_mac[a.mac]
                out.append(
                    Problem(
                        key,
                        f"selects {_colons(a.mac)}, as {before.key} ({before.name}) does: Talos gives a link the first alias by name that "
                        f"selects it and skips the others (siderolabs/talos internal/app/machined/pkg/controllers/network/"
                        f"link_alias_config.go:129-131, :163-176 at v1.14.0-rc.1), so {a.name} names no link; remove it and name the "
                        f"link {before.name}",
                    )
                )
            by_mac.setdefault(a.mac, a)
    return out


def _routing_rule_links(p: Parsed) -> list[Problem]:
    """A RoutingRuleConfig's iifName or oifName that names no link the kernel knows by that name on a machine the patch
    reaches: an alias (lan0, a LinkAliasConfig's), or the enx<mac> name of another inventory machine's MAC. Talos hands
    both names to the kernel as written, resolving no alias (siderolabs/talos internal/app/machined/pkg/controllers/
    network/routing_rule_config.go:145-146, routing_rule_spec.go:374-379 at v1.14.0-rc.1), and an alias is the link's
    ifalias (link_alias_spec.go), which the kernel's rule matching does not read, so the rule would match no packet.
    Another kernel name is left alone: the fix would be that same name, and only `talosctl get links` can tell it."""
    macs = {n.mac.replace(":", "").lower(): (i, n) for i, n in p.nodes}
    shared = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(p.arda.patches)] if p.arda is not None else []
    out: list[Problem] = []
    for i, node in p.nodes:
        if node.role not in ARDA_ROLES:
            continue
        patches = [*shared, *((node_path(i, f"talosPatches[{k}]"), patch) for k, patch in enumerate(node.talos_patches))]
        aliases = _aliases(patches)
        own = f"enx{node.mac.replace(':', '').lower()}"
        fix = f"name the link by its kernel name, as `talosctl get links` shows it ({own} for {node.name}'s install NIC), or a link the patches create (a bond, a VLAN)"
        every = (
            f"move the rule to the own patches of each Arda machine ({', '.join(node_path(j, 'talosPatches') for j, n in p.nodes if n.role in ARDA_ROLES)}), "
            f"each naming its own link by its kernel name, as `talosctl get links` shows it (enx and its install NIC's MAC's digits, {own} on "
            f"{node.name}), or name a link the patches create (a bond, a VLAN)"
        )
        install = f"the alias Iluvatar gives {node.name}'s install NIC"
        for path, patch in patches:
            if patch.get("kind") != "RoutingRuleConfig":
                continue
            for field in ("iifName", "oifName"):
                name, key = patch.get(field), f"{path}.{field}"
                if not isinstance(name, str) or any(q.path == key for q in out):
                    continue
                alias = next((a for a in aliases if a.name == name or (a.pattern is not None and a.pattern.fullmatch(name))), None)
                enx = _ENX.match(name.lower())
                other = macs.get(enx[1]) if enx else None
                if name == TALOS_LINK_ALIAS or alias is not None:
                    out.append(
                        Problem(
                            key,
                            f"{name} is {f'the alias {alias.key} gives' if alias is not None else install}: "
                            "Talos hands a routing rule's link to the kernel as written, resolving no alias (siderolabs/talos "
                            "internal/app/machined/pkg/controllers/network/routing_rule_config.go:145-146 at v1.14.0-rc.1), and an alias "
                            f"is the link's ifalias, which the kernel's rules do not match, so the rule would match no packet; {every if key.startswith('iluvatar:arda.') else fix}",
                        )
                    )
                elif other is not None and other[1].name != node.name:
                    out.append(
                        Problem(
                            key,
                            f"{name} is systemd's name for {other[1].name}'s NIC (nodes[{other[0]}].mac {other[1].mac}), which {node.name} does "
                            f"not have, so the rule would match no packet there; {every if key.startswith('iluvatar:arda.') else fix}",
                        )
                    )
    return out


# The link documents that may set a link's MAC (`hardwareAddr`): Talos gives the link that address
# (siderolabs/talos pkg/machinery/config/types/network/bond.go:72, bridge.go:70, vrf.go:71, dummy.go:71 at v1.14.0-rc.1;
# internal/app/machined/pkg/controllers/network/link_spec.go:787-801 sets it).
_HARDWARE_ADDRESS_DOCUMENTS = frozenset({"BondConfig", "BridgeConfig", "VRFConfig", "DummyLinkConfig"})
# Of those, the links whose MAC reaches the switch: a bond or a bridge sends its frames from its own MAC. A dummy link
# puts no frame on any wire, and a VRF's frames leave through its member links, with their MACs, so one MAC on several
# machines' dummies or VRFs meets nothing.
_WIRE_MAC_DOCUMENTS = frozenset({"BondConfig", "BridgeConfig"})
# Why one MAC on two machines harms both: a switch learns a MAC on one port, and a DHCP server tells its clients apart by
# their MAC unless a client identifier says otherwise, and Talos's DHCP client sends the MAC by default
# (pkg/machinery/config/types/network/dhcp4.go:84, :161, dhcp6.go:79, :147 at v1.14.0-rc.1).
_ONE_MAC = (
    "a switch learns a MAC on one port, so it would send their frames to whichever spoke last, and a DHCP server, which tells "
    "clients apart by their MAC (Talos's default client identifier: siderolabs/talos pkg/machinery/config/types/network/"
    "dhcp4.go:84, :161 at v1.14.0-rc.1), would lease them one address"
)


def _mac_digits(value: object) -> str:
    """A MAC as its 12 lower-case hex digits ("" for anything else)."""
    digits = re.sub(r"[:\-.]", "", value.lower()) if isinstance(value, str) else ""
    return digits if re.fullmatch(r"[0-9a-f]{12}", digits) else ""


def _duid_source(family: str) -> str:
    """Where Talos reads a DHCP document's DUID and sends it as the client identity."""
    return (
        f"siderolabs/talos pkg/machinery/config/types/network/{'dhcp4.go:84-95' if family == 'DHCPv4' else 'dhcp6.go:79-90'}, "
        f"internal/app/machined/pkg/controllers/network/operator_config.go:{263 if family == 'DHCPv4' else 280} at v1.14.0-rc.1"
    )


def _shared_identities(p: Parsed) -> list[Problem]:
    """A machine's identity on the LAN, its link's MAC (`hardwareAddr` of a bond or a bridge, `_WIRE_MAC_DOCUMENTS`) or a
    fixed DHCP client identity (a DUID), that two machines would hold: set in arda.patches, which every Arda machine gets
    (plans.talos.node_patches), with two or more of them; the same in two machines' own patches; or (a MAC) another
    inventory machine's."""
    arda = [(i, n) for i, n in p.nodes if n.role in ARDA_ROLES]
    macs = {n.mac.replace(":", "").lower(): (i, n) for i, n in p.nodes}
    every = f"arda.patches goes to every Arda machine ({', '.join(n.name for _, n in arda)}), so all {len(arda)} would"
    patches: list[tuple[str, dict[str, object], Node | None]] = [
        *((f"iluvatar:arda.patches[{k}]", patch, None) for k, patch in enumerate(p.arda.patches if p.arda is not None else [])),
        *((node_path(i, f"talosPatches[{k}]"), patch, node) for i, node in arda for k, patch in enumerate(node.talos_patches)),
    ]
    # Each machine's own MACs and DUIDs, by value: the first key that sets each on each machine.
    own: dict[tuple[str, str], dict[str, str]] = {}
    for path, patch, machine in patches:
        if machine is None:
            continue
        kind = patch.get("kind")
        if kind in _WIRE_MAC_DOCUMENTS and (digits := _mac_digits(patch.get("hardwareAddr"))):
            own.setdefault(("mac", digits), {}).setdefault(machine.name, f"{path}.hardwareAddr")
        if kind in ("DHCPv4Config", "DHCPv6Config") and patch.get("clientIdentifier") == "duid" and isinstance(duid := patch.get("duidRaw"), str):
            own.setdefault((str(kind), duid.replace(":", "").lower()), {}).setdefault(machine.name, f"{path}.clientIdentifier")
    out: list[Problem] = []
    for path, patch, machine in patches:
        kind, name = patch.get("kind"), patch.get("name")
        in_shared = machine is None
        # The machines the patch reaches: every Arda machine for arda.patches, one alone for its own.
        reached = [n for _, n in arda] if machine is None else [machine]
        if kind in _WIRE_MAC_DOCUMENTS and (digits := _mac_digits(written := patch.get("hardwareAddr"))):
            link = f"{str(kind).removesuffix('Config').lower()} {name}"
            owner = macs.get(digits)
            twin = next(((n, at) for n, at in own.get(("mac", digits), {}).items() if machine is not None and n != machine.name), None)
            if in_shared and len(arda) > 1:
                out.append(
                    Problem(
                        f"{path}.hardwareAddr",
                        f"{written}: {every} give their {link} this one MAC: {_ONE_MAC}; remove hardwareAddr (each machine's "
                        f"{link} then takes a MAC of its own), or set one per machine in each machine's own patches",
                    )
                )
            elif owner is not None and (other := next((n for n in reached if n.name != owner[1].name), None)) is not None:
                out.append(
                    Problem(
                        f"{path}.hardwareAddr",
                        f"{written} is {owner[1].name}'s MAC (nodes[{owner[0]}].mac), which {other.name} would give its {link} too, "
                        f"and the two would share it: {_ONE_MAC}; remove hardwareAddr",
                    )
                )
            elif machine is not None and twin is not None:
                out.append(
                    Problem(
                        f"{path}.hardwareAddr",
                        f"{written} is what {twin[1].removeprefix('iluvatar:')} gives {twin[0]}'s link too, so {machine.name} and "
                        f"{twin[0]} would share it: {_ONE_MAC}; remove hardwareAddr (the {link} then takes a MAC of its own), or "
                        "give each machine a MAC of its own",
                    )
                )
        if kind in ("DHCPv4Config", "DHCPv6Config") and patch.get("clientIdentifier") == "duid":
            family = "DHCPv4" if kind == "DHCPv4Config" else "DHCPv6"
            duid = patch.get("duidRaw")
            twin = next(
                (
                    (n, at)
                    for n, at in own.get((str(kind), duid.replace(":", "").lower() if isinstance(duid, str) else ""), {}).items()
                    if machine is not None and n != machine.name
                ),
                None,
            )
            if in_shared and len(arda) > 1:
                out.append(
                    Problem(
                        f"{path}.clientIdentifier",
                        f"duid with duidRaw {duid}: {every} send the {family} server this one client identity for "
                        f"{name} ({_duid_source(family)}), and the server, which leases by it, "
                        "would give them one lease and they would fight for its address; remove clientIdentifier and duidRaw (each "
                        "machine then identifies by its link's MAC, Talos's default), or give each machine its own duidRaw in a "
                        "document of its own patches",
                    )
                )
            elif machine is not None and twin is not None:
                out.append(
                    Problem(
                        f"{path}.clientIdentifier",
                        f"duid with duidRaw {duid}, which {twin[1].removeprefix('iluvatar:')} gives {twin[0]} too, so {machine.name} "
                        f"and {twin[0]} would send the {family} server one client identity ({_duid_source(family)}), and the server, "
                        "which leases by it, would give them one lease and they would fight for its address; remove "
                        "clientIdentifier and duidRaw (each machine then identifies by its link's MAC, Talos's default), or give "
                        "each machine a duidRaw of its own",
                    )
                )
    return out


def link_name_doubts(nodes: Sequence[tuple[int, Node]], shared: Sequence[dict[str, object]]) -> list[Problem]:
    """A name a patch gives a link that a machine it reaches is not known to have, and may not; an alias whose
    selector may match several links (stacks.warn)."""
    arda = [(i, n) for i, n in nodes if n.role in ARDA_ROLES]
    out = [
        Problem(
            f.key,
            (
                f"{f.name} is the alias {f.via} gives the NIC of MAC {f.mac}, which the inventory does not tie to "
                if f.via
                else f"{f.name} is systemd's name for the NIC of MAC {f.mac}, which the inventory does not list for "
                if f.mac
                else f"{f.name} is an alias another machine's own patches give ({f.elsewhere}), which do not reach "
                if f.elsewhere
                else f"{f.name} is a kernel name the inventory cannot tell is a link of "
            )
            + f"{_machines(f.machines, len(arda))}: {_UNAPPLIED}, so were {'it' if len(f.machines) == 1 else 'a machine'} to have "
            f"no link {f.name} (`talosctl get links` lists them), the document would configure nothing there; name the NIC by "
            f"its MAC{f.fix}",
        )
        for f in unknown_link_names(nodes, shared)
        if f.owner is None and not (f.via and f.key.startswith("iluvatar:arda."))
    ]
    patches = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(shared)]
    patches += [(node_path(i, f"talosPatches[{k}]"), patch) for i, n in arda for k, patch in enumerate(n.talos_patches)]
    for a in _aliases(patches):
        if not a.mac and a.pattern is None:
            out.append(
                Problem(
                    f"{a.key}.selector.match",
                    f"may match more than one link of a machine (it names no one MAC), and Talos gives a fixed alias only to a "
                    f"selector that matches one link, skipping it otherwise (siderolabs/talos internal/app/machined/pkg/"
                    f"controllers/network/link_alias_config.go:151-161 at v1.14.0-rc.1), so {a.name} would name no link; name the "
                    'NIC by its MAC (mac(link.permanent_addr) == "<its mac>")',
                )
            )
    return out


# The v1alpha1 time settings Talos refuses beside a TimeSyncConfig document in one machine's config, each with its
# error and the document's key that takes it (siderolabs/talos pkg/machinery/config/types/network/time_sync.go,
# V1Alpha1ConflictValidate: :151, :155, :159 at v1.12.4 and v1.13.0, :169, :173, :177 at v1.14.0-rc.1).
TIME_SYNC_CONFLICTS = {
    "disabled": ("time sync cannot be disabled in both v1alpha1 and new-style configuration", "set the document's enabled: false"),
    "servers": ("time servers cannot be specified in both v1alpha1 and new-style configuration", "write the servers in the document's ntp.servers"),
    "bootTimeout": (
        "boot timeout cannot be specified in both v1alpha1 and new-style configuration",
        "write the timeout as the document's bootTimeout",
    ),
}


def _time_sync_conflicts(p: Parsed) -> list[Problem]:
    """machine.time of a v1alpha1 patch beside a TimeSyncConfig document that reaches the same machine: every patch of
    arda.patches and each machine's own talosPatches are one machine's config, which Talos refuses whole
    (TIME_SYNC_CONFLICTS). Said once for each pair of patches, at the v1alpha1 key."""
    if p.arda is None:
        return []
    shared = [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(p.arda.patches)]
    said: set[tuple[str, str]] = set()
    out: list[Problem] = []
    for i, node in p.nodes:
        if node.role not in ARDA_ROLES:
            continue
        patches = [*shared, *((node_path(i, f"talosPatches[{k}]"), patch) for k, patch in enumerate(node.talos_patches))]
        documents = [path for path, patch in patches if patch.get("kind") == "TimeSyncConfig"]
        if not documents:
            continue
        for path, patch in patches:
            machine = patch.get("machine") if "kind" not in patch else None
            time = machine.get("time") if isinstance(machine, dict) else None
            if not isinstance(time, dict) or (path, documents[0]) in said:
                continue
            for key, (error, instead) in TIME_SYNC_CONFLICTS.items():
                value = time.get(key)
                if (value is not True) if key == "disabled" else not value:
                    continue  # disabled: false, an empty list, a zero timeout: Talos reads none of them as set
                said.add((path, documents[0]))
                everyone = path.startswith("iluvatar:arda.") and documents[0].startswith("iluvatar:arda.")
                out.append(
                    Problem(
                        f"{path}.machine.time.{key}",
                        f"{yaml_flow(value)}, and the TimeSyncConfig document {documents[0].removeprefix('iluvatar:')}, both in the "
                        f'config of {"every Arda machine" if everyone else node.name}: Talos refuses the config ("{error}"); '
                        f"{instead} and remove machine.time.{key}",
                    )
                )
    return out


def talos_patches_of(arda: Arda | None, nodes: Sequence[tuple[int, Node]]) -> list[tuple[str, dict[str, object]]]:
    """Every Talos patch of Arda, with the config path it was written at."""
    out = [(node_path(i, f"talosPatches[{k}]"), patch) for i, n in nodes if n.role in ARDA_ROLES for k, patch in enumerate(n.talos_patches)]
    if arda is not None:
        out += [(f"iluvatar:arda.patches[{k}]", patch) for k, patch in enumerate(arda.patches)]
    return out


def talos_patch_paths(p: Parsed) -> list[tuple[str, dict[str, object]]]:
    return talos_patches_of(p.arda, p.nodes)


def _kernel_args(p: Parsed) -> list[Problem]:
    """Kernel arguments for a board no Arda machine is: no schematic carries them (plans.talos.schematic_boards)."""
    if p.arda is None or not p.nodes_complete:
        return []
    used = {n.board for _, n in p.nodes if n.role in ARDA_ROLES}
    if p.ainur is not None and p.ainur.netboot.generic_worker is not None:
        used.add(p.ainur.netboot.generic_worker.board)
    if p.ainur_set and p.arda.discovery is not None:
        used.update(discovery_boards(p.arda.discovery.arches, (n.arch for _, n in p.nodes if n.role in ARDA_ROLES)).values())
    return [
        Problem(
            f"iluvatar:arda.kernelArgs.{board}",
            f"no Arda machine is a {board} (Arda's boards: {', '.join(sorted(used)) or 'none'}), so no schematic would carry "
            f"{kernel_args_flow(args)}; key them by one of those boards",
        )
        for board, args in p.arda.kernel_args.items()
        if board not in used
    ]


def _kernel_ip(p: Parsed) -> list[Problem]:
    """An `ip=` kernel argument (stacks.addresses.ip_args) whose client address is not its one machine's own, or whose
    gateway is no router of the stack. Talos reads it before any configuration (network/cmdline.go:126-221 at ad882317):
    the link takes the client address, with DHCP off unless autoconf is dhcp, and a board's arguments are in its
    schematic and each of its machines' iPXE script (plans.talos, plans.netboot.ipxe), so every machine of the board,
    and every unknown one discovery or the generic worker boots on it, comes up at that one address, none at its own
    ip, where `up` applies its configuration. Its DNS and NTP servers are the address table's (stacks.addresses)."""
    if p.arda is None or not p.nodes_complete:
        return []
    out: list[Problem] = []
    for arg in ip_args(p.arda.kernel_args):
        key = f"iluvatar:{arg.path}"
        if (unparsed := _ip_unparsed(arg, p.network)) is not None:
            out.append(Problem(key, unparsed))
            continue
        machines = [(i, n) for i, n in p.nodes if n.role in ARDA_ROLES and n.board == arg.board]
        unknown = (p.ainur is not None and p.ainur.netboot.generic_worker is not None and p.ainur.netboot.generic_worker.board == arg.board) or (
            p.ainur_set
            and p.arda.discovery is not None
            and arg.board in discovery_boards(p.arda.discovery.arches, (n.arch for _, n in p.nodes if n.role in ARDA_ROLES)).values()
        )
        gateways = _ip_routers(p.network, [arg.client] if arg.client else [str(n.ip) for _, n in machines])
        gateway = str(gateways[0][1]) if gateways else ""
        if arg.client and (len(machines) > 1 or unknown):
            names = ", ".join(n.name for _, n in machines)
            also = " and every unknown machine Arda boots on it" if unknown else ""
            out.append(
                Problem(
                    key,
                    f"{arg.written}: its client address {arg.client} is every {arg.board} machine's ({names}{also}): the board's "
                    f"schematic and iPXE scripts carry its kernel arguments, and Talos gives the link that address before any "
                    f"configuration, so they would all boot at {arg.client}, none at its own nodes[].ip where `up` applies its "
                    f"configuration; remove the argument (each machine's address is its nodes[].ip)",
                )
            )
            continue
        if arg.client and machines and arg.client != str(machines[0][1].ip):
            i, node = machines[0]
            out.append(
                Problem(
                    key,
                    f"{arg.written}: its client address {arg.client} is not nodes[{i}].ip {node.ip} ({node.name}, the one "
                    f"{arg.board} machine): Talos gives the link that address before any configuration, so {node.name} would boot "
                    f"at {arg.client}, where `up` does not look for it; write {_own_form(arg, node.ip, p.network)}, or remove the "
                    "argument",
                )
            )
            continue
        if arg.fields[6] != "dhcp" and not arg.client:
            # Talos turns DHCP on only for autoconf exactly dhcp (network/cmdline.go:173-176 at v1.14.0-rc.1), names the
            # first link when none is (:199-219) and records it as configured from the command line, which its default
            # DHCP then leaves out (operator_config.go:310, 320).
            fix = _ip_form(arg, {2: gateway if arg.gateway else "", 6: "dhcp"})
            autoconf = f"autoconf {arg.fields[6]}" if arg.fields[6] else "no autoconf"
            out.append(
                Problem(
                    key,
                    f"{arg.written}: it gives the link no address and no DHCP (no client address, and {autoconf}, where Talos "
                    f"turns DHCP on only for exactly dhcp), and Talos then leaves that link out of its default DHCP, so the "
                    f"{arg.board} machines would boot with no address and `up` could reach none of them; write {fix}, or "
                    f"remove the argument",
                )
            )
            continue
        if arg.fields[6] != "dhcp" and not arg.fields[3] and not arg.gateway and p.network is not None:
            # Without a netmask Talos gives the link a /32 (network/cmdline.go:143-144 at v1.14.0-rc.1), and with no
            # gateway there is no route: the machine could answer no one.
            who = machines[0][1].name if machines else f"the {arg.board} machine"
            net = next((c for c in p.network.subnets() if IPv4Address(arg.client) in c), None) if _is_v4(arg.client) else None
            fix = _ip_form(arg, {2: gateway, 3: str(net.prefixlen)}) if net is not None and gateway else ""
            out.append(
                Problem(
                    key,
                    f"{arg.written}: no netmask and no gateway: Talos gives the link {arg.client}/32 and no route, so {who} could "
                    f"answer no one, `up` included; "
                    + (f"write {fix}, or remove the argument" if fix else "write the subnet's netmask and its router, or remove the argument"),
                )
            )
            continue
        if (wide := _ip_too_wide(arg, p.network)) is not None:
            out.append(Problem(key, wide))
            continue
        if arg.gateway and p.network is not None and gateways and arg.gateway not in {str(ip) for _, ip in gateways}:
            named = " or ".join(f"{path} {ip}" for path, ip in gateways)
            out.append(
                Problem(
                    key,
                    f"{arg.written}: its gateway {arg.gateway} is not the router's ({named}): Talos routes everything off the "
                    f"link's subnet there before any configuration, so the {arg.board} machines could reach no other subnet; "
                    f"write {gateway} there, or leave the field empty",
                )
            )
    return out


# The ip= fields Talos parses, with what each must be (network/cmdline.go:134-193 at v1.14.0-rc.1).
_IP_FIELDS = {0: "client address", 2: "gateway", 3: "netmask", 7: "dns0-ip", 8: "dns1-ip", 9: "ntp0-ip"}


def _is_v4(value: str) -> bool:
    try:
        IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_ip(value: str) -> bool:
    """Whether Go's netip.ParseAddr reads the value: an IPv4 or IPv6 address (an IPv6 one may carry a zone)."""
    try:
        ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _ip_unparsed(arg: IpArg, network: Network | None) -> str | None:
    """Why Talos cannot parse an `ip=` argument, or None. On an error ParseCmdlineNetwork returns it
    (network/cmdline.go:141, 147, 160, 182, 191 at v1.14.0-rc.1), and every network controller then drops all of the
    command line's networking (address_config.go:181-186, route_config.go:155-160, link_config.go:240-245)."""
    for j, name in _IP_FIELDS.items():
        value = arg.fields[j]
        if not value:
            continue
        if j == 3:
            if re.fullmatch(r"[+-]?[0-9]+", value) or _is_ip(value):
                continue
            prefix = f" ({network.lan.prefixlen} for network.lan)" if network is not None else ""
            want, why = f"a prefix length{prefix} or a dotted netmask", ""
        elif _is_ip(value):
            continue
        elif j in (7, 8, 9) and value.isdigit():
            want, why = "an IP address", " (an MTU has no field in Talos's form)"
        elif j in (7, 8, 9):
            want, why = "an IP address", " (Talos takes no names there)"
        else:
            want, why = "an IP address", ""
        return (
            f"{arg.written}: its {name} {value} is not {want}{why}: Talos cannot parse the argument, and then ignores all of "
            f"the command line's networking (every ip=, bond= and vlan=); write {want} there, or leave the field empty"
        )
    return None


def _ip_too_wide(arg: IpArg, network: Network | None) -> str | None:
    """Why an `ip=` netmask wider than its client address's subnet is refused, or None. Talos takes the prefix as
    written (network/cmdline.go:150-165 at v1.14.0-rc.1; a dotted mask by its leading ones), and every address inside
    it as on the link: the machine would ask for those by ARP, not through the router."""
    if network is None or not arg.fields[3] or not _is_v4(arg.client):
        return None
    net = next((c for c in network.subnets() if IPv4Address(arg.client) in c), None)
    mask = arg.fields[3]
    try:
        ones = int(mask) if re.fullmatch(r"[0-9]+", mask) else IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return None
    if net is None or ones >= net.prefixlen:
        return None
    key = "network.lan" if net == network.lan else f"network.vlans[{[v.cidr for v in network.vlans].index(net)}].cidr"
    return (
        f"{arg.written}: its netmask {mask} is /{ones}, wider than {key} {net}: Talos takes every address of "
        f"{IPv4Network(f'{arg.client}/{ones}', strict=False)} as on the link, so the machine would look for the other "
        f"addresses in it there, not through the router; write {net.prefixlen} there"
    )


def _ip_routers(network: Network | None, addresses: Sequence[str]) -> list[tuple[str, IPv4Address]]:
    """The routers (stacks.addresses.routers) of the subnets the addresses are in; every router when none is known."""
    if network is None:
        return []
    every = routers(network)
    subnets = [c for c in network.subnets() if any(_is_v4(a) and IPv4Address(a) in c for a in addresses)]
    mine = [(path, ip) for path, ip in every if any(ip in c for c in subnets)]
    return mine or every


def _own_form(arg: IpArg, own: IPv4Address, network: Network | None) -> str:
    """What to write for a client address that is not the machine's own: the address alone where the argument has a
    netmask, a gateway or DHCP; else the whole form, with the subnet's netmask and router (alone the address would be
    a /32 with no route)."""
    if arg.fields[3] or arg.gateway or arg.fields[6] == "dhcp" or network is None:
        return f"{own} there"
    net = next((c for c in network.subnets() if own in c), network.lan)
    gateway = str(_ip_routers(network, [str(own)])[0][1])
    return _ip_form(arg, {0: str(own), 2: gateway, 3: str(net.prefixlen)})


def _ip_form(arg: IpArg, changes: Mapping[int, str]) -> str:
    """The argument with some fields changed, its trailing empty fields dropped (an IPv6 address in brackets)."""
    fields = [changes.get(j, f) for j, f in enumerate(arg.fields)]
    while fields and not fields[-1]:
        fields.pop()
    return "ip=" + ":".join(f"[{f}]" if ":" in f else f for f in fields)


def _encryption(p: Parsed) -> list[Problem]:
    """Volume encryption's keys (stacks.encryption): never static or nodeID, a TPM only where the board has one, the
    KMS only with the Ainur that serve it."""
    if p.arda is None:
        return []
    boards = [n.board for _, n in p.nodes if n.role in ARDA_ROLES]
    if p.ainur is not None and p.ainur.netboot.generic_worker is not None:
        boards.append(p.ainur.netboot.generic_worker.board)
    return list(encryption.problems(p.arda.encryption, boards, p.ainur_set))


def _netboot(p: Parsed) -> list[Problem]:
    """Which machines can boot from the Ainur, and how the Ainur answer unknown ones."""
    out: list[Problem] = _pi_netboot(p) + netboot_mode.static(p.ainur, p.network, p.arda.discovery if p.arda is not None else None)
    for i, node in p.nodes:
        if node.boot != "netboot" or node.role not in ARDA_ROLES:
            continue
        board = BOARDS[node.board]
        if not p.ainur_set:
            out.append(Problem(node_path(i, "boot"), "netboot needs iluvatar:ainur, which serves DHCP/PXE; set boot: disk or add the Ainur"))
        elif not board.netboot:
            out.append(
                Problem(
                    node_path(i, "boot"),
                    f"netboot: {board.name} ({board.description}) cannot chainload iPXE; set boot: disk and flash the Talos image",
                )
            )
        elif node.vlan is not None:
            out.append(
                Problem(
                    node_path(i, "boot"), f"netboot: the Ainur answer PXE only on network.lan, and {node.name} is on VLAN {node.vlan}; set boot: disk"
                )
            )
    # At network.gateway, the router is the DNS server network.dns names and the service address is the slip: said once,
    # at ainur.serviceIp (_address_in_lan), not also here, where the fix would move a correct key.
    if p.ainur is not None and p.network is not None and p.ainur.service_ip in p.network.dns and p.ainur.service_ip != p.network.gateway:
        k = p.network.dns.index(p.ainur.service_ip)
        out.append(
            Problem(
                f"{NET}.dns[{k}]",
                f"{p.ainur.service_ip} is ainur.serviceIp; network.dns is where the Ainur forward names outside the zone, so it must be another server",
            )
        )
    if p.ainur is not None:
        nb = p.ainur.netboot
        if nb.unknown_macs == "generic-worker" and nb.generic_worker is None:
            out.append(
                Problem(
                    "iluvatar:ainur.netboot.genericWorker",
                    "is required when unknownMacs is generic-worker: {board, installDisk} of the machines that may join",
                )
            )
        if nb.generic_worker is not None:
            board = BOARDS[nb.generic_worker.board]
            if not board.netboot:
                able = ", ".join(sorted(b.name for b in BOARDS.values() if b.netboot))
                out.append(Problem("iluvatar:ainur.netboot.genericWorker.board", f"{board.name} cannot netboot Talos (boards that can: {able})"))
            disk = nb.generic_worker.install_disk
            if isinstance(disk, str):
                out += [Problem("iluvatar:ainur.netboot.genericWorker.installDisk", why) for why in install_disk_problems(disk)]
            if isinstance(disk, DiskSelector) and (why := exact_size(disk.size)) is not None:
                out.append(Problem("iluvatar:ainur.netboot.genericWorker.installDisk.size", why))
    return out


# The boards whose bootloader netboots as plans.netboot.pis serves it: the Raspberry Pi 4 and 5 EEPROM bootloaders.
PI_NETBOOT_BOARDS = ("rpi4", "rpi5")
# NFS-Ganesha numbers each netbooting Pi's roots from its serial (plans.netboot.nfs): PI_EXPORT_SLOTS ids in a row, one
# per root it may have at once (the image it runs, the one it boots next, one more left over), in Ganesha's 16 bits
# (0 and 1 are its own). Derived, not counted, so another Pi coming or going never renumbers a root a Pi holds open.
PI_EXPORT_SLOTS = 4
PI_EXPORT_BASES = (65536 - 2) // PI_EXPORT_SLOTS


def pi_export_base(serial: str) -> int:
    """The first of a netbooting Pi's NFS export ids, less 2, over PI_EXPORT_SLOTS: two serials equal modulo
    PI_EXPORT_BASES clash."""
    return int(serial, 16) % PI_EXPORT_BASES


def _export_clash(i: int, node: Node, bases: dict[int, tuple[int, Node]]) -> list[Problem]:
    """A netbooting maia whose serial gives the NFS export ids an earlier one's gives (pi_export_base)."""
    assert node.serial is not None
    base = pi_export_base(node.serial)
    if base not in bases:
        bases[base] = (i, node)
        return []
    k, other = bases[base]
    return [
        Problem(
            node_path(i, "serial"),
            f"{node.serial} gives {node.name}'s roots (/pis/{node.name}/...) the NFS export ids that nodes[{k}].serial "
            f"({other.serial}) gives {other.name}'s (/pis/{other.name}/...): Ganesha numbers a Pi's roots from its serial, "
            f"modulo {PI_EXPORT_BASES}, and two roots cannot share one; netboot one of them only (set boot: disk on "
            f"{node.name} and flash its card)",
        )
    ]


def _pi_netboot(p: Parsed) -> list[Problem]:
    """Which Ainur machines boot from the Ainur (a maia, by its Raspberry Pi bootloader), and the serial it asks TFTP under."""
    out: list[Problem] = []
    valar = [n for _, n in p.nodes if n.role == "valar"]
    serials: dict[str, tuple[int, str]] = {}
    bases: dict[int, tuple[int, Node]] = {}
    for i, node in p.nodes:
        if node.host_key_read and (node.role != "maiar" or node.boot != "netboot"):
            # Only a netbooting maia's host key is read and pinned by a step of its own (components.ainur.Pi).
            out.append(
                Problem(
                    node_path(i, "hostKeyRead"),
                    f"is read only for a maia with boot: netboot (the step that reads and pins its SSH host key); {node.name} "
                    "has no such step: remove it",
                )
            )
        if node.role not in AINUR_ROLES:
            if node.serial is not None:
                out.append(
                    Problem(
                        node_path(i, "serial"), f"is a Raspberry Pi's, read only for a maia with boot: netboot; {node.name} is {node.role}: remove it"
                    )
                )
            continue
        if node.serial is not None:
            if node.serial in serials:
                k, other = serials[node.serial]
                out.append(
                    Problem(
                        node_path(i, "serial"),
                        f"{node.serial} is already nodes[{k}].serial ({other}); each Pi's bootloader asks TFTP under its own serial",
                    )
                )
            else:
                serials[node.serial] = (i, node.name)
                if node.boot == "netboot" and node.role == "maiar":
                    out += _export_clash(i, node, bases)
        if node.boot != "netboot":
            if node.serial is not None:
                out.append(
                    Problem(
                        node_path(i, "serial"),
                        "is read only with boot: netboot (the Pi's bootloader asks TFTP under it); set boot: netboot or remove it",
                    )
                )
            continue
        if node.role == "valar":
            first = bool(valar) and valar[0].name == node.name
            why = (
                "the first valar starts the Ainur, and something must serve the first boot"
                if first
                else "a valar is a k3s server and etcd member, and the Ainur must run to serve the netboot that boots it"
            )
            out.append(Problem(node_path(i, "boot"), f"netboot is for maiar: {why}; set boot: disk and flash its card"))
            continue
        if node.board not in PI_NETBOOT_BOARDS:
            board = BOARDS[node.board]
            out.append(
                Problem(
                    node_path(i, "boot"),
                    f"a maia netboots with the Raspberry Pi bootloader ({', '.join(PI_NETBOOT_BOARDS)}); {node.name} is a {board.name} "
                    f"({board.description}): set boot: disk",
                )
            )
        if node.serial is None:
            out.append(
                Problem(
                    node_path(i, "serial"),
                    "is required with boot: netboot: the Pi's bootloader asks TFTP for its files under it; "
                    "set the last 8 hex digits of `grep Serial /proc/cpuinfo` (or of the serial on its HDMI diagnostics screen)",
                )
            )
    return out


# Talos's own control arguments (pkg/machinery/constants/constants.go at v1.14.0-rc.1), which arda.kernelArgs puts on
# every netboot line of the board and into its Image Factory schematic, so into every boot of its installed machines.
# Talos reads one value of each, the first on the command line (procfs Get(...).First()), and the rendered iPXE line
# puts the board's arguments before Iluvatar's own talos.config.
_TALOS_CONTROL_ARGS = {
    "talos.config": (
        "is Iluvatar's own argument: Talos fetches its config from the first talos.config on the command line "
        "(internal/app/machined/pkg/runtime/v1alpha1/platform/metal/metal.go:51 at v1.14.0-rc.1), and the board's "
        "arguments come before the one Iluvatar writes, so the machine boots that config instead of the one Iluvatar "
        "serves, and a control plane or discovered machine never waits in maintenance mode for pulumi up"
    ),
    "talos.config.early": (
        "is a machine config Talos reads before any other on every boot (constants.go:34-37 at v1.14.0-rc.1), under the one Iluvatar serves"
    ),
    "talos.experimental.wipe": (
        "tells Talos to wipe the system disk and reboot: with any value but an empty one it runs wipeDisks "
        "(ResetSystemDiskPartitions) on every boot (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go:128-132 at v1.14.0-rc.1), so "
        "the machine wipes itself and reboots in a loop"
    ),
    "talos.halt_if_installed": (
        "halts the boot of a machine Talos is installed on whenever it boots from other media, as every netbooted "
        "machine does, and waits for a boot from disk (v1alpha1_sequencer.go:134-141, v1alpha1_sequencer_tasks.go:"
        "1343-1351 at v1.14.0-rc.1)"
    ),
}
# The arguments Talos requires on every boot (pkg/kernel/kspp/kspp.go:26-27 at v1.14.0-rc.1): removed with `-`, the
# enforceKSPPRequirements task fails ("KSPP kernel parameter ... is required", kspp.go:38) and machined does not start.
_KSPP_ARGS = ("slab_nomerge", "pti")
# talos.platform picks where Talos reads its config (internal/app/machined/pkg/runtime/v1alpha1/platform at
# v1.14.0-rc.1): only metal reads talos.config (metal/metal.go:49-54), and a name Talos does not know, or none, fails
# CurrentPlatform (platform.go:71-87, 146-147).
_PLATFORM = (
    "Talos reads its machine config from the platform talos.platform names, and only metal reads the talos.config Iluvatar "
    "serves (internal/app/machined/pkg/runtime/v1alpha1/platform/metal/metal.go:49-54 at v1.14.0-rc.1): another platform "
    'waits for its own metadata instead, and a removed or unknown one fails with "failed to determine platform" or '
    '"unknown platform" (platform.go:71-87, 146-147), so machined does not start'
)
# talos.config.oauth.* configure the OAuth2 device-authorization flow metal runs before it fetches talos.config.
_OAUTH = (
    "talos.config.oauth.* configure an OAuth2 device-authorization flow Talos runs before it fetches talos.config (a "
    "client_id turns it on: metal.go:82-96, oauth2/oauth2.go:48-55 at v1.14.0-rc.1), and Iluvatar's HTTP "
    "server does no OAuth, so every machine of the board it serves a config retries until its config load times out "
    "and never gets it"
)
# Which values of those arguments act (v1alpha1_sequencer.go at v1.14.0-rc.1): wipe runs when its value is not empty
# (SafeDeref(...) != "", :128-132), so a bare talos.experimental.wipe does nothing; halt_if_installed runs only when
# strconv.ParseBool gives true (:134-141), so 0, false or a bare one does nothing.
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_ACTS: dict[str, Callable[[str], bool]] = {
    "talos.experimental.wipe": lambda value: value != "",
    "talos.halt_if_installed": lambda value: value in _GO_TRUE,
}


def _talos_control_args(p: Parsed) -> list[Problem]:
    """A board's kernel argument that is one of Talos's own controls, or removes an argument Talos requires."""
    if p.arda is None:
        return []
    out: list[Problem] = []
    for board, args in p.arda.kernel_args.items():
        for k, arg in enumerate(args):
            key, _, value = str(arg).partition("=")
            path = f"iluvatar:arda.kernelArgs.{board}[{k}]"
            acts = _ACTS.get(key)
            if (key == "talos.platform" and value != "metal") or key == "-talos.platform":
                out.append(Problem(path, f"{arg} is refused: {_PLATFORM}; remove it (Iluvatar's boards run metal)"))
            elif key.startswith("talos.config.oauth."):
                out.append(Problem(path, f"{masked_kernel_arg(str(arg))} is refused: {_OAUTH}; remove it"))
            elif key in _TALOS_CONTROL_ARGS and (acts is None or acts(value)):
                shown = masked_kernel_arg(str(arg))
                out.append(Problem(path, f"{shown} is refused: {key} {_TALOS_CONTROL_ARGS[key]}; remove it"))
            elif key.startswith("-") and key.removeprefix("-") in _KSPP_ARGS:
                kept = key.removeprefix("-")
                out.append(
                    Problem(
                        path,
                        f"{arg} is refused: it removes {kept}, which Talos requires on every boot (pkg/kernel/kspp/kspp.go:"
                        f'26-38 at v1.14.0-rc.1): its enforceKSPPRequirements task fails with "KSPP kernel parameter {kept} '
                        f'is required" and machined does not start; remove it',
                    )
                )
    return out


def _cilium_on_kubeprism(p: Parsed, prism_port: int) -> bool:
    """Whether the Cilium values rendered reach Arda's API server through KubePrism: Iluvatar's k8sServiceHost localhost
    and k8sServicePort unless arda.cilium.values replace them, and no k8s.apiServerURLs (the agents' own list, which
    stacks.chart_owned accepts only at KubePrism or Arda's VIP on 6443)."""
    if p.arda is None:
        return True
    values = p.arda.cilium.values
    k8s = values.get("k8s")
    urls = k8s.get("apiServerURLs") if isinstance(k8s, dict) else None
    if urls is not None and str(urls).strip():
        return all(
            (parsed := urlsplit(url if "//" in url else f"//{url}")).hostname in ("localhost", "127.0.0.1") and _url_port(parsed) == prism_port
            for url in str(urls).replace(",", " ").split()
        )
    host = values.get("k8sServiceHost", "localhost")
    port = values.get("k8sServicePort", prism_port)
    return str(host) in ("localhost", "127.0.0.1") and str(port) == str(prism_port)


def _url_port(parsed: SplitResult) -> int:
    try:
        return parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return 0


def _cilium_pins(p: Parsed) -> list[Problem]:
    """A patch that undoes what Iluvatar's Cilium relies on: KubePrism on localhost:KUBEPRISM_PORT, where the Cilium
    values (plans.cilium: k8sServiceHost localhost, k8sServicePort KUBEPRISM_PORT) reach the API server before any
    Service works, and cni `none` (plans.talos), Cilium being Arda's one CNI; and hostDNS on, which the generated
    config's forwardKubeDNSToHost requires. A later patch's value replaces an earlier
    one for these scalars, so each patch that writes another is refused."""
    # Imported here: plans.talos imports the model stacks.rules is loaded beside.

    out: list[Problem] = []
    on_prism = _cilium_on_kubeprism(p, KUBEPRISM_PORT)
    for path, patch in talos_patch_paths(p):
        if "kind" in patch:
            continue
        machine = patch.get("machine")
        features = machine.get("features") if isinstance(machine, dict) else None
        prism = features.get("kubePrism") if isinstance(features, dict) else None
        at = f"{path}.machine.features.kubePrism"
        where = (
            f"Iluvatar's Cilium values reach Arda's API server at localhost:{KUBEPRISM_PORT} (k8sServiceHost: localhost, "
            f"k8sServicePort: {KUBEPRISM_PORT}, plans.cilium), KubePrism's endpoint, before any Service works: with nothing "
            "listening there, no Cilium agent starts, no node gets a network and Arda stays NotReady"
        )
        if on_prism and isinstance(prism, dict) and prism.get("enabled") is False:
            out.append(Problem(f"{at}.enabled", f"false turns KubePrism off: {where}; remove it"))
        host_dns = features.get("hostDNS") if isinstance(features, dict) else None
        if isinstance(host_dns, dict) and host_dns.get("enabled") is False and host_dns.get("forwardKubeDNSToHost") is not False:
            # The provider's generator writes hostDNS {enabled: true, forwardKubeDNSToHost: true} for contracts from
            # 1.8 (machinery v1.13.0 pkg/machinery/config/generate/worker.go:84-88, init.go), and a patch replaces only
            # the keys it writes.
            out.append(
                Problem(
                    f"{path}.machine.features.hostDNS.enabled",
                    "false is refused: Iluvatar's generated config keeps hostDNS.forwardKubeDNSToHost true, and Talos refuses "
                    'the machine config with "feature hostDNS.forwardKubeDNSToHost requires hostDNS.enabled to be true" '
                    "(pkg/machinery/config/types/v1alpha1/v1alpha1_validation.go:124-127 at v1.14.0-rc.1), so pulumi up "
                    "fails at every machine it applies to; remove it",
                )
            )
        port = prism.get("port") if isinstance(prism, dict) else None
        if isinstance(port, str):
            # Talos decodes the config strictly (yaml.v3 into an int field), so a quoted port fails the config itself,
            # whatever endpoint Cilium uses.
            out.append(
                Problem(
                    f"{at}.port",
                    f'"{port}" is a string, and Talos takes only a number here: it refuses the machine config when it '
                    f"decodes it; write the number unquoted (port: {port.strip() or KUBEPRISM_PORT})"
                    if port.strip().isdigit()
                    else f'"{port}" is a string, and Talos takes only a number here: it refuses the machine config when it '
                    f"decodes it; remove it (KubePrism's port is {KUBEPRISM_PORT})",
                )
            )
        elif on_prism and isinstance(prism, dict) and "port" in prism and port != KUBEPRISM_PORT:
            out.append(Problem(f"{at}.port", f"{show(port)} moves KubePrism off port {KUBEPRISM_PORT}: {where}; remove it"))
        cluster = patch.get("cluster")
        network = cluster.get("network") if isinstance(cluster, dict) else None
        cni = network.get("cni") if isinstance(network, dict) else None
        # A node's own patch may not set cluster.network at all (CLUSTER_WIDE): said there once.
        if isinstance(cni, dict) and "name" in cni and cni["name"] != "none" and path.startswith("iluvatar:arda."):
            out.append(
                Problem(
                    f"{path}.cluster.network.cni.name",
                    f"{show(cni['name'])} is refused: Iluvatar installs Cilium as Arda's CNI and writes cni: {{name: none}} "
                    "(plans.talos); with another name Talos applies that CNI's manifests at bootstrap (flannel's: "
                    "internal/app/machined/pkg/controllers/k8s/control_plane.go:456-460 at v1.14.0-rc.1) beside Cilium, "
                    "two CNIs on every node; remove it",
                )
            )
    return out
