"""What listens on a Pi of the Ainur, and the servers the stack names on a Pi against it.

A Pi of the Ainur runs Debian, so the stack may name a server on one: the NFS class's (stacks.storage), the backup
target, the alert receiver, the heartbeat, the LDAP directory or the Git server written as a Pi's address or name. The
Ainur's own host-network programs listen on the same Pi: k3s on every Pi, and the netboot pod, with pi-nfs beside it
when a maia netboots, on whichever Pi that boots from its card runs it (plans.netboot.pods prefers a maia, and it moves
on failover; plans.netboot.pi_pods keeps both off a netbooting Pi). A server on one of their ports cannot listen beside
them: Linux refuses a bind beside a listening socket of the port that either holds on every address or on the address
the other asks (socket(7), SO_REUSEADDR or not), so whichever starts second fails.

A listener on every address of the Pi, or on the Pi's own address, takes the port from any server there: refused. One
bound to the service address (and loopback) alone takes it only from a server listening on every address, which the
usual servers do unless told otherwise: warned, with how to bind the server to the Pi's own address.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from plans.nfs_guard import MOUNT_PORT, NFS_PORT
from stacks.addresses import NOUNS, Server, server_port
from stacks.boards import AINUR_ROLES
from stacks.data import parse_target
from stacks.data_model import Backup
from stacks.errors import Problem
from stacks.model import Ainur, Node, Storage

# Where a listener runs: on every Pi (k3s's agent part), on the valar (k3s's server part), on whichever Pi that boots
# from its card runs the netboot pod, and there only with a netbooting maia (pi-nfs).
Where = Literal["every", "valar", "netboot", "pi-nfs"]
# What it binds: every address, the Pi's own address, or ainur.serviceIp and loopback alone.
Bound = Literal["every", "own", "service"]


@dataclass(frozen=True)
class Listener:
    what: str  # as a message names it
    where: Where
    bound: Bound


# The Pis' listeners, each as the plans open it:
# - k3s (plans.k3s): its API server on every address (API_PORT 6443) on a valar, with embedded etcd (cluster-init) its
#   client and peer ports on the Pi's own address there (--node-ip); on every Pi the kubelet (10250), kube-proxy's health
#   server (10256; plans.k3s disables no kube-proxy) and flannel's VXLAN (8472/udp, k3s's default backend: plans.k3s sets
#   no flannel-backend); docs.k3s.io installation/requirements, "Inbound Rules for K3s Nodes";
# - the valar's static kube-vip: its metrics on every address (:2112, plans.netboot.kube_vip, prometheus_server);
# - the netboot pod (plans.netboot.pods): nginx's `listen 80;`, every address (plans.netboot.nginx.nginx_conf);
#   dnsmasq with bind-dynamic on ainur.serviceIp and 127.0.0.1 (plans.netboot.dnsmasq.dnsmasq_conf) for DNS and TFTP,
#   while its DHCP socket is on every address whatever the binding (a DHCP server must hear broadcasts: dnsmasq's
#   src/dhcp.c make_fd binds INADDR_ANY);
# - pi-nfs, with a netbooting maia: NFS-Ganesha with Bind_addr = ainur.serviceIp, NFS_Port and MNT_Port
#   (plans.netboot.nfs.ganesha_conf, plans.nfs_guard).
# tests/stacks/test_pi_listeners.py holds this table to the plans it cites. The UDP ports are listed whole, though every
# server the stack names is reached over TCP (`clashes`).
_NETBOOT = "the netboot pod's"
PI_LISTENERS: dict[tuple[int, str], Listener] = {
    (53, "tcp"): Listener(f"{_NETBOOT} dnsmasq (the internal zone's DNS)", "netboot", "service"),
    (53, "udp"): Listener(f"{_NETBOOT} dnsmasq (the internal zone's DNS)", "netboot", "service"),
    (67, "udp"): Listener(f"{_NETBOOT} dnsmasq (DHCP and PXE)", "netboot", "every"),
    (69, "udp"): Listener(f"{_NETBOOT} dnsmasq (TFTP, iPXE's first download)", "netboot", "service"),
    (80, "tcp"): Listener(f"{_NETBOOT} nginx (iPXE scripts, Talos's assets and the workers' configs)", "netboot", "every"),
    (MOUNT_PORT, "tcp"): Listener("pi-nfs's NFS-Ganesha (MOUNT, the netbooted maiar's roots)", "pi-nfs", "service"),
    (NFS_PORT, "tcp"): Listener("pi-nfs's NFS-Ganesha (the netbooted maiar's roots)", "pi-nfs", "service"),
    (2112, "tcp"): Listener("kube-vip's metrics (the Ainur's API address)", "valar", "every"),
    (2379, "tcp"): Listener("k3s's embedded etcd (its clients)", "valar", "own"),
    (2380, "tcp"): Listener("k3s's embedded etcd (its peers)", "valar", "own"),
    (6443, "tcp"): Listener("k3s's API server", "valar", "every"),
    (8472, "udp"): Listener("flannel's VXLAN tunnel between the Pis (k3s)", "every", "every"),
    (10250, "tcp"): Listener("the kubelet (k3s)", "every", "every"),
    (10256, "tcp"): Listener("kube-proxy's health server (k3s)", "every", "every"),
}


@dataclass(frozen=True)
class Named:
    """A server the stack names: its key, the value as written, the address it stands for, its port and what it is."""

    path: str  # `iluvatar:`-less
    written: str
    address: IPv4Address
    port: int
    noun: str


def named_servers(named: Sequence[Server], storage: Storage | None, backup: Backup | None, zone: Mapping[str, IPv4Address]) -> list[Named]:
    """The servers the stack names with an address and a port: the NFS class's and the backup target's (NFS's port, or
    the S3 endpoint's), and the other layers' servers (stacks.addresses.servers). A name is read through `zone`, the
    internal zone's machines and VIPs (stacks.storage.zone_addresses)."""
    out: list[Named] = []

    def address(host: str) -> IPv4Address | None:
        try:
            return IPv4Address(host)
        except ValueError:
            return zone.get(host)

    if storage is not None and storage.nfs is not None and (ip := address(storage.nfs.server)) is not None:
        out.append(Named("storage.nfs.server", storage.nfs.server, ip, NFS_PORT, NOUNS["nfs"]))
    found = parse_target(backup.target) if backup is not None else None
    if backup is not None and found is not None and not isinstance(found, str):
        host, _, written = found.host.rpartition(":") if found.kind == "s3" and ":" in found.host else (found.host, "", "")
        if (ip := address(host)) is not None:
            number = NFS_PORT if found.kind == "nfs" else int(written) if written.isdigit() else 443 if found.secure else 80
            out.append(Named("backup.target", backup.target, ip, number, NOUNS["nas"]))
    for s in named:
        port = server_port(s)
        if s.address is not None and port is not None:
            out.append(Named(s.path, s.written, s.address, port, NOUNS[s.kind]))
    return out


def clashes(servers: Sequence[Named], nodes: Sequence[tuple[int, Node]], ainur: Ainur | None) -> Iterator[tuple[bool, Problem]]:
    """Each server at a Pi's address on a port a listener of the Ainur takes there, with whether it is refused (a
    listener that takes the port from any server) or warned of (one on the service address alone)."""
    if ainur is None:
        return
    pis = {n.ip: n for _, n in nodes if n.role in AINUR_ROLES}
    card = [n.name for n in pis.values() if n.boot != "netboot"]
    netbooted = [n.name for n in pis.values() if n.boot == "netboot"]
    for s in servers:
        pi = pis.get(s.address)
        if pi is None:
            continue
        # Every server the stack names is reached over TCP (NFS as klibc and csi-driver-nfs mount it, HTTP, SMTP, LDAP).
        listener = PI_LISTENERS.get((s.port, "tcp"))
        if listener is None:
            continue
        if listener.where == "valar" and pi.role != "valar":
            continue
        if listener.where in ("netboot", "pi-nfs") and pi.boot == "netboot":
            continue  # plans.netboot.pi_pods: neither pod ever runs on a netbooting Pi
        if listener.where == "pi-nfs" and not netbooted:
            continue
        at = f"{s.written} puts {s.noun} on {pi.name} ({pi.ip}) at port {s.port}/tcp"
        if listener.where == "every":
            on = f"on every Pi, {pi.name} too"
        elif listener.where == "valar":
            on = f"on every valar, {pi.name} too"
        else:
            runs = "the netboot pod" if listener.where == "netboot" else "pi-nfs beside the netboot pod"
            on = f"on whichever Pi runs {runs} (any that boots from its card: {', '.join(card)}; it moves on failover)"
        lost = {
            "every": f"k3s on {pi.name}",
            "valar": f"k3s on {pi.name}",
            "netboot": "netboot (the machines' DHCP, iPXE and configs)",
            "pi-nfs": f"the netbooted maiar's roots ({', '.join(netbooted)})",
        }[listener.where]
        if listener.bound == "service":
            yield (
                False,
                Problem(
                    f"iluvatar:{s.path}",
                    f"{at}, which {listener.what} takes on ainur.serviceIp {ainur.service_ip} {on}: a server listening on every "
                    f"address, as most do unless told otherwise, cannot start beside it or keeps it from starting, so while {pi.name} "
                    f"holds the service address {lost} or {s.noun} stops; have {s.noun} listen on {pi.ip} alone"
                    f"{_BIND_HINTS.get(s.port, '')}, or serve it from another machine (the NAS)",
                ),
            )
        else:
            where = "every address" if listener.bound == "every" else f"{pi.ip}"
            yield (
                True,
                Problem(
                    f"iluvatar:{s.path}",
                    f"{at}, which {listener.what} takes on {where} {on}: two programs cannot listen there, so whichever starts "
                    f"second fails and {lost} or {s.noun} stops; serve {s.noun} on another port of {pi.name} or from another "
                    "machine (the NAS)",
                ),
            )


# How the usual server of a port is bound to one address.
_BIND_HINTS = {NFS_PORT: " (the kernel's NFS server: host=<address> in /etc/nfs.conf's [nfsd], rpc.nfsd(8) -H)"}
