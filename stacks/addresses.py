"""The stack's fixed LAN addresses, one table: every layer that holds an address registers it here, with its owner.

Two kinds of owner hold a fixed address. The homelab's own: a machine, a VIP kube-vip announces, the front door,
Headscale's port forward target. And the LAN's devices the stack only names: the NAS (the backup target's server,
the NFS class's), the DNS servers the Ainur forward to, a Turing Pi's BMC, the router's DHCP server where it is not
network.gateway (ainur.netboot.routerAddress). A pool or range the stack lends from (the
discovery pool, the load-balancer pool, the DHCP range in dhcp mode) must hold none of them, and an address of the
homelab's own must not be a device's: kube-vip would announce the NAS's address, the Ainur would forward names to
their own front door. A layer added later is covered by registering its address here rather than by each pool's rule
remembering it. The owner is written as the messages name it: `nodes[3].ip (taniquetil)`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, ip_interface
from typing import Literal
from urllib.parse import unquote, urlsplit

from stacks.apps import address_owner, under
from stacks.boards import AINUR_ROLES, ARDA_ROLES
from stacks.data import numeric_host, on_arda, parse_target, target_address
from stacks.data_model import Backup
from stacks.errors import Problem
from stacks.model import AddressRange, Ainur, App, Arda, Discovery, GitOps, Identity, Monitoring, Network, Node, PiImage, Storage
from stacks.power import password_path, set_password
from stacks.reach import Clients, multicast_name, private_tld, unreachable
from stacks.remote_model import RemoteAccess
from stacks.repository import parse_repo_url

Kind = Literal[
    "node",
    "vip",
    "identity",
    "headscale",
    "nas",
    "nfs",
    "dns",
    "bmc",
    "router",
    "pool",
    "app",
    "ldap",
    "receiver",
    "heartbeat",
    "git",
    "route",
    "ntp",
    "host",
    "mirror",
    "proxy",
    "image",
    "resolver",
]
# The servers the other layers reach, written as an address or a name (`servers`): the sign-in directory Dex binds to,
# the alert receiver and the dead man's switch Alertmanager posts to, the Git server Argo CD and the Git mirror clone
# from, the server the card Pis download the netbooting Pis' image from. Written as an address, each is a device of the
# table like the NAS; whether one is on Arda is each layer's own rule (stacks.monitoring and stacks.gitops refuse it,
# `image_server` the image's, stacks.warn warns of the receiver and the directory there).
SERVERS: frozenset[Kind] = frozenset({"ldap", "receiver", "heartbeat", "git", "image"})
# The LAN's devices: the stack names their addresses, something else holds them. One box may be several of them (a
# NAS serving NFS, S3 and a Pi-hole), so they may share an address with each other (a BMC aside, `ALONE`), never with
# the homelab's own.
DEVICES: frozenset[Kind] = frozenset({"nas", "nfs", "dns", "bmc", "router", "ntp", "host", "mirror", "proxy", "resolver", *SERVERS})
# The devices Arda's Talos patches name (`patched`): the NTP servers its machines set their clocks from, and the
# addresses its static host entries pin names to. A host entry may name any host, a machine, a VIP, a Service of the
# load-balancer pool or a BMC among them: only the ranges lent to others (`check`'s dhcpRange, the router's pool, the
# discovery pool) and the subnets' edges are wrong for it. With them, the DNS servers an `ip=` kernel argument names
# (`ip_args`), which Arda's machines ask until their configuration is applied.
PATCHED: frozenset[Kind] = frozenset({"ntp", "host", "mirror", "proxy", "resolver"})
# The servers Arda's machines pull their images from or through (`pull_servers`): a registry mirror, an HTTP(S) proxy.
# Each must answer before Arda runs, as an NTP server must: kubelet's, etcd's and Cilium's images come through them.
PULLS: frozenset[Kind] = frozenset({"mirror", "proxy"})
# The devices that share their address with no other: a Turing Pi 2's BMC is an appliance, which powers, reflashes and
# opens the console of its board's machines (plans.power) and serves nothing the stack points at it. Another device at
# its address is a slip in one of the two keys, and the other layer (the backups, the forwarding, the mounts, the
# sign-in, the alerts) would reach the BMC; and a server run on the BMC itself shares the board its machines run on.
ALONE: frozenset[Kind] = frozenset({"bmc"})
# How a message names each device.
NOUNS: dict[Kind, str] = {
    "nas": "the NAS",
    "nfs": "the NFS server",
    "dns": "the DNS server",
    "bmc": "the BMC",
    "router": "the router's DHCP server",
    "ldap": "the LDAP directory",
    "receiver": "the alert receiver",
    "heartbeat": "the dead man's switch",
    "git": "the Git server",
    "ntp": "the NTP server",
    "host": "the host the entry names",
    "mirror": "the registry mirror",
    "proxy": "the proxy",
    "image": "the Pi image server",
    "resolver": "the DNS server",
}
# The homelab's own addresses where a few listeners of its own answer, as a message names them.
FRONTS: dict[Kind, str] = {
    "identity": "identity.ip, the Ainur's front door (Dex, the CA page, the Ainur's Argo CD)",
    "headscale": "remoteAccess.headscale.ip, Headscale's port forward target",
}
# The namespace Alertmanager runs in on Arda (plans.monitoring, kube-prometheus): the first its pod's resolver searches.
ALERTMANAGER_NAMESPACE = "monitoring"
# Who reaches each server, and what is lost when they cannot.
CLIENTS: dict[Kind, str] = {
    "ldap": "Dex could not reach the directory and nobody could sign in",
    "receiver": "Alertmanager could deliver no alert",
    "heartbeat": "Alertmanager could never post the Watchdog, and the switch would report the homelab dead",
    "git": "Argo CD and the Git mirror could not clone, and nothing would sync",
    "nas": "no backup could be written or restored",
    "nfs": "no volume of the NFS class could be mounted",
    "dns": "no machine could resolve a name outside the zone",
    "bmc": "`up` could not power or reflash the machines of its board",
    "router": "the DHCP probe of `up` would take the router's answers for another DHCP server's and stop `up`",
    # machine.time.bootTimeout "Defaults to \"infinity\" (waiting forever for time sync)" (machinery v1.14.1
    # config/types/v1alpha1/v1alpha1_types.go:788-791).
    "ntp": "Arda's machines could not set their clocks, and Talos holds a machine's boot until its clock syncs (machine.time.bootTimeout: forever unless set)",
    "host": "Arda's machines would reach another host under the entry's names",
    # Talos's RegistryMirrorConfig reference (v1.12), skipFallback: "Skip fallback to the original registry if none of
    # the mirrors are available or contain the requested image"; kubelet's image is ghcr.io/siderolabs/kubelet.
    "mirror": "Arda's machines could pull none of that registry's images from it (without skipFallback they wait on it first; kubelet's is ghcr.io's), and a machine may never join",
    # Talos sends every pull through machine.env's proxies (docs: networking/corporate-proxies).
    "proxy": "Arda's machines could pull no image through it, and no machine could join",
    # plans.netboot.pi_image's builder runs `curl --fail` in netboot-cache's pi-image step on each card Pi, and the
    # DaemonSet is ready only once the image is built (docs/layers/ainur.md, "Pis with no card").
    "image": "the card Pis could not download the netbooting Pis' image: netboot-cache would never be ready, and `up` would stop with no Pi netbooted",
    # Talos's resolvers from the command line's ip= (network/cmdline.go:177-185 at v1.14.0-beta.1-84), which a machine
    # asks before its configuration is applied: maintenance mode, the installer's pull, the Image Factory download.
    "resolver": "Arda's machines could resolve no name until their configuration is applied, and could not pull the installer",
}
# The key that names the router's DHCP server where it is not network.gateway (`entries`).
ROUTER_ADDRESS = "ainur.netboot.routerAddress"


@dataclass(frozen=True)
class Held:
    ip: IPv4Address
    path: str  # the config path that sets it, `iluvatar:`-less
    owner: str  # as a message names it
    kind: Kind
    written: str = ""  # a server's value as its key holds it (a URL, a host:port), when it is more than the address
    name: str = ""  # a server written as a name of the internal zone, as a message shows it: `git.<domain> (192.168.0.15)`
    also: tuple[str, ...] = ()  # the other keys that write the same device's address (a BMC's other machines)


@dataclass(frozen=True)
class Server:
    """A server another layer reaches: its key, the value as written, the host in it (an address or a name), and the
    address it stands for: as written, or the internal zone's record for the name (`name`, lower case, no trailing dot;
    a single label read under network.domain, as the clients' search domain asks it)."""

    path: str  # `iluvatar:`-less
    written: str
    host: str
    kind: Kind
    address: IPv4Address | None = None
    name: str = ""  # the zone name `address` was resolved from; empty when written as an address or not in the zone

    @property
    def shown(self) -> str:
        """The server as a message names it: its host, and the address a zone name stands for."""
        host = self.host.rstrip(".").lower()
        return f"{host} ({self.address})" if self.name else host


def servers(
    identity: Identity | None,
    monitoring: Monitoring | None,
    gitops: GitOps | None,
    zone: Mapping[str, IPv4Address] | None = None,
    domain: str | None = None,
    apps: Sequence[App] = (),
    image: PiImage | None = None,
) -> list[Server]:
    """The servers of the sign-in, alerting and GitOps layers and the Pi image's, in that order: the LDAP directory, the
    alert receiver (e-mail's smarthost, the webhook's or ntfy's URL), the heartbeat, the repository's server, the server
    of `image` (ainur.piImage where a Pi netboots: `netbooted_image`). Each host is parsed here alone (a port, brackets,
    a trailing dot), and a name resolved through `zone`, the internal zone's records (plans.zone.records) under `domain`,
    network.domain. A single label that is the Service of an app in Alertmanager's namespace (`apps`) is that Service to
    the receiver and the heartbeat: their pod searches its namespace first."""
    found: list[tuple[str, str, str, Kind]] = []
    if identity is not None and identity.connector.type == "ldap" and identity.connector.host is not None:
        host = identity.connector.host
        found.append(("identity.connector.host", host, host.rsplit(":", 1)[0].strip("[]"), "ldap"))
    receiver = monitoring.receiver if monitoring is not None else None
    if receiver is not None:
        if receiver.email is not None and receiver.email.smarthost is not None:
            host = receiver.email.smarthost
            found.append(("monitoring.receiver.email.smarthost", host, host.rsplit(":", 1)[0].strip("[]"), "receiver"))
        for kind, part in (("webhook", receiver.webhook), ("ntfy", receiver.ntfy)):
            if part is not None and part.url is not None:
                found.append((f"monitoring.receiver.{kind}.url", part.url, _url_host(part.url), "receiver"))
    if monitoring is not None and monitoring.heartbeat is not None:
        found.append(("monitoring.heartbeat", monitoring.heartbeat, _url_host(monitoring.heartbeat), "heartbeat"))
    if gitops is not None:  # a URL the model has parsed already (GitOps.repo_url)
        found.append(("gitops.repoUrl", gitops.repo_url, parse_repo_url(gitops.repo_url).host, "git"))
    if image is not None:  # a URL its field's pattern has taken (http or https, PiImage.url)
        found.append(("ainur.piImage.url", image.url, _url_host(image.url), "image"))
    alertmanager = {a.service_name for a in apps if a.category == ALERTMANAGER_NAMESPACE}
    return [
        Server(path, written, host, kind)
        if kind in ("receiver", "heartbeat") and host.rstrip(".").lower() in alertmanager
        else _resolved(path, written, host, kind, zone or {}, domain)
        for path, written, host, kind in found
    ]


def netbooted_image(ainur: Ainur | None, nodes: Sequence[Node]) -> PiImage | None:
    """ainur.piImage where a Pi of the Ainur netboots, else None: only then do the card Pis download it
    (plans.netboot.pi_pods.with_pis adds the builder's step to netboot-cache for the netbooting Pis alone)."""
    if ainur is None or not any(n.role in AINUR_ROLES and n.boot == "netboot" for n in nodes):
        return None
    return ainur.pi_image


def searching(ainur: bool) -> frozenset[Kind]:
    """The servers whose client searches network.domain for a single label: a pod's resolv.conf ends with its node's
    search list (kubernetes pkg/kubelet/network/dns/dns.go:141-151 at d24fe8a, generateSearchesForDNSClusterFirst: the
    cluster's suffixes, then the host's), and the Pis' netplan sets `search: [network.domain]` (plans.cloudinit), while
    Talos writes no search line for a machine whose hostname has no domain (siderolabs/talos internal/app/machined/pkg/
    controllers/network/resolver_config.go:179-196, getDefault), and Arda's hostnames are single labels. So Dex
    (on the Ainur) does, and the Git mirror (on the Ainur, cloning repoUrl) does; Alertmanager (on Arda) does not, nor
    does Argo CD on Arda cloning repoUrl itself where there are no Ainur. The Pi image builder (a pod of netboot-cache
    on the card Pis) does. A single label is still read as that zone's name by the rules (a resolver answering plain
    names, a router's DHCP host names, gives the same machine), and the others' clients are warned of
    (stacks.warn._single_labels)."""
    return frozenset({"ldap", "git", "image"}) if ainur else frozenset({"ldap"})


def _resolved(path: str, written: str, host: str, kind: Kind, zone: Mapping[str, IPv4Address], domain: str | None) -> Server:
    name = host.rstrip(".").lower()  # a trailing dot is the same name, fully qualified; DNS names have no case
    try:
        return Server(path, written, host, kind, IPv4Address(name))
    except ValueError:
        pass
    try:
        # An IPv4-mapped IPv6 literal (::ffff:a.b.c.d) is dialled as that IPv4 address: Go's TCPAddr.family() is AF_INET
        # when IP.To4() is not nil (go src/net/tcpsock_posix.go, family).
        mapped = IPv6Address(name).ipv4_mapped
    except ValueError:
        mapped = None
    if mapped is not None:
        return Server(path, written, host, kind, mapped)
    if name and "." not in name and domain:
        # A single label: that zone's name where the client searches network.domain, or its plain name otherwise, which
        # a resolver answering plain names gives the same machine (`searching`).
        name = f"{name}.{domain.lower()}"
    address = zone.get(name)
    return Server(path, written, host, kind, address, name if address is not None else "")


def entries(
    nodes: Sequence[tuple[int, Node]],
    vips: Sequence[tuple[str, IPv4Address]],
    identity: Identity | None,
    remote: RemoteAccess | None,
    backup: Backup | None,
    network: Network | None = None,
    storage: Storage | None = None,
    named: Sequence[Server] = (),
    ainur: Ainur | None = None,
    patches: Sequence[tuple[str, Mapping[str, object]]] = (),
    zone: Mapping[str, IPv4Address] | None = None,
    kernel_args: Mapping[str, Sequence[str]] | None = None,
) -> list[Held]:
    """Every fixed address the stack knows, in this order: the machines, the VIPs, the front door, Headscale, the backup
    target's server written as an address (the NAS), the NFS class's server as an address, the DNS servers wherever
    they lie (the routers' addresses aside: the router is none of these), the BMCs, the router's DHCP server where ainur.netboot.routerAddress
    names it, the other layers' servers written as an address, the addresses Arda's Talos patches name (`patched`, its
    names through `zone`, the internal zone's records)."""
    out = [Held(n.ip, f"nodes[{i}].ip", f"nodes[{i}].ip ({n.name})", "node") for i, n in nodes]
    out += [Held(ip, path.removeprefix("iluvatar:"), path.removeprefix("iluvatar:"), "vip") for path, ip in vips]
    if identity is not None:
        out.append(Held(identity.ip, "identity.ip", "identity.ip (the Ainur's front door)", "identity"))
    if remote is not None and remote.flavour == "headscale" and remote.headscale is not None:
        out.append(Held(remote.headscale.ip, "remoteAccess.headscale.ip", "remoteAccess.headscale.ip (Headscale's port forward target)", "headscale"))
    if backup is not None:
        found = parse_target(backup.target)
        server = target_address(found) if not isinstance(found, str) else None
        if server is not None:
            out.append(Held(server, "backup.target", f"backup.target's server (the NAS, {backup.target})", "nas"))
    if storage is not None and storage.nfs is not None:
        try:
            nfs = IPv4Address(storage.nfs.server)
        except ValueError:
            pass  # a name of the internal zone: a machine's or a VIP's address, registered as theirs
        else:
            out.append(Held(nfs, "storage.nfs.server", f"storage.nfs.server (the NFS class's server, {nfs})", "nfs"))
    if network is not None:
        # Every DNS server, wherever it lies (network.lan, a VLAN, off the stack's networks): a Pi-hole on a VLAN at a
        # VLAN machine's address collides there as one on the LAN does. A router's own address (network.gateway, a
        # VLAN's gateway) is the router, which the gateways' own rules place.
        gateways = {ip for _, ip in routers(network)}
        forward = "the Ainur forward" if ainur is not None else "the LAN resolver on Arda forwards"
        for k, server in enumerate(network.dns):
            if server not in gateways:
                out.append(Held(server, f"network.dns[{k}]", f"network.dns[{k}] (a DNS server {forward} to)", "dns"))
    # A BMC serves up to 4 slots: one entry, under its first machine, with the others' keys, which move with it.
    bmcs: dict[IPv4Address, list[tuple[int, str]]] = {}
    for i, n in nodes:
        if n.power is not None and n.power.bmc is not None:
            bmcs.setdefault(n.power.bmc.address, []).append((i, n.name))
    for address, ((i, name), *others) in bmcs.items():
        also = tuple(f"nodes[{j}].power.bmc.address" for j, _ in others)
        out.append(Held(address, f"nodes[{i}].power.bmc.address", f"nodes[{i}].power.bmc.address ({name}'s BMC)", "bmc", also=also))
    router = ainur.netboot.router_address if ainur is not None else None
    if router is not None and (network is None or (router in network.lan and router != network.gateway)):
        # The router's DHCP server, where it is not network.gateway: a device of the LAN with an address of its own, which
        # the DHCP probe of `up` tells the router's answers by (components/netboot.py, plans.netboot.dhcp_probe), in
        # either mode (in dhcp mode on a move from proxy). Off the LAN it is stacks.netboot_mode's to refuse; at
        # network.gateway it is the router the gateway's own rules place (stacks.rules._range, _address_in_lan).
        out.append(Held(router, ROUTER_ADDRESS, f"{ROUTER_ADDRESS} (the router's DHCP server)", "router"))
    for s in named:
        if s.address is None:
            continue  # a name outside the internal zone: `unknown_names` checks it
        # A zone name is the address the plan gives it, and is checked as that address (`name` keeps how it was written).
        out.append(Held(s.address, s.path, f"{s.path}'s server ({NOUNS[s.kind]}, {s.written})", s.kind, s.written, s.shown if s.name else ""))
    out += patched(patches, zone, network.domain if network is not None else None, kernel_args)
    out += [
        Held(ip, path, f"{path} ({whose}'s own address, from its Talos patch)", "node")
        for path, ip, whose, _ in link_addresses(patches, nodes)
        if isinstance(ip, IPv4Address)
    ]
    out += routed(remote)
    return out


def patched(
    patches: Sequence[tuple[str, Mapping[str, object]]],
    zone: Mapping[str, IPv4Address] | None = None,
    domain: str | None = None,
    kernel_args: Mapping[str, Sequence[str]] | None = None,
) -> list[Held]:
    """The addresses Arda's Talos patches name (stacks.rules.talos_patches_of: `arda.patches`, an Arda machine's
    `talosPatches`), each at its key inside the patch: a v1alpha1 patch's machine.time.servers and
    machine.network.extraHostEntries[].ip, a TimeSyncConfig document's ntp.servers, a StaticHostConfig document's name
    (the address its hostnames map to: machinery v1.14.1 config/types/network/static_host.go:53, time_sync.go:72-84; the
    same at v1.12.4 and v1.13.0, the provider's). An NTP server written as a name of the internal zone (`zone`, under
    `domain`, network.domain) is the address the plan gives that name, as `servers` reads the other layers' (one the
    zone does not hold is `patched_names`' for `unknown_names`); a name outside the zone (time.cloudflare.com), a PTP
    device (/dev/ptp0) or an IPv6 address is left alone: the table holds IPv4 addresses. The NTP servers of a machine
    whose time sync is off are never asked (`time_servers`). The resolvers (machine.network.nameservers, a
    ResolverConfig document) are refused in a patch, since Iluvatar writes them from network.dns
    (stacks.rules.V1ALPHA1_CONFLICTS, GENERATED_DOCUMENTS). The registry mirrors and proxies Arda's machines pull
    through (`pull_servers`, with `kernel_args`, arda.kernelArgs) are read as the NTP servers are."""
    out: list[Held] = []

    def held(path: str, value: object, kind: Kind, what: str) -> None:
        try:
            ip = IPv4Address(value) if isinstance(value, str) else None
        except ValueError:
            ip = None
        if ip is not None:
            out.append(Held(ip, path, f"{path} ({what})", kind, value if isinstance(value, str) else ""))

    ntp = "an NTP server Arda's machines set their clocks from"
    for path, server in time_servers(patches):
        name = _zone_name(server, domain)
        planned = (zone or {}).get(name) if name else None  # the plan's record of a zone name
        if planned is not None:
            out.append(Held(planned, path, f"{path} ({ntp}, {server})", "ntp", server, f"{name} ({planned})"))
        else:
            held(path, server, "ntp", ntp)
    for path, entry, names in host_entries(patches):
        held(path, entry, "host", _host_entry(names))
    # The DNS and NTP servers of an `ip=` kernel argument, which Arda's machines of its board ask from their first boot.
    for arg in ip_args(kernel_args):
        for server, kind in arg.servers:
            try:
                ip = IPv4Address(server)
            except ValueError:
                continue  # an IPv6 address: the table holds IPv4 ones
            what = "an NTP server" if kind == "ntp" else "a DNS server"
            out.append(Held(ip, arg.path, f"{arg.path} ({what} Arda's {arg.board} machines boot with)", kind, arg.written))
    for path, written, host, kind in pull_servers(patches, kernel_args):
        what = PULLED[kind]
        name = _zone_name(host, domain)
        planned = (zone or {}).get(name) if name else None
        if planned is not None:
            out.append(Held(planned, path, f"{path} ({what}, {written})", kind, written, f"{name} ({planned})"))
        else:
            try:
                ip = IPv4Address(host)
            except ValueError:
                continue
            out.append(Held(ip, path, f"{path} ({what}, {written})", kind, written))
    return out


# How the table names the servers Arda's machines pull through (`pull_servers`).
PULLED: dict[Kind, str] = {
    "mirror": "a registry mirror Arda's machines pull images from",
    "proxy": "an HTTP(S) proxy Arda's machines pull images through",
}
# The proxy variables Talos's "Corporate proxies" page sets in machine.env or talos.environment=, either case.
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy"})


def _url_host(url: str) -> str:
    """The host of a server's URL (http://172.20.8.80:5000, or 172.20.8.80:5000 without a scheme), or "", percent-decoded:
    every rule reads the host its client dials. curl decodes a percent-encoded host before it resolves or dials it
    (curl 7.88.1, the Pi image builder's, stacks/pins.py: `curl -v http://192.168.0.%31%31:1/` tries 192.168.0.11), so
    127.0.0.%31 is loopback and grafana%2Eiluvatar.home.arpa an app's host; Go's net/url refuses such a host instead."""
    try:
        host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    except ValueError:
        return ""
    return unquote(host).lower()


# The documents that give a link static addresses (`addresses[].address`): Talos assigns each to its link (Talos's
# v1.12 reference for VLANConfig and DummyLinkConfig: "addresses to be statically assigned to the link"). Each embeds
# CommonLinkConfig, whose Addresses() are the link's (siderolabs/talos pkg/machinery/config/types/network/link.go:301 at
# v1.14.0-rc.1; bond.go:285, bridge.go:87, dummy.go:74, link.go:82, vlan.go:92, vrf.go:91, wireguard.go:83 embed it;
# the same at v1.13.0). A Layer2VIPConfig or HCloudVIPConfig is a VIP, shared by design, and not one of them.
LINK_DOCUMENTS = frozenset({"LinkConfig", "VLANConfig", "DummyLinkConfig", "BondConfig", "BridgeConfig", "VRFConfig", "WireguardConfig"})


def link_addresses(
    patches: Sequence[tuple[str, Mapping[str, object]]], nodes: Sequence[tuple[int, Node]] = ()
) -> list[tuple[str, IPv4Address | IPv6Address, str, str]]:
    """The addresses, IPv4 and IPv6 (a link's address is a prefix of either family: siderolabs/talos
    pkg/machinery/config/types/network/link.go:99, :123 at v1.14.0-rc.1), Arda's Talos patches give their machines' own
    links, each with its key (`iluvatar:`-less),
    whose it is (a machine's name, or "every Arda machine" for arda.patches) and the value as written (192.168.0.5/24):
    a v1alpha1 patch's machine.network.interfaces[].addresses and .vlans[].addresses, a link document's
    addresses[].address. Linux answers ARP for any of them as the machine's own, so each collides as the machine's ip
    does."""
    names = {f"nodes[{i}]": n.name for i, n in nodes}
    out: list[tuple[str, IPv4Address | IPv6Address, str, str]] = []

    def add(path: str, value: object, whose: str) -> None:
        try:
            ip = ip_interface(value).ip if isinstance(value, str) else None
        except ValueError:
            ip = None
        if ip is not None:
            out.append((path, ip, whose, str(value)))

    for written, patch in patches:
        at = written.removeprefix("iluvatar:")
        scope = _scope(written)
        whose = "every Arda machine" if scope == "arda" else names.get(scope, scope)
        if patch.get("kind") is None:
            interfaces = _get(_get(_get(patch, "machine"), "network"), "interfaces")
            for j, interface in enumerate(interfaces if isinstance(interfaces, list) else []):
                own = _get(interface, "addresses")
                for k, value in enumerate(own if isinstance(own, list) else []):
                    add(f"{at}.machine.network.interfaces[{j}].addresses[{k}]", value, whose)
                vlans = _get(interface, "vlans")
                for v, vlan in enumerate(vlans if isinstance(vlans, list) else []):
                    own = _get(vlan, "addresses")
                    for k, value in enumerate(own if isinstance(own, list) else []):
                        add(f"{at}.machine.network.interfaces[{j}].vlans[{v}].addresses[{k}]", value, whose)
        elif patch.get("kind") in LINK_DOCUMENTS:
            own = patch.get("addresses")
            for k, entry in enumerate(own if isinstance(own, list) else []):
                add(f"{at}.addresses[{k}].address", _get(entry, "address"), whose)
    return out


def link_collisions(
    patches: Sequence[tuple[str, Mapping[str, object]]],
    nodes: Sequence[tuple[int, Node]],
    held: Sequence[Held],
    network: Network | None,
    ainur: Ainur | None,
    free: Callable[[Collection[IPv4Address]], IPv4Address | None] | None = None,
) -> Iterator[Problem]:
    """An address a Talos patch gives a machine's link (`link_addresses`) that is another's: a router's (network.gateway,
    a VLAN's gateway), another machine's or a VIP's (the table's own kinds), inside network.loadBalancerPool (Cilium
    announces those for Services) or network.dhcpRange (lent to others). Linux answers ARP for a local address on any
    link (the kernel's Documentation/networking/ip-sysctl.rst: arp_ignore 0, the default, replies for any local address
    configured on any interface), so the machine and the other holder would fight for it, and what
    the LAN sends there reaches either, part of the time. A device at the address is `check`'s (the table registers
    the address as the machine's, `entries`); the discovery pool's is its own rule's. `free`: the LAN's first free
    address, as `check` takes it.

    An address of arda.patches, which every Arda machine gets (plans.talos.node_patches), is also each of theirs: with
    two or more of them it is one address on several machines, who fight for it as above (`shared`)."""
    if network is None:
        return
    others = [h for h in held if h.kind in ("node", "vip", "identity", "headscale")]
    taken = {h.ip for h in held} | {ip for _, ip in routers(network)}
    arda = [(i, n) for i, n in nodes if n.role in ARDA_ROLES]
    documents = {at.removeprefix("iluvatar:"): patch for at, patch in patches}
    # The links arda.patches creates (a bond, a VLAN): a LinkConfig of one of them moves with the document creating it.
    created = {patch.get("name") for at, patch in patches if _scope(at) == "arda" and patch.get("kind") in LINK_DOCUMENTS - {"LinkConfig"}}

    def anycast(path: str, written: str) -> bool:
        """A /128 on a dummy link (see below)."""
        document = documents.get(path.split(".addresses[", 1)[0])
        return document is not None and document.get("kind") == "DummyLinkConfig" and ip_interface(written).network.prefixlen == 128

    # Each IPv6 address on a link that reaches the wire, with its key and whose it is.
    six = [
        (path, ip, whose) for path, ip, whose, written in link_addresses(patches, nodes) if isinstance(ip, IPv6Address) and not anycast(path, written)
    ]
    for path, ip, whose, written in link_addresses(patches, nodes):
        document = documents.get(path.split(".addresses[", 1)[0])
        physical = document if document is not None and document.get("name") not in created else None
        key = f"iluvatar:{path}"
        scope = path.split(".talosPatches", 1)[0] if ".talosPatches" in path else "arda"
        shared = scope == "arda" and len(arda) > 1
        if isinstance(ip, IPv6Address):
            # The stack's networks are IPv4, so an IPv6 address collides only with another machine's: one shared by every
            # Arda machine, or one another machine's own patches give it too. Whatever its prefix, a /128 as well: the
            # kernel runs duplicate address detection for every unicast address (RFC 4862 5.4) unless it is added with
            # nodad, and Talos adds a link document's addresses with the permanent flag alone (siderolabs/talos
            # internal/app/machined/pkg/controllers/network/address_config.go:300 at v1.14.0-rc.1). But a dummy link is
            # IFF_NOARP (Linux drivers/net/dummy.c, dummy_setup), for which the kernel skips duplicate address detection
            # (net/ipv6/addrconf.c, addrconf_dad_begin), and Neighbour Discovery answers only for the receiving link's own
            # addresses (net/ipv6/ndisc.c, ndisc_recv_ns): a /128 there, anycast, reaches no wire.
            twin = next(((t_path, t_whose) for t_path, t_ip, t_whose in six if t_ip == ip and t_whose != whose), None)
            if anycast(path, written):
                continue
            if shared:
                yield Problem(
                    key,
                    f"{written}: arda.patches goes to every Arda machine ({', '.join(n.name for _, n in arda)}), so all {len(arda)} would "
                    f"configure {ip} on their link: duplicate address detection leaves it on whichever claims it first, by chance, "
                    f"and the others without it; {_own_patch(path, arda, written, document=physical)}",
                )
            elif scope != "arda" and twin is not None and twin[1] != "every Arda machine":
                yield Problem(
                    key,
                    f"{ip} is {twin[0]} ({twin[1]}'s own address, from its Talos patch); the patch gives it to {whose} too, and "
                    "duplicate address detection leaves it on whichever claims it first, by chance, and the other without it "
                    "(RFC 4862 5.4); give the link an address of its own",
                )
            continue
        subnet = next((v.cidr for v in network.vlans if ip in v.cidr), network.lan if ip in network.lan else None)
        # A free address on the link's subnet: on the LAN the one list the messages offer from (`free`, outside the
        # ranges lent and the pool, as a machine's ip must be), on a VLAN its first one free.
        if subnet is not None and subnet != network.lan:
            offer = _free_on(subnet, taken)
        else:
            offer = free(()) if free is not None and subnet is not None else None
        taken |= {offer} if offer is not None else set()
        fix = f"give the link an address of its own{f' (e.g. {offer})' if offer is not None else ''}"
        if shared:
            # Given to one machine the address would be that machine's alone; a fix that keeps it in arda.patches
            # would give the new address to every machine as well.
            fix = (
                _own_patch(path, arda, written, offer, physical)
                if offer is not None
                else f"{fix}, and {_own_patch(path, arda, written, document=physical)}"
            )
        router = next((p for p, r in routers(network) if r == ip), None)
        if router is not None:
            yield Problem(
                key,
                f"{ip} is {router}, the router's; the patch gives it to {whose} too, and Linux answers ARP for it there, so what the "
                f"LAN sends its router would reach the machine part of the time; {fix}",
            )
            continue
        # The machine's own ip written again is no collision; an address arda.patches gives is every Arda machine's.
        clash = next((h for h in others if h.ip == ip and h.path not in (path, f"{scope}.ip")), None)
        if clash is not None:
            yield Problem(
                key,
                f"{ip} is {clash.owner}; the patch gives it to {whose} too, and Linux answers ARP for it there, so the two would "
                f"fight for it and what is sent there reaches either, part of the time; {fix}",
            )
            continue
        if ip in network.load_balancer_pool:
            yield Problem(
                key,
                f"{ip} is inside network.loadBalancerPool {network.load_balancer_pool}, the addresses Arda's Services take: Cilium "
                f"would announce it for a Service while {whose} answers for it too; {fix}",
            )
            continue
        if ip in network.dhcp_range and ip != network.gateway:
            yield Problem(
                key,
                f"{ip} is inside network.dhcpRange {network.dhcp_range}, the addresses DHCP lends: {whose} would hold it only until it "
                f"is lent to another machine, and then both answer for it; {fix}",
            )
            continue
        # A host address (/32) outside every subnet of the LAN's, NodeLocal DNSCache's 169.254.20.10 on a dummy link or an
        # anycast address, is shared by design: no host of a subnet ARPs for an address outside it, so the machines
        # fight for nothing. With a shorter prefix the address is on a subnet the machines share, the link's own.
        if shared and (subnet is not None or IPv4Interface(written).network.prefixlen < 32):
            yield Problem(
                key,
                f"{written}: arda.patches goes to every Arda machine ({', '.join(n.name for _, n in arda)}), so all {len(arda)} would "
                f"hold {ip} on their link and Linux answers ARP for it on each: they would fight for it on the LAN, and what is "
                f"sent there reaches any of them, part of the time; {_own_patch(path, arda, written, document=physical)}",
            )
        # A VLAN the stack does not list has a subnet the stack does not know, and the VLAN's hosts share one with the
        # machines' link on it: nothing shows the address is outside it, so it is taken as inside, as on a listed VLAN.
        elif shared and document is not None and document.get("kind") == "VLANConfig" and document.get("vlanID") not in {v.id for v in network.vlans}:
            yield Problem(
                key,
                f"{written}: arda.patches goes to every Arda machine ({', '.join(n.name for _, n in arda)}), so all {len(arda)} would "
                f"hold {ip} on their link {document.get('name')}, on VLAN {document.get('vlanID')}, which network.vlans does not list, "
                f"so no subnet shows it is outside the one that VLAN's hosts share; inside it, Linux answers ARP for it on each "
                f"machine: they would fight for it, and what is sent there reaches any of them, part of the time; "
                f"{_own_patch(path, arda, written, document=physical)}",
            )


def _own_patch(
    path: str, arda: Sequence[tuple[int, Node]], written: str, offer: IPv4Address | None = None, document: Mapping[str, object] | None = None
) -> str:
    """The fix for an address of arda.patches: move it to the own patches of the first Arda machine (or another's, each
    machine its own address), with `offer` for the address where the one written is another's. A v1alpha1
    machine.network.interfaces entry is refused in any patch (stacks.rules.V1ALPHA1_CONFLICTS), so it is offered as the
    LinkConfig that rule names; a link document moves as it is, but for a LinkConfig of a link no document of arda.patches
    creates (`document`, its name written), a physical one: the NIC is named by an alias on its MAC there, as
    stacks.rules warns of a kernel name and refuses lan0 (the install NIC's LinkConfig is Iluvatar's)."""
    i, node = arda[0]
    prefix = written.partition("/")[2]
    address = written if offer is None else f"{offer}/{prefix}" if prefix else str(offer)
    where = f"iluvatar:nodes[{i}].talosPatches ({node.name}'s own patches) or another machine's, each machine its own address"
    if ".machine.network.interfaces[" in path:
        return f"write it as a link document, {{apiVersion: v1alpha1, kind: LinkConfig, name: <its link>, addresses: [{{address: {address}}}]}}, in {where}"
    if document is not None and document.get("kind") == "LinkConfig":
        taken = {patch.get("name") for patch in node.talos_patches}
        alias = next(f"nic{n}" for n in range(1, 100) if f"nic{n}" not in taken)
        where += (
            f", naming its NIC by an alias on its MAC there: {{apiVersion: v1alpha1, kind: LinkAliasConfig, name: {alias}, selector: "
            f"{{match: 'mac(link.permanent_addr) == \"<its mac>\"'}}}}, and name: {alias}"
        )
    if offer is None:
        return f"move the document to {where}"
    return f"move the document, with an address of its own (e.g. {address}), to {where}"


# The servers Arda's machines send to or fetch from after they have joined (`patch_endpoints`), with what is lost when
# another host holds the address: nothing stops a machine joining, so a doubtful address is warned of
# (stacks.warn._patch_endpoints), not refused.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "logging": ("the log destination Arda's machines send their logs to", "their logs would go to whichever host holds it, or nowhere"),
    "manifest": (
        "an extra manifest Talos applies when Arda's control plane bootstraps",
        "the bootstrap would fetch it from whichever host holds the address, or find nothing there",
    ),
    "discovery": (
        "the discovery service Arda's machines find each other through (KubeSpan, talosctl get members)",
        "the machines would register with whichever host holds the address, or with nothing",
    ),
}


def patch_endpoints(patches: Sequence[tuple[str, Mapping[str, object]]]) -> list[tuple[str, str, str, str]]:
    """The other servers Arda's Talos patches name, each with its key (`iluvatar:`-less), the value as written, its host
    and its kind of `ENDPOINTS`: machine.logging.destinations[].endpoint, cluster.extraManifests[],
    cluster.discovery.registries.service.endpoint (v1alpha1 patches)."""
    out: list[tuple[str, str, str, str]] = []

    def add(path: str, value: object, kind: str) -> None:
        if isinstance(value, str) and (host := _url_host(value)):
            out.append((path, value, host, kind))

    for written, patch in patches:
        if patch.get("kind") is not None:
            continue
        at = written.removeprefix("iluvatar:")
        destinations = _get(_get(_get(patch, "machine"), "logging"), "destinations")
        for j, destination in enumerate(destinations if isinstance(destinations, list) else []):
            add(f"{at}.machine.logging.destinations[{j}].endpoint", _get(destination, "endpoint"), "logging")
        cluster = _get(patch, "cluster")
        manifests = _get(cluster, "extraManifests")
        for j, url in enumerate(manifests if isinstance(manifests, list) else []):
            add(f"{at}.cluster.extraManifests[{j}]", url, "manifest")
        service = _get(_get(_get(cluster, "discovery"), "registries"), "service")
        add(f"{at}.cluster.discovery.registries.service.endpoint", _get(service, "endpoint"), "discovery")
    return out


def pull_servers(
    patches: Sequence[tuple[str, Mapping[str, object]]], kernel_args: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str, str, Kind]]:
    """The servers Arda's machines pull their images from or through, each with its key (`iluvatar:`-less), the value
    as written and its host: a v1alpha1 patch's machine.registries.mirrors.*.endpoints and machine.env's http_proxy and
    https_proxy (either case), a RegistryMirrorConfig document's endpoints[].url, and a `talos.environment=` kernel
    argument's proxy (arda.kernelArgs, read before any configuration is applied)."""
    out: list[tuple[str, str, str, Kind]] = []

    def add(path: str, value: object, kind: Kind) -> None:
        if isinstance(value, str) and (host := _url_host(value)):
            out.append((path, value, host, kind))

    for written, patch in patches:
        at = written.removeprefix("iluvatar:")
        if patch.get("kind") is None:
            machine = _get(patch, "machine")
            mirrors = _get(_get(machine, "registries"), "mirrors")
            for registry, mirror in mirrors.items() if isinstance(mirrors, Mapping) else ():
                endpoints = _get(mirror, "endpoints")
                for j, url in enumerate(endpoints if isinstance(endpoints, list) else []):
                    add(f"{at}.machine.registries.mirrors.{registry}.endpoints[{j}]", url, "mirror")
            env = _get(machine, "env")
            for key, url in env.items() if isinstance(env, Mapping) else ():
                if str(key).lower() in _PROXY_VARIABLES:
                    add(f"{at}.machine.env.{key}", url, "proxy")
        elif patch.get("kind") == "RegistryMirrorConfig":
            endpoints = patch.get("endpoints")
            for j, endpoint in enumerate(endpoints if isinstance(endpoints, list) else []):
                add(f"{at}.endpoints[{j}].url", _get(endpoint, "url"), "mirror")
    for board, args in (kernel_args or {}).items():
        for k, arg in enumerate(args):
            variable, _, url = str(arg).removeprefix("talos.environment=").partition("=")
            if str(arg).startswith("talos.environment=") and variable.lower() in _PROXY_VARIABLES:
                add(f"arda.kernelArgs.{board}[{k}]", url, "proxy")
    return out


@dataclass(frozen=True)
class IpArg:
    """An `ip=` kernel argument of arda.kernelArgs, its fields as the kernel and Talos read them (the kernel's
    Documentation/admin-guide/nfs/nfsroot.rst, `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:
    <autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`; siderolabs/talos internal/app/machined/pkg/controllers/network/
    cmdline.go:96-222 at ad882317 (v1.14.0-beta.1-84), ParseCmdlineNetwork, which splits at the colons outside square
    brackets (splitIPArgument, :46-71), skips an empty field, takes field 0 as the link's address, 2 its gateway, 7 and
    8 the DNS servers and 9 the NTP server, and ignores `ip=dhcp` and `ip=<device>:dhcp`). Each address as written."""

    path: str  # arda.kernelArgs.<board>[k], `iluvatar:`-less
    board: str
    written: str  # the whole argument, ip= and all
    client: str
    gateway: str
    servers: tuple[tuple[str, Kind], ...]  # the DNS servers ("resolver") and the NTP server ("ntp"), in field order
    fields: tuple[str, ...] = ()  # all ten fields, as split (an absent one empty)


# The one-word values of ip= the kernel (Documentation/admin-guide/nfs/nfsroot.rst) and dracut (dracut.cmdline(7))
# read as autoconfiguration or none, besides dhcp, which Talos reads itself.
IP_KEYWORDS = frozenset({"off", "none", "on", "any", "bootp", "rarp", "both", "dhcp6", "auto6", "either6", "link6", "link-local"})


def ip_args(kernel_args: Mapping[str, Sequence[str]] | None) -> list[IpArg]:
    """The `ip=` arguments of arda.kernelArgs, by board in the order written (`IpArg`)."""
    out: list[IpArg] = []
    for board, args in (kernel_args or {}).items():
        for k, arg in enumerate(args):
            if not str(arg).startswith("ip="):
                continue
            fields = _split_ip(str(arg).removeprefix("ip="))
            if fields == ["dhcp"] or (len(fields) == 2 and fields[1] == "dhcp"):
                continue  # the link asks DHCP: no address is written
            if len(fields) == 1 and fields[0].lower() in IP_KEYWORDS:
                # The kernel's and dracut's one-word forms: Talos fails to parse the word as field 0's address
                # (cmdline.go:137-141 at v1.14.0-rc.1) and ignores the command line's networking, so the links take
                # the default DHCP, as with no argument.
                continue
            field = [*fields, *[""] * 10][:10]
            kinds: tuple[Kind, ...] = ("resolver", "resolver", "ntp")
            servers = tuple((field[7 + j], kind) for j, kind in enumerate(kinds) if field[7 + j])
            out.append(IpArg(f"arda.kernelArgs.{board}[{k}]", board, str(arg), field[0], field[2], servers, tuple(field)))
    return out


def _split_ip(value: str) -> list[str]:
    """`ip=`'s value split at the colons outside square brackets (an IPv6 address), each field without its brackets:
    Talos's splitIPArgument (network/cmdline.go:46-71 at ad882317)."""
    parts: list[str] = []
    depth = start = 0
    for i, c in enumerate(value):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == ":" and depth == 0:
            parts.append(value[start:i].strip("[]"))
            start = i + 1
    parts.append(value[start:].strip("[]"))
    return parts


def time_servers(patches: Sequence[tuple[str, Mapping[str, object]]]) -> list[tuple[str, str]]:
    """The time servers Arda's Talos patches name, each with its key (`iluvatar:`-less), as written: a v1alpha1 patch's
    machine.time.servers, a TimeSyncConfig document's ntp.servers. Not those of a machine whose time sync is off: a
    patch for every machine (arda.patches) or its own that sets machine.time.disabled: true or a TimeSyncConfig's
    enabled: false, since Talos then asks no server (siderolabs/talos v1.14.0-rc.1 internal/app/machined/pkg/controllers/
    time/sync.go:206-208, syncDisabled; the same at v1.12.4 and v1.13.0)."""
    off: set[str] = set()  # "arda", or a machine's `nodes[i]`, whose time sync a patch turns off
    for written, patch in patches:
        if _sync_off(patch):
            off.add(_scope(written))
    out: list[tuple[str, str]] = []
    for written, patch in patches:
        if "arda" in off or _scope(written) in off:
            continue
        at = written.removeprefix("iluvatar:")
        if patch.get("kind") is None:
            time = _get(_get(patch, "machine"), "time")
            servers, key = _get(time, "servers"), f"{at}.machine.time.servers"
        elif patch.get("kind") == "TimeSyncConfig":
            servers, key = _get(_get(patch, "ntp"), "servers"), f"{at}.ntp.servers"
        else:
            continue
        out += [(f"{key}[{j}]", s) for j, s in enumerate(servers if isinstance(servers, list) else []) if isinstance(s, str)]
    return out


def host_entries(patches: Sequence[tuple[str, Mapping[str, object]]]) -> list[tuple[str, object, object]]:
    """The static host entries of Arda's Talos patches: the key of each one's address (`iluvatar:`-less), the address and
    the names it pins (a v1alpha1 patch's machine.network.extraHostEntries[] ip and aliases, a StaticHostConfig's name
    and hostnames), as written."""
    out: list[tuple[str, object, object]] = []
    for written, patch in patches:
        at = written.removeprefix("iluvatar:")
        if patch.get("kind") is None:
            hosts = _get(_get(_get(patch, "machine"), "network"), "extraHostEntries")
            for j, entry in enumerate(hosts if isinstance(hosts, list) else []):
                if isinstance(entry, Mapping):
                    out.append((f"{at}.machine.network.extraHostEntries[{j}].ip", entry.get("ip"), entry.get("aliases")))
        elif patch.get("kind") == "StaticHostConfig":
            out.append((f"{at}.name", patch.get("name"), patch.get("hostnames")))
    return out


def _get(value: object, key: str) -> object:
    return value.get(key) if isinstance(value, Mapping) else None


def _scope(written: str) -> str:
    """The machines a patch is for: `arda` (arda.patches: every one), or `nodes[i]` (that machine's talosPatches)."""
    return written.removeprefix("iluvatar:").split(".talosPatches", 1)[0] if ".talosPatches" in written else "arda"


def _sync_off(patch: Mapping[str, object]) -> bool:
    """Whether a patch turns its machines' time sync off (machine.time.disabled: true, a TimeSyncConfig's enabled: false)."""
    if patch.get("kind") is None:
        return _get(_get(_get(patch, "machine"), "time"), "disabled") is True
    return patch.get("kind") == "TimeSyncConfig" and patch.get("enabled") is False


def _zone_name(server: str, domain: str | None) -> str:
    """A server written as a name inside the internal zone (network.domain), lower case without its trailing dot, or ""
    (an address, a PTP device, a single label, a name outside the zone). A single label is left alone: Talos writes no
    search line for Arda's machines, whose hostnames have no domain (`searching`), so it never reads as the zone's name."""
    name = server.rstrip(".").lower()
    zone = (domain or "").rstrip(".").lower()
    if not zone or "." not in name or not under(name, zone):
        return ""
    try:
        IPv4Address(name)
    except ValueError:
        return name
    return ""


def patched_names(
    patches: Sequence[tuple[str, Mapping[str, object]]],
    zone: Mapping[str, IPv4Address],
    domain: str | None,
    kernel_args: Mapping[str, Sequence[str]] | None = None,
) -> list[Server]:
    """The NTP servers, registry mirrors and proxies of Arda's Talos patches (`pull_servers`) written as a name inside the internal zone, as `unknown_names` reads the
    other layers' servers: a name the zone does not hold resolves nowhere (the Ainur answer the zone from the plan's
    records alone), so no machine could set its clock."""
    out: list[Server] = []
    for path, server in time_servers(patches):
        if name := _zone_name(server, domain):
            address = zone.get(name)
            out.append(Server(path, server, server, "ntp", address, name if address is not None else ""))
    for path, written, host, kind in pull_servers(patches, kernel_args):
        if name := _zone_name(host, domain):
            address = zone.get(name)
            out.append(Server(path, written, host, kind, address, name if address is not None else ""))
    return out


def host_names_in_zone(
    patches: Sequence[tuple[str, Mapping[str, object]]],
    zone: Mapping[str, IPv4Address],
    domain: str | None,
    owners: Mapping[str, str],
) -> Iterator[Problem]:
    """A static host entry of Arda's Talos patches that pins a name of the internal zone (`zone`, the plan's records
    under `domain`, network.domain) to another address than the zone's: Talos answers its machines' lookups of that name
    from the entry (siderolabs/talos v1.14.0-rc.1 internal/pkg/dns/static_host.go:40, ServeDNS, which
    internal/pkg/dns/manager.go:46 puts before the upstream resolvers), and
    Arda's CoreDNS forwards to the machine's resolver (plans.coredns), so the machines and their pods reach the
    entry's host while the rest of the LAN reaches the zone's: two places naming one host. `owners`: the key that
    gives each of the zone's names (a machine's, an app's host, identity's), as a message names it. A name the zone
    does not hold is the entry's own to give."""
    for path, address, names in host_entries(patches):
        if not isinstance(names, list) or not isinstance(address, str):
            continue  # a malformed entry: Talos refuses it
        at = path.removesuffix(".ip") + ".aliases" if path.endswith(".ip") else path.removesuffix(".name") + ".hostnames"
        for k, written in enumerate(names):
            name = _zone_name(written, domain) if isinstance(written, str) else ""
            planned = zone.get(name) if name else None
            if planned is None or str(address) == str(planned):
                continue
            owner = owners.get(name)
            yield Problem(
                f"iluvatar:{at}[{k}]",
                f"{written} is a name of the internal zone {domain}{f', {owner}' if owner else ''}, which the zone gives "
                f"{planned}; this entry pins it to {address}, so Arda's machines and their pods would reach {address} under "
                f"it and the rest of the LAN {planned}; remove {written} from the entry (the zone already answers it), or "
                "give the host at the entry's address a name of its own",
            )


def _host_entry(names: object) -> str:
    """How a message names a static host entry: by the names it pins, when it has any."""
    listed = ", ".join(str(n) for n in names) if isinstance(names, list) and names else ""
    return f"a static host entry of Arda's machines{f': {listed}' if listed else ''}"


def routed(remote: RemoteAccess | None) -> list[Held]:
    """The devices remote access routes to by their own address (a /32 of `routes`: a NAS, a printer), registered last.
    Such an address is a device's like the NAS's: kube-vip announcing it for Headscale would fight the device for it.
    Only the rules that place an address of the homelab's own read them (`without_routes` gives the rest): a route over
    the clusters' own addresses, the load-balancer pool or a lent range is stacks.remote_access's (`_routes`, `lent_routes`)."""
    if remote is None:
        return []
    return [
        Held(r.network_address, f"remoteAccess.routes[{k}]", f"remoteAccess.routes[{k}] ({r}, a device the subnet router routes to)", "route")
        for k, r in enumerate(remote.routes)
        if r.prefixlen == 32
    ]


@dataclass(frozen=True)
class ClustersOwn:
    """What a remote-access route is checked against (stacks.remote_access): `addresses`, the clusters' own addresses
    one by one with their owners; `lent`, the ranges whose addresses are only lent (`route_ranges`), which every route
    must leave out (stacks.remote_access.lent_routes) and a route suggested in place of a refused one leaves out too."""

    addresses: Mapping[IPv4Address, str]
    lent: tuple[Lent, ...] = ()
    waiting: tuple[str, ...] = ()  # the lent ranges machines waiting to be discovered are lent (`waiting_range`)
    # Arda's workers' addresses with their owners: not the clusters' own, but a route over one is warned of for a group
    # kept off the clusters (stacks.warn._routes_over_workers), so the routes offered in place of a refused one leave
    # them out for such a group.
    workers: Mapping[IPv4Address, str] = field(default_factory=dict)

    def within(self, first: IPv4Address, last: IPv4Address) -> list[tuple[IPv4Address, IPv4Address, str]]:
        """The clusters' own addresses from first to last, in order, each as (low, high, owner)."""
        return sorted((ip, ip, owner) for ip, owner in self.addresses.items() if first <= ip <= last)


def clusters_own(
    held: Sequence[Held],
    nodes: Sequence[tuple[int, Node]],
    discovery_pool: AddressRange | None = None,
    network: Network | None = None,
    ainur: Ainur | None = None,
    discovery: Discovery | None = None,
) -> ClustersOwn:
    """The clusters' own addresses a route must not open to a group kept off the clusters, with their owners: every VIP
    kube-vip announces (both API servers, the Ainur's service address and Git mirror), the front door, Headscale's
    address, the Pis, Arda's control planes and every machine's BMC. Each is a machine's every port (SSH, an API server,
    the kubelet): a VIP or the front door is answered by whichever Pi or control plane holds it; a BMC's API powers,
    reflashes and opens the serial console of each machine in its board (plans.power), the cluster itself. Arda's
    workers are left out: they hold no address but their own, and what they run is reached through the gateways or
    reach: ports, not on the worker's address (no LoadBalancer Service of Arda's holds a NodePort, plans.ports.service);
    a route to one reaches its kubelet and Talos's API, both authenticating their clients but for Talos's in maintenance
    mode (a worker reset until the next `up`, a machine discovered until its apply), so a route over one is warned of
    (`workers`, stacks.warn._routes_over_workers). With them, the lent ranges
    (`route_ranges`), the discovery pool among them: a route into one is refused or warned of whatever the groups
    reach (stacks.remote_access.lent_routes)."""
    kept = {f"nodes[{i}].ip" for i, n in nodes if n.role in AINUR_ROLES or n.role == "valinor"}
    out: dict[IPv4Address, str] = {}
    for h in held:
        if h.kind in ("vip", "identity", "headscale", "bmc") or (h.kind == "node" and h.path in kept):
            out.setdefault(h.ip, h.owner)
    workers = {ip: owner for ip, owner in arda_workers(nodes).items() if ip not in out}
    return ClustersOwn(out, tuple(route_ranges(network, ainur, discovery_pool)), waiting_range(discovery, ainur), workers)


def arda_workers(nodes: Sequence[tuple[int, Node]]) -> dict[IPv4Address, str]:
    """Arda's workers' addresses, each with its owner as the address table names it (`nodes[6].ip (gandalf)`)."""
    return {n.ip: f"nodes[{i}].ip ({n.name})" for i, n in nodes if n.role not in AINUR_ROLES and n.role != "valinor"}


def waiting_range(discovery: Discovery | None, ainur: Ainur | None) -> tuple[str, ...]:
    """The lent ranges machines waiting to be discovered on network.lan are lent, by their keys: the discovery pool in
    dhcp mode; in proxy mode the pool the router lends them (stacks.discovery): ainur.netboot.routerPool where the stack
    names it (after a move from dhcp the router lends routerPool, kept apart from the Ainur's old leases and grown back
    by updating routerPool, docs/layers/netboot.md#changing-the-dhcp-mode), and network.dhcpRange, the router's pool
    as the LAN's rules read it. None without discovery, or for discovery on a VLAN, whose DHCP server's range the stack
    does not know."""
    if discovery is None or discovery.vlan is not None:
        return ()
    if discovery.pool is not None:
        return (DISCOVERY_POOL,)
    if ainur is None or ainur.netboot.mode != "proxy":
        return ()
    return ((ROUTER_POOL,) if isinstance(ainur.netboot.router_pool, AddressRange) else ()) + (DHCP_RANGE,)


def without_routes(held: Sequence[Held]) -> list[Held]:
    """The table without the routed devices (`routed`)."""
    return [h for h in held if h.kind != "route"]


def services(pool: Sequence[tuple[IPv4Address, str]], apps: Sequence[tuple[int, App]]) -> list[Held]:
    """The load-balancer pool's addresses the stack's own Services take (`pool`: the gateways, the LAN resolver, the log
    store, named as the messages name them) and, after them, each raw-port app's own address."""
    out = [Held(ip, "network.loadBalancerPool", owner, "pool") for ip, owner in pool]
    out += [Held(app.address, f"apps[{i}].address", address_owner(i, app), "app") for i, app in apps if app.ports and app.address is not None]
    return out


def ntp_pods(apps: Sequence[tuple[int, App]], nodes: Sequence[tuple[int, Node]]) -> list[Held]:
    """The apps whose host-network pod listens on NTP's port (123/udp) on an Arda machine, at that machine's address: an
    NTP server written there answers, as a pod on Arda (`check` says what that does to Arda's boot)."""
    ips = {n.name: n.ip for _, n in nodes}
    return [
        Held(ips[app.host_network.node], f"apps[{i}].hostNetwork", f"apps[{i}].hostNetwork ({app.name}'s host-network pod)", "app")
        for i, app in apps
        if app.host_network is not None
        and app.host_network.node in ips
        and any(p.port == 123 and p.protocol.lower() == "udp" for p in app.host_network.ports)
    ]


def table(held: Sequence[Held], leave_out: frozenset[Kind] = frozenset()) -> dict[IPv4Address, str]:
    """The addresses and their owners, first owner kept, without the kinds left out (a rule's own)."""
    out: dict[IPv4Address, str] = {}
    for h in held:
        if h.kind not in leave_out:
            out.setdefault(h.ip, h.owner)
    return out


def check(
    held: Sequence[Held],
    network: Network | None,
    ainur: Ainur | None,
    free: Callable[[Collection[IPv4Address]], IPv4Address | None] | None = None,
    routes: Sequence[Held] = (),
    apps: Sequence[Held] = (),
) -> Iterator[Problem]:
    """The collisions no layer's own rule sees: a VIP, a machine or a DNS server at a device's or the homelab's address,
    and every device, whichever layer names it, inside network.dhcpRange or the load-balancer pool. The front door's and
    Headscale's addresses are checked by their own layers against `table`; a machine at a BMC's by stacks.power; the
    backup target's and the NFS class's server against Arda and the Ainur by stacks.data and stacks.storage (either may
    be a machine or a VIP of the internal zone), and the backup target inside the pool by stacks.data (a Service on
    Arda, the cluster it backs up). `free`: the LAN's first address free of the table, of the ranges lent and of the
    addresses given (stacks.rules.free_address), which a message suggests to an address of the homelab's own that must
    move; each message is given another, so that the fixes taken together validate too. `apps`: the raw-port apps'
    addresses in the pool (`services`) and the host-network pods serving NTP on a machine (`ntp_pods`), which a message
    about an NTP server there names."""
    devices = [h for h in held if h.kind in DEVICES]
    app_at = {a.ip: a.owner for a in apps}
    yield from _alone(devices, network)
    for h in held:
        if h.kind not in ("node", "vip", "identity", "headscale"):
            continue
        for d in devices:
            if d.kind == "ntp" and d.ip == h.ip and h.ip in app_at:
                # An app's host-network pod serving NTP on the machine (`ntp_pods`): it answers, but only once Arda has booted.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{d.name or d.ip} is {h.path}, a machine's address, where NTP is {app_at[h.ip]}, a pod on Arda, which runs only "
                    f"once Arda's machines have booted, and Talos holds a machine's boot until its clock syncs "
                    "(machine.time.bootTimeout: forever unless set), so after a power cut Arda would never boot; give the NTP "
                    f"server a fixed address off Arda (the router, a NAS) in {d.path}",
                )
                break
            if d.kind == "ntp" and d.ip == h.ip and d.written.startswith("ip="):
                # No machine, VIP or front door of the homelab serves NTP (Talos and the Ainur's Ubuntu sync their clocks
                # as clients): the kernel argument's server is the slip.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is {h.path}, {_own_noun(h)}, where no NTP server answers, so {CLIENTS[d.kind]}; write the NTP "
                    "server's own address in the argument's last field",
                )
                break
            if d.kind == "ntp" and d.ip == h.ip:
                # No machine, VIP or front door of the homelab serves NTP (Talos and the Ainur's Ubuntu sync their clocks
                # as clients): the patch's server is the slip.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{d.name or d.ip} is {h.path}, {_own_noun(h)}, where no NTP server answers, so {CLIENTS[d.kind]}; write the NTP "
                    f"server's own address (or its name) in {d.path}",
                )
                break
            if d.kind == "resolver" and d.ip == h.ip and not (ainur is not None and h.ip == ainur.service_ip):
                # The Ainur's service address answers DNS (plans.netboot's dnsmasq); no other address of the homelab's own
                # does before Arda runs: the kernel argument's server is the slip.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is {h.path}, {_own_noun(h)}, where no DNS server answers, so {CLIENTS[d.kind]}; write the DNS "
                    "server's own address in the argument (its dns0-ip or dns1-ip field)",
                )
                break
            if d.kind in PULLS and d.ip == h.ip:
                # No machine, VIP or front door of the homelab serves a registry or a proxy before Arda runs: a pod there
                # (a host-network one) starts only once its machine has pulled its images, through this very server.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is {h.path}, {_own_noun(h)}, where {NOUNS[d.kind]} does not answer before Arda runs, so "
                    f"{CLIENTS[d.kind]}; write {NOUNS[d.kind]}'s own address (a NAS, a host off Arda) in {d.path}",
                )
                break
            if h.kind in ("identity", "headscale"):
                # Only the front door's listeners (Dex, the CA page, the Ainur's Argo CD) or Headscale's answer at these
                # addresses: a server written there is the slip, so it is said at the key that names the server. The NAS
                # and the DNS servers there are the identity and remote-access layers' own rules' (`table`).
                if d.kind in SERVERS and d.ip == h.ip:
                    yield Problem(
                        f"iluvatar:{d.path}",
                        f"{_written(d)} is {FRONTS[h.kind]}, where {NOUNS[d.kind]} does not answer, so {CLIENTS[d.kind]}; write "
                        f"{NOUNS[d.kind]}'s own address in {d.path}{_or_move(d, h)}",
                    )
                    break
                continue
            # A machine may be the NAS or the NFS class's server, and either at Arda's VIP is its own layer's to refuse,
            # once (stacks.storage at storage.nfs.server, stacks.data at backup.target: Arda's API server, the cluster
            # the backups are for): the VIP is not what moves.
            if (
                d.ip != h.ip
                or d.kind == "dns"
                # A host entry may name any host of the homelab's own (`PATCHED`).
                or d.kind == "host"
                # The router's DHCP server at an address of the homelab's own is said once, at routerAddress, below.
                or d.kind == "router"
                or (d.kind == "bmc" and h.kind == "node")
                or (d.kind in ("nas", "nfs") and h.kind == "node")
                or (d.kind in ("nas", "nfs") and h.path == "arda.vip")
                # A server on a machine or at Arda's VIP is on Arda or the Ainur: its layer's rule on Arda speaks.
                or (d.kind in SERVERS and (h.kind == "node" or h.path == "arda.vip"))
                # The Ainur's dnsmasq answers DNS at the service address (plans/netboot/dnsmasq.py:196, listen-address):
                # a kernel argument's DNS server there is the one that answers before Talos is configured.
                or (d.kind == "resolver" and ainur is not None and h.ip == ainur.service_ip)
            ):
                continue
            if d.kind in ("nas", "nfs"):
                # Either address may be the slip: said once, at the key that names the server, with both ways out.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is {h.path}, an address kube-vip announces, where no NAS answers while kube-vip holds it; write "
                    f"the NAS's own address in {d.path}, or, if the NAS does have {d.ip}, give {h.path} a free one",
                )
                break
            if (
                d.kind == "git"
                and h.path == "ainur.gitMirror.ip"
                and ainur is not None
                and ainur.git_mirror is not None
                and ainur.git_mirror.url is None
            ):
                # The mirror answers there, but without gitMirror.url gitops.repoUrl is what it clones
                # (plans.gitops.mirror_source): it would clone itself, and no commit pushed anywhere would reach Argo CD.
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is ainur.gitMirror.ip, the Ainur's Git mirror: repoUrl is the upstream the mirror clones, so the mirror "
                    "would clone itself and no commit would ever reach it; write the real Git server (e.g. "
                    "https://github.com/you/homelab.git), Argo CD already reads the mirror",
                )
                break
            if d.kind in SERVERS:
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is {h.path}, an address kube-vip announces, where {NOUNS[d.kind]} does not answer while kube-vip "
                    f"holds it, so {CLIENTS[d.kind]}; write its own address in {d.path}{_or_move(d, h)}",
                )
                break
            what = "a machine's address" if h.kind == "node" else "an address kube-vip announces"
            yield Problem(
                f"iluvatar:{h.path}", f"{h.ip} is {d.owner}; {h.path} is {what}, so it needs one no device on the LAN has: give it a free one"
            )
            break
    own = {h.ip: h for h in held if h.kind not in DEVICES}
    router = ainur.netboot.router_address if ainur is not None else None
    if router is not None and router in own:
        # The DHCP probe of `up` tells the router's answers from a foreign server's by this address (components/netboot
        # hands it to plans.netboot.dhcp_probe as the router, the Ainur's own addresses as theirs): at one of the
        # homelab's own, the real router's answer is "another DHCP server" and the step refuses, or, in proxy mode,
        # the router is never heard.
        yield Problem(
            f"iluvatar:{ROUTER_ADDRESS}",
            f"{router} is {own[router].owner}, an address of the homelab's own, not the router's: the DHCP probe would take "
            f"the router's answers for another DHCP server's and stop `up`; {_router_fix(network)}",
        )
    if network is None:
        return
    yield from _bmc_at_a_router(devices, network)
    yield from _bmc_off_the_networks(devices, network)
    dhcp_mode = ainur is not None and ainur.netboot.mode == "dhcp"
    # One address inside the range is one device's, and one lease: said once, at the first key that names it, with the
    # others and the routes to it (stacks.remote_access.lent_routes leaves those to this).
    lent_devices = with_routes(in_dhcp_range(held, network, ainur), routes)
    # In the load-balancer pool: the NAS of the backups is stacks.data's to refuse (a server there is a Service on Arda,
    # the cluster being backed up). Without the Ainur, Arda serves the LAN's names itself (its resolver, stacks.edge
    # checks its upstream). The other layers' servers there are Services on Arda: their own rules on Arda speak
    # (stacks.monitoring and stacks.gitops refuse, stacks.warn warns of the alert receiver and the sign-in directory).
    in_pool = same_device(
        [
            d
            for d in devices
            if d.kind not in ("nas", "host")
            and d.kind not in SERVERS
            and not (d.kind == "dns" and ainur is None)
            and d.ip in network.load_balancer_pool
        ]
    )
    blamed: set[str] = set()
    given: list[IPv4Address] = []
    router_offered: str | None = None  # the network.dns entry a message offered the router for
    for d in devices:
        path = f"iluvatar:{d.path}"
        if d.kind == "dns":
            # network.dns is where the Ainur forward the names outside the zone (plans.netboot): one of the homelab's own
            # addresses there forwards the LAN's names to a machine that answers none, or back to the Ainur. The
            # service address has its own rule (stacks.rules._netboot). The DNS server (a router, a Pi-hole, an AdGuard
            # Home) is a device that exists outside the homelab and keeps its address, as the NAS and the BMC do. On a
            # deployed homelab, though, the homelab's address is live and nothing else answers there, so the entry is the
            # likelier slip and its fix comes first; the move is the other way out, for a stack not yet deployed. Arda's
            # VIP is never offered a move: it is fixed once the cluster is made (stacks.day2._arda_vip refuses a change),
            # so there the entry alone is what to fix, and it is said at the entry.
            held_by = own.get(d.ip)
            if held_by is not None and not (ainur is not None and d.ip == ainur.service_ip) and held_by.path not in blamed:
                blamed.add(held_by.path)
                forward = "the Ainur forward" if ainur is not None else "the LAN resolver on Arda forwards"
                if held_by.path == "arda.vip":
                    yield Problem(
                        f"iluvatar:{d.path}",
                        f"{d.ip} is arda.vip, the address kube-vip announces for Arda's API server, where no DNS server "
                        f"answers, so {forward} the names outside the zone to Arda's control plane and no machine could "
                        f"resolve them; arda.vip is fixed once the cluster is made, so write the DNS server's own address "
                        f"(a router, a Pi-hole) in {d.path}",
                    )
                    continue
                vlan = next((v for v in network.vlans if d.ip in v.cidr), None)
                if vlan is None:
                    offer = free(given) if free is not None else None
                    where = "on the LAN"
                else:
                    # A machine on a VLAN moves within its VLAN (stacks.rules._vlan_node): the LAN's free address
                    # would be refused there.
                    offer = _free_on(vlan.cidr, {h.ip for h in held} | set(given) | {vlan.gateway})
                    where = f"on VLAN {vlan.name}"
                suggest = f" (e.g. {offer})" if offer is not None else ""
                given += [offer] if offer is not None else []
                # The entry is what was mistyped (a machine's address where the resolver's was meant), so it is said at
                # the entry, with the LAN's resolver to write there: the router, unless another entry names it already
                # or an earlier message offered it (the fixes taken together list no server twice, stacks.warn._dns_twice).
                # Where another resolver stays listed (a Pi-hole, a VLAN's router), removing the entry is the fix: the
                # router beside a Pi-hole would answer a share of what it filters, as dnsmasq without strict-order sends
                # to every server every 50 queries or 20 s and keeps the fastest (dnsmasq v2.90 src/forward.c:350-364,
                # src/config.h:31-32).
                listed = next((f"network.dns[{j}] is" for j, ip in enumerate(network.dns) if ip == network.gateway), None)
                listed = listed or (f"{router_offered} is to be" if router_offered is not None else None)
                staying = next((f"network.dns[{j}] {ip}" for j, ip in enumerate(network.dns) if ip not in own), None)
                if listed is not None:
                    resolver = f"remove it ({listed} the router, network.gateway {network.gateway}) or write another resolver (a Pi-hole) in {d.path}"
                elif staying is not None:
                    resolver = f"remove it ({staying} stays, the resolver they go to)"
                else:
                    resolver = f"write the LAN's resolver in {d.path}: the router, network.gateway {network.gateway}, or a Pi-hole"
                    router_offered = d.path
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{d.ip} collides with {held_by.path}, {_own_noun(held_by)}: {d.path} is the DNS server {forward} the "
                    f"names outside the zone to, and the entry holds the homelab's address instead of the resolver's; "
                    f"{resolver}; or, if a DNS server does answer at {d.ip} and the homelab is not yet deployed, give "
                    f"{held_by.path} a free one{suggest}, since it needs one no device {where} has",
                )
        what = NOUNS[d.kind]
        # A server written as a zone name of a machine or a VIP has that one's address, whose own rule says where it is.
        named_own = bool(d.name) and d.ip in own
        if dhcp_mode and d.ip in network.dhcp_range and d.ip != network.gateway and not named_own and lent_devices[d.ip][0] == d:
            # Every device the stack names is checked here, whichever layer names it. In dhcp mode the Ainur's dnsmasq
            # lends every address of the range without a ping first (dhcp-authoritative, no-ping, plans.netboot.dnsmasq)
            # and knows no reservation but the machines': the device keeps its address only until it is lent to another
            # machine, and the layer that names it (the backups, the NFS mounts, the forwarding, the power control) then
            # reaches that machine. In proxy mode, or without the Ainur, the router lends the range and may hold a
            # reservation for the device that the stack cannot see: a warning (stacks.warn._devices_in_router_range),
            # since what the stack points at the device reaches it by the address written. The gateway inside the range is the range's own problem (stacks.rules._range).
            others = [o.path for o in lent_devices[d.ip][1:]]
            if not others:
                fix = _router_fix(network, "the range") if d.kind == "router" else f"give {what} a fixed address outside the range"
                yield Problem(
                    path,
                    f"{_written(d)} is inside network.dhcpRange {network.dhcp_range}, the addresses DHCP lends: {what} would keep it "
                    f"only until it is lent to another machine; {fix}",
                )
            else:
                yield Problem(
                    path,
                    f"{_written(d)} is inside network.dhcpRange {network.dhcp_range}, the addresses DHCP lends, and {and_list(others)} "
                    f"name{'s' if len(others) == 1 else ''} the same device: it would keep the address only until it is lent to "
                    f"another machine; give the device a fixed address outside the range, and {_write_it(lent_devices[d.ip])}",
                )
        pooled = in_pool.get(d.ip, [])
        if d not in pooled or pooled[0] != d:
            continue
        if len(pooled) == 1:
            fix = _router_fix(network, "the pool") if d.kind == "router" else f"give {what} a fixed address outside the pool"
            # An NTP server must run before Arda's machines boot: off Arda, on a device of the LAN.
            fix += " (the router, a NAS: a device off Arda)" if d.kind == "ntp" else " (a NAS, a host off Arda)" if d.kind in PULLS else ""
            yield Problem(
                path,
                f"{_written(d) if d.kind in PULLS or d.written.startswith('ip=') else d.name or d.ip} is inside network.loadBalancerPool {network.load_balancer_pool}, the addresses Arda's Services take: "
                f"{_in_pool_why(d, app_at)}; {fix}",
            )
            continue
        # One address, one device: its keys said once, each one's harm, and a fix that moves them all.
        others = [o.path for o in pooled[1:]]
        yield Problem(
            path,
            f"{d.ip} is inside network.loadBalancerPool {network.load_balancer_pool}, the addresses Arda's Services take, and "
            f"{and_list(others)} name{'s' if len(others) == 1 else ''} the same device: {'; '.join(dict.fromkeys(_in_pool_why(o, app_at) for o in pooled))}; "
            f"give the device a fixed address outside the pool, and {_write_it(pooled)}",
        )


def _free_on(net: IPv4Network, taken: Collection[IPv4Address | None]) -> IPv4Address | None:
    """A VLAN's first host address in none of `taken` (the table's, the ones other messages offered, its gateway)."""
    return next((ip for ip in net.hosts() if ip not in taken), None)


def _in_pool_why(d: Held, apps: Mapping[IPv4Address, str] | None = None) -> str:
    """What a device inside the load-balancer pool loses: a Service takes its address (a DNS server's, the LAN's names).
    An NTP server there is a Service on Arda (`apps`: an app's address, by its owner), which Arda's own machines wait
    for: Talos holds a machine's boot until its clock syncs (CLIENTS)."""
    if d.kind == "dns":
        return "the Ainur would forward the whole LAN's names to a Service on Arda, and the house would lose them whenever Arda is down"
    if d.kind == "ntp":
        app = (apps or {}).get(d.ip)
        service = (
            f"it is {app}, a Service on Arda" if app else "an NTP server there is a Service on Arda (Cilium gives the pool's addresses to Services)"
        )
        return (
            f"{service}, which runs only once Arda's machines have booted, and Talos holds a machine's boot until its clock "
            "syncs (machine.time.bootTimeout: forever unless set), so after a power cut Arda would never boot"
        )
    if d.kind in PULLS:
        # A registry or a proxy served from Arda is Arda's own pull's chicken and egg: its pod's images come through it.
        return (
            f"{NOUNS[d.kind]} there is a Service on Arda (Cilium gives the pool's addresses to Services), which runs only once "
            f"Arda's machines have pulled its images, so {CLIENTS[d.kind]}"
        )
    return f"Cilium would give {NOUNS[d.kind]}'s address to a Service"


def same_device(devices: Sequence[Held]) -> dict[IPv4Address, list[Held]]:
    """Devices of the table by address, each address's in the table's order: the keys that write one address name one
    device (the NAS that serves the backups, the NFS class and the DNS), so a rule about the address says it once."""
    out: dict[IPv4Address, list[Held]] = {}
    for d in devices:
        out.setdefault(d.ip, []).append(d)
    return out


def with_routes(devices: dict[IPv4Address, list[Held]], routes: Sequence[Held]) -> dict[IPv4Address, list[Held]]:
    """`devices` with the remote-access routes to one of them (a /32 at its address, `routed`) after its keys."""
    return {ip: [*held, *(r for r in routes if r.ip == ip)] for ip, held in devices.items()}


def _write_it(held: Sequence[Held]) -> str:
    """The fix of a device several keys name: the new address in every one, a route to it as that address's /32."""
    keys = [h.path for h in held if h.kind != "route"]
    routes = [h.path for h in held if h.kind == "route"]
    return f"write it in {and_list(keys)}" + (f", and route it in {and_list(routes)} (as <address>/32)" if routes else "")


def in_dhcp_range(held: Sequence[Held], network: Network | None, ainur: Ainur | None) -> dict[IPv4Address, list[Held]]:
    """In dhcp mode, the devices of the table inside network.dhcpRange, by address (`same_device`): the gateway inside
    it is the range's own problem, and a server written as a zone name of the homelab's own is that address's rule's."""
    if network is None or ainur is None or ainur.netboot.mode != "dhcp":
        return {}
    own = {h.ip for h in held if h.kind not in DEVICES}
    return same_device(
        [d for d in held if d.kind in DEVICES and d.ip in network.dhcp_range and d.ip != network.gateway and not (d.name and d.ip in own)]
    )


def in_router_pool(held: Sequence[Held], ainur: Ainur | None, network: Network | None) -> dict[IPv4Address, list[Held]]:
    """In dhcp mode, the devices of the table inside ainur.netboot.routerPool, by address (`same_device`), as
    `router_pool` refuses them: none while the pool overlaps network.dhcpRange, none in a load-balancer pool over it,
    and none at routerAddress: the router's DHCP server's own address is no lease of the pool it lent, and the keys
    that write it name that one device (a NAS or a Pi-hole serving DHCP)."""
    if ainur is None or ainur.netboot.mode != "dhcp" or not isinstance(ainur.netboot.router_pool, AddressRange):
        return {}
    pool = ainur.netboot.router_pool
    if network is not None and pool.overlaps(network.dhcp_range):
        return {}
    lb = network.load_balancer_pool if network is not None else None
    return same_device(
        [
            h
            for h in held
            if h.kind in DEVICES
            and h.ip != ainur.netboot.router_address
            and h.ip in pool
            and not (lb is not None and lb.overlaps(pool) and h.ip in lb)
        ]
    )


def _router_fix(network: Network | None, outside: str = "") -> str:
    """The fix of ainur.netboot.routerAddress: the address the router's DHCP answers carry (a slip of the key is the
    likelier), or network.gateway, which the probe takes without it and whose own rules place it."""
    where = f" (outside {outside})" if outside else ""
    gateway = f" {network.gateway}" if network is not None else ""
    return f"give the address the router's DHCP answers carry as server identifier{where}, or remove routerAddress to take network.gateway{gateway}"


def _own_noun(h: Held) -> str:
    """What an address of the homelab's own is, as a collision's message says it."""
    if h.kind == "node":
        return "a machine's address"
    if h.kind in FRONTS:
        return f"{FRONTS[h.kind].split(', ', 1)[1]}, an address kube-vip announces"
    return "an address kube-vip announces"


def _alone(devices: Sequence[Held], network: Network | None) -> Iterator[Problem]:
    """A device of the table at the address of one that shares it with none (`ALONE`: a BMC), said at the other device's
    key, which names a server the stack reaches there, with the BMC's key as the other way out. Not at a subnet's
    network or broadcast address, which no host has: `host_edges` says so at both keys, and the fix is a host address."""
    subnets = network.subnets() if network is not None else []
    edges = {ip for net in subnets if net.prefixlen < 31 for ip in (net.network_address, net.broadcast_address)}
    alone = {d.ip: d for d in devices if d.kind in ALONE and d.ip not in edges}
    for d in devices:
        first = alone.get(d.ip)
        # A host entry may name the BMC (`PATCHED`).
        if first is None or d.kind in ALONE or d.kind == "host":
            continue
        yield Problem(
            f"iluvatar:{d.path}",
            f"{_written(d)} is {first.owner}, and a BMC is an appliance whose address is its own (it powers and reflashes "
            f"its board's machines and serves nothing else), so {CLIENTS[d.kind]}; write {NOUNS[d.kind]}'s own "
            f"address in {d.path}, or, if the BMC has another, {_move_bmc(first)}",
        )


def _move_bmc(bmc: Held, address: str = "it") -> str:
    """The way to give a BMC another address: every key that writes it (its board's machines, `Held.also`), and its
    password's key (stacks.power reads one password per BMC address), moved together: short of one, the stack is
    refused again at the key left behind."""
    keys = [bmc.path, *bmc.also]
    listed = keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} and {keys[-1]}"
    return (
        f"write {address} in {listed}, and move the BMC's password to it (`pulumi config rm --path '{password_path(bmc.ip)}'`, "
        f"then {set_password('<its address>')})"
    )


def routers(network: Network) -> list[tuple[str, IPv4Address]]:
    """The router's addresses with their keys: network.gateway, then each VLAN's gateway."""
    return [
        ("network.gateway", network.gateway),
        *((f"network.vlans[{j}].gateway", v.gateway) for j, v in enumerate(network.vlans) if v.gateway is not None),
    ]


def hostless(network: Network, route: IPv4Network) -> bool:
    """Whether `route` is the network or broadcast address of network.lan or a VLAN alone, which a route may not be
    (`host_edges`): a /31 or /32 network has neither (RFC 3021). The routes a message offers leave such a /32 out."""
    subnets = network.subnets()
    return route.prefixlen == 32 and any(n.prefixlen < 31 and route.network_address in (n.network_address, n.broadcast_address) for n in subnets)


def router_key(network: Network, ip: IPv4Address) -> str | None:
    """The key of the router whose address `ip` is: network.gateway, or a VLAN's gateway; None for none."""
    return next((k for k, gateway in routers(network) if gateway == ip), None)


def _bmc_at_a_router(devices: Sequence[Held], network: Network) -> Iterator[Problem]:
    """A BMC at the address of the LAN's router (network.gateway) or of a VLAN's: the router answers there, never the
    board's BMC, so `up` logs in to the router, with the BMC's password."""
    for d in devices:
        if d.kind != "bmc":
            continue
        key = router_key(network, d.ip)
        if key is not None:
            fix = _move_bmc(d, "the BMC's own address")
            yield Problem(
                f"iluvatar:{d.path}",
                f"{d.ip} is {key}, the router's, and a BMC is an appliance of its own on the board it powers, so {CLIENTS['bmc']} "
                f"(and its password would go to the router); {fix}",
            )


def _bmc_off_the_networks(devices: Sequence[Held], network: Network) -> Iterator[Problem]:
    """A BMC on none of the stack's networks (network.lan, the VLANs): `up` logs in to it from the machine it runs on,
    with its password, over HTTPS whose certificate iluvatar.power does not check (the BMC's firmware makes its own), which
    is right on the LAN the homelab trusts (docs/layers/arda.md) and nowhere else; and the board's machines it powers are
    on the LAN or a VLAN with it. A public address (`is_global`) sends the password across the internet, said as such."""
    subnets = [("network.lan", network.lan), *((f"network.vlans[{j}].cidr", v.cidr) for j, v in enumerate(network.vlans))]
    listed = ", ".join(f"{key} {net}" for key, net in subnets)
    fix = "the BMC's address on the LAN or a VLAN" if network.vlans else "the BMC's address on the LAN"
    for d in devices:
        if d.kind != "bmc" or any(d.ip in net for _, net in subnets):
            continue
        certificate = "over HTTPS whose certificate it does not check (the BMC's firmware makes its own)"
        if d.ip.is_global:
            why = (
                f"{d.ip} is a public address, on none of the stack's networks ({listed}): `up` would send the BMC's password "
                f"across the internet, {certificate}, to whoever answers there"
            )
        else:
            why = (
                f"{d.ip} is on none of the stack's networks ({listed}): a BMC is on its board's network with the machines it "
                f"powers, and `up` logs in to it with its password {certificate}, which only the LAN and its VLANs are trusted for"
            )
        yield Problem(f"iluvatar:{d.path}", f"{why}; {_move_bmc(d, fix)}")


def _or_move(d: Held, h: Held) -> str:
    """The second way out of a server at a VIP's or the front door's address: the server may really have it, and then
    the VIP is the one to move. Not for a server written as a zone name: the name is that VIP's own record and follows
    it wherever it goes, so only the server's own name or address helps."""
    return "" if d.name else f", or, if it does have {d.ip}, give {h.path} a free one"


def host_edges(held: Sequence[Held], network: Network | None) -> Iterator[Problem]:
    """A device of the table (`held` with its routed devices: stacks.load's `registered`) written as an address that is
    the network or the broadcast address of network.lan or of the VLAN holding it: no host has it, so no server answers
    there, and what the stack points at it (the backups, the mounts, the forwarding, the power control, a route) reaches
    no device. The machines and the VIPs
    are checked against the same edges where each is placed (stacks.rules._address_in_lan, _vlan_node). network.dns is
    read whole here, the routers' addresses the table leaves out too (`entries`). A
    zone name stands for a machine's or a VIP's address, which their own rules place."""
    if network is None:
        return
    subnets = [("network.lan", network.lan), *((f"network.vlans[{j}].cidr", v.cidr) for j, v in enumerate(network.vlans))]
    # A /31 or /32 has no network or broadcast address (RFC 3021): both of its addresses are hosts'.
    edged = [(path, net) for path, net in subnets if net.prefixlen < 31]
    dns = [Held(ip, f"network.dns[{k}]", f"network.dns[{k}]", "dns") for k, ip in enumerate(network.dns)]
    for d in [*(h for h in held if h.kind in DEVICES and h.kind != "dns" and not h.name), *dns, *(h for h in held if h.kind == "route")]:
        for path, net in edged:
            if d.ip not in (net.network_address, net.broadcast_address):
                continue
            edge = "network" if d.ip == net.network_address else "broadcast"
            if d.kind == "route":
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{d.ip}/32 is the {edge} address of {path} {net}, which no host can have, so the tailnet would reach no "
                    "device there; route the device's own host address",
                )
            else:
                fix = _router_fix(network) if d.kind == "router" else f"write {NOUNS[d.kind]}'s own host address"
                yield Problem(
                    f"iluvatar:{d.path}",
                    f"{_written(d)} is the {edge} address of {path} {net}, which no host can have, so {CLIENTS[d.kind]}; {fix}",
                )
            break


def _written(d: Held) -> str:
    """A device's address as its key holds it: the backup target's URL with its server, else the address."""
    if d.kind == "nas":
        return f"{d.owner.removesuffix(')').rsplit(', ', 1)[1]}: its server {d.ip}"
    if d.name:
        return f"{d.written}: its server {d.name}"
    if d.written and d.written != str(d.ip):
        return f"{d.written}: its server {d.ip}"
    return str(d.ip)


def cluster_name(host: str) -> bool:
    """A name only a cluster's own DNS answers: `<service>.<namespace>.svc`, or any name under cluster.local. A name
    merely holding a `svc` label (hc.svc.example.org) is not one: every search expansion of it misses."""
    labels = host.split(".")
    return host.endswith(".cluster.local") or (len(labels) == 3 and labels[2] == "svc")


def kubernetes_names_off_arda(named: Sequence[Server], apps: Sequence[App], ainur: bool) -> Iterator[Problem]:
    """A server whose client runs on the Ainur (Dex for the LDAP directory; the Git mirror cloning repoUrl; the Pi image
    builder downloading ainur.piImage.url) written as a Kubernetes name: `<service>.<namespace>` of an app of Arda's,
    `….svc`, or a name under cluster.local. The Ainur's pods ask their own cluster's DNS first (k3s's CoreDNS answers the
    Ainur's Services alone), then the LAN's, so an Arda Service's name resolves to nothing there."""
    where = {"ldap": "Dex, on the Ainur,", "image": "the Pi image builder, on the Ainur,"} | (
        {"git": "the Git mirror, on the Ainur,"} if ainur else {}
    )
    services = {f"{a.service_name}.{a.category}": a for a in apps}
    for s in named:
        client = where.get(s.kind)
        host = s.host.rstrip(".").lower()
        if client is None or s.address is not None:
            continue
        if not (host in services or cluster_name(host)):
            continue
        yield Problem(
            f"iluvatar:{s.path}",
            f"{s.written}: {host} is a Kubernetes Service name, which {client} resolves through the Ainur's own cluster DNS: "
            f"it has none of Arda's Services, so {CLIENTS[s.kind]}; write {NOUNS[s.kind]}'s LAN address or a name of the LAN"
            # A directory may be served on Arda (stacks.warn warns of it); the Git server and the image may not
            # (stacks.gitops, `image_server`), so an app's host is no fix for them.
            + (" (an app's host, for a directory served on Arda)" if s.kind == "ldap" else ""),
        )


# Who downloads ainur.piImage.url: netboot-cache's pi-image step, a pod (not on the host's network) on each card Pi.
IMAGE_CLIENTS = Clients(
    "the Pi image builder on the card Pis",
    "so the netbooting Pis' image would never be built and `up` would stop at netboot-cache",
    "write the image server's LAN address or public name (the default url is cdimage.ubuntu.com's)",
)


def image_server(
    named: Sequence[Server],
    apps: Sequence[tuple[int, App]],
    network: Network | None,
    nodes: Sequence[tuple[int, Node]],
    arda: Arda | None,
) -> Iterator[Problem]:
    """The Pi image's server (`servers`, kind `image`) where the image builder cannot reach it, as stacks.gitops says of
    repoUrl: loopback, link-local or the tailnet's (stacks.reach.unreachable); or on Arda (stacks.data.on_arda: an app's
    host, a Service of the load-balancer pool, an Arda machine, Arda's VIP), which the table's own rule leaves to this one
    (`check`); or a Pi that netboots itself. The card Pis build the image in netboot-cache, which `up` waits on before the netbooting Pis join and
    Arda's netbooting machines install (docs/layers/ainur.md, "Pis with no card"), so a server on Arda is not there when
    the image is first needed, nor after a disaster that takes Arda down."""
    for s in named:
        if s.kind != "image":
            continue
        if (why := unreachable(s.host, IMAGE_CLIENTS)) is not None:
            yield Problem(f"iluvatar:{s.path}", f"{s.written}: {why}")
            continue
        # A Pi that netboots has no root until the card Pis have built its image (plans.netboot.pi_pods: netboot-cache's
        # pi-image step, which the netbooting Pis' boot waits on), so it can serve nothing then: the image never comes.
        pi = next(((i, n) for i, n in nodes if n.boot == "netboot" and n.role in AINUR_ROLES and s.address == n.ip), None)
        if pi is not None:
            i, n = pi
            yield Problem(
                f"iluvatar:{s.path}",
                f"{s.written}: the server {s.shown} is nodes[{i}] ({n.name}), a Pi that netboots from this very image: it has no "
                "root until the card Pis have built the image from this url, so it serves nothing then, the image is never "
                "built and `up` would stop at netboot-cache with no Pi netbooted; keep it on cdimage.ubuntu.com (the default url), "
                "a card Pi or a server of the LAN",
            )
            continue
        name = s.name or s.host.rstrip(".").lower()
        # An app's host is named as the app (its gateway's address in the pool says no more).
        app_host = any(a.host == name for _, a in apps)
        for what in on_arda(name, None if app_host else s.address, s.shown, apps, network, nodes, arda):
            yield Problem(
                f"iluvatar:{s.path}",
                f"{s.written}: {what}: the card Pis download the netbooting Pis' image before those Pis or Arda's netbooting "
                "machines can boot, so on bring-up nothing on Arda serves it yet and `up` would stop at netboot-cache; keep it on "
                "cdimage.ubuntu.com (the default url) or a server off Arda",
            )


# Who resolves a server that network.dns alone answers for, and how it gets there (`through_network_dns`).
_RESOLVED_BY: dict[Kind, str] = {
    "image": "the Pi image builder (a pod on the card Pis) asks k3s's CoreDNS, which forwards it to the Pis' resolver, network.dns",
    "git": "whoever clones it (the Git mirror on the Ainur, Argo CD) asks its cluster's CoreDNS, which forwards it to the machines' "
    "resolver, network.dns",
}

_ASKING: dict[Kind, str] = {"image": "the Pi image builder's resolvers", "git": "the resolvers of Argo CD and the Git mirror"}


def through_network_dns(s: Server, ainur: bool) -> bool:
    """Whether `s`'s clients resolve it through network.dns alone: the Pi image builder, a pod of k3s on the card Pis,
    and, with the Ainur, whoever clones repoUrl (the Git mirror, a pod of k3s, or Argo CD in either cluster). k3s's
    CoreDNS forwards what is not the cluster's to the node's resolv.conf, and the Pis' netplan sets network.dns
    (plans.cloudinit network_config_document), as Talos's ResolverConfig does on Arda (plans.talos). network.dns is the
    Ainur's dnsmasq's upstream, never the other way, so it never holds the internal zone (docs/layers/ainur.md, "DNS").
    Without the Ainur the router forwards the zone to the LAN resolver (plans.resolver), so a name of it resolves."""
    return s.kind == "image" or (s.kind == "git" and ainur)


def unresolved_names(named: Sequence[Server], network: Network | None, ainur: bool, refused: Collection[str]) -> Iterator[Problem]:
    """A server whose clients resolve through network.dns alone (`through_network_dns`), written as a name of the
    internal zone, which network.dns never holds, or, for the image and the Git server, as a multicast DNS (.local) name,
    which no resolver of theirs asks. Not said again of a server already refused (`refused`, its keys)."""
    if network is None:
        return
    domain = network.domain.lower()
    for s in named:
        if s.kind not in _RESOLVED_BY or f"iluvatar:{s.path}" in refused:
            continue
        host = s.host.rstrip(".").lower()
        # A single label is searched under the zone, then asked as written (a k3s node's name is in CoreDNS's NodeHosts;
        # a router answers its DHCP host names): stacks.warn warns of it.
        under_zone = "." in host and private_tld(host, domain) == domain
        if not under_zone and (mdns := multicast_name(host, _ASKING[s.kind], "CoreDNS and network.dns")):
            yield Problem(f"iluvatar:{s.path}", f"{s.written}: {mdns}, so {CLIENTS[s.kind]}; write {NOUNS[s.kind]}'s LAN IPv4 address")
            continue
        if not under_zone or not through_network_dns(s, ainur):
            continue
        fix = f"write its address, {s.address}" if s.address is not None else f"write {NOUNS[s.kind]}'s LAN IPv4 address"
        yield Problem(
            f"iluvatar:{s.path}",
            f"{s.written}: the server {s.shown} is a name of the internal zone {network.domain}, which only the Ainur's dnsmasq "
            f"answers: {_RESOLVED_BY[s.kind]}, and network.dns never holds the zone (it is the dnsmasq's upstream, not the "
            f"other way), so {CLIENTS[s.kind]}; {fix}",
        )


def unknown_names(named: Sequence[Server], network: Network | None, created: Collection[str], ainur: bool = False) -> Iterator[Problem]:
    """A server written as a name of the internal zone that the plan never creates (`created`: its machines, VIPs, apps'
    hosts and the program's own names). The Ainur's dnsmasq answers the zone only from the plan's records
    (local=/<domain>/, plans.netboot.dnsmasq), and Arda's pods ask it through CoreDNS, so such a name resolves nowhere,
    as the backup target's is refused by stacks.data."""
    if network is None:
        return
    domain = network.domain.lower()
    known = {c.rstrip(".").lower() for c in created}
    for s in named:
        name = s.host.rstrip(".").lower()
        if s.address is None and (numbers := numeric_host(s.host, curl=s.kind == "image")) is not None:
            yield Problem(f"iluvatar:{s.path}", f"{s.written}: {numbers}")
            continue
        if ":" in name and s.address is None:
            # An IPv6 literal (urlsplit and the bracket-stripping above leave it bare): the clients run in pods of the
            # clusters, which have IPv4 alone (Cilium's chart at 1.18.4, values.yaml:2076-2078 `ipv6: enabled: false`,
            # which plans.cilium leaves; k3s's default cluster-cidr is 10.42.0.0/16 alone), so no pod has a route to it.
            yield Problem(
                f"iluvatar:{s.path}",
                f"{s.written}: {s.host} is an IPv6 address, and the clusters' pods have IPv4 alone, so {CLIENTS[s.kind]}; write "
                f"{NOUNS[s.kind]}'s IPv4 address, or a name that resolves to one",
            )
            continue
        if s.name or not name or private_tld(name, domain) != domain or name in known:
            continue
        if "." in name and through_network_dns(s, ainur):
            continue  # `unresolved_names` refuses every name of the zone for it
        try:
            IPv4Address(name)
        except ValueError:
            yield Problem(
                f"iluvatar:{s.path}",
                f"{s.written}: the server {s.host} is not a name in the internal zone {network.domain}: the plan resolves there only "
                f"its machines, VIPs and apps' hosts, and answers the zone from those alone, so "
                f"{CLIENTS[s.kind]}; write {NOUNS[s.kind]}'s LAN IPv4 address, or a name outside the zone that the LAN's resolver answers",
            )


# The port each kind of server is reached on when its value names none: a URL's scheme's, SSH's for repoUrl. Alertmanager's
# smarthost and Dex's LDAP host are written host:port.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22}


def server_port(s: Server) -> int | None:
    """The port the server's client connects to, as its value is written (None when it names none and has no default)."""
    try:
        if s.kind == "git":
            repo = parse_repo_url(s.written)
            return repo.port or _DEFAULT_PORTS[repo.scheme]
        if "://" in s.written:
            parts = urlsplit(s.written)
            return parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        port = s.written.rsplit(":", 1)[1] if ":" in s.written.rsplit("]", 1)[-1] else ""
        return int(port) if port.isdigit() else None
    except ValueError:
        return None  # a malformed value: its own key's rule says so


def server_names(named: Sequence[Server], backup: Backup | None) -> list[tuple[str, str]]:
    """The other layers' servers written as a name, each with its key (`iluvatar:`-less): `named` (the sign-in
    directory, the alert receiver, the heartbeat, the Git server) and the backup target's server."""
    out = [(s.path, s.host.rstrip(".").lower()) for s in named if s.host]
    found = parse_target(backup.target) if backup is not None else None
    if found is not None and not isinstance(found, str):
        host = found.host.rpartition(":")[0] if found.kind == "s3" and ":" in found.host else found.host
        out.append(("backup.target", host.rstrip(".").lower()))
    return [(path, host) for path, host in out if host and not _is_ip(host)]


def _is_ip(host: str) -> bool:
    try:
        IPv4Address(host)
    except ValueError:
        try:
            IPv6Address(host.strip("[]"))
        except ValueError:
            return False
    return True


def at_headscales_name(named: Sequence[Server], remote: RemoteAccess | None) -> Iterator[Problem]:
    """A server written as Headscale's public name (remoteAccess.headscale.url's host) on the port the router forwards to
    Headscale. The name is the home's public address in public DNS, and the port forward the setup asks for (TCP 443,
    docs/remote-access.md "The port forward"; a URL naming another port is refused by stacks.remote_access) sends it to
    remoteAccess.headscale.ip, Headscale's Service on the Ainur, the LAN's own connections too where the router loops them
    back (and nothing answers where it does not): Headscale answers there, as at its address, and the server does not.
    Any other port of the name is the router's own, or a forward of the user's to another box. (A server at or under
    remoteAccess.headscale.baseDomain is that key's slip: stacks.remote_access says it there.)"""
    if remote is None or remote.flavour != "headscale" or remote.headscale is None:
        return
    headscale = urlsplit(remote.headscale.url)
    name = (headscale.hostname or "").rstrip(".").lower()
    forwarded = headscale.port or 443
    for s in named:
        if s.host.rstrip(".").lower() != name or server_port(s) != forwarded:
            continue
        yield Problem(
            f"iluvatar:{s.path}",
            f"{s.written}: its server {name} is Headscale's public name (remoteAccess.headscale.url {remote.headscale.url}), and "
            f"its port {forwarded} is the router's forward to remoteAccess.headscale.ip {remote.headscale.ip}, where Headscale "
            f"answers, not {NOUNS[s.kind]}, so {CLIENTS[s.kind]}; write {NOUNS[s.kind]}'s own address or name in {s.path}",
        )


def backup_at_headscales_name(backup: Backup | None, remote: RemoteAccess | None) -> Iterator[Problem]:
    """backup.target's server written as Headscale's public name, on any port. Headscale runs on the Ainur
    (remoteAccess.headscale.ip, on the LAN), so its public name is the home's own public address: on the port the
    router forwards to Headscale, Headscale answers (as at_headscales_name says for the other layers' servers); on
    another, the uploads leave for the router's public side and come back only through a forward the stack does not set
    and the router looping the LAN's own connections back (hairpin NAT, which many routers do not do), every backup and
    restore through the router. Unlike an alert receiver or a Git server, which may be a forward of the user's to
    another box, a backup server at the home's public address is a box on the LAN, reached directly at its own. A
    server at or under remoteAccess.headscale.baseDomain is said as at_headscales_name says."""
    if backup is None or remote is None or remote.flavour != "headscale" or remote.headscale is None:
        return
    found = parse_target(backup.target)
    if isinstance(found, str):
        return  # the target's own problem is said
    headscale = urlsplit(remote.headscale.url)
    name = (headscale.hostname or "").rstrip(".").lower()
    host, _, port_text = found.host.rpartition(":") if found.kind == "s3" and ":" in found.host else (found.host, "", "")
    if host.rstrip(".").lower() != name:
        return
    forwarded = headscale.port or 443
    port = int(port_text) if port_text.isdigit() else {"nfs": 2049}.get(found.kind, 443 if found.secure else 80)
    where = (
        f"its port {port} is the router's forward to remoteAccess.headscale.ip {remote.headscale.ip}, where Headscale answers, not the NAS"
        if port == forwarded
        else f"port {port} of it reaches the NAS only through a port forward the stack does not set and the router looping the LAN's "
        "own connections back (hairpin NAT, which many routers do not do), every backup and restore through the router"
    )
    yield Problem(
        "iluvatar:backup.target",
        f"{backup.target}: its server {name} is Headscale's public name (remoteAccess.headscale.url {remote.headscale.url}), "
        f"the home's public address: {where}; write the NAS's own LAN {'IPv4 address' if found.kind == 'nfs' else 'address or name'}",
    )


# The homelab's own addresses: a device inside the router's old pool may still hold one of them.
OWN: frozenset[Kind] = frozenset({"node", "vip", "identity", "headscale", "app"})
# How many of the keys inside the router's old pool a message names before "and N more".
NAMED_INSIDE = 3
# A router pool this small is seldom a router's DHCP pool (a reservation, or one address copied for the range).
FEW = 2


def router_pool(held: Sequence[Held], ainur: Ainur | None, network: Network | None, routes: Sequence[Held] = ()) -> Iterator[Problem]:
    """In dhcp mode, an address of the homelab's own inside `ainur.netboot.routerPool`: the household's devices keep
    the addresses the router lent them until their leases end, so a machine's reservation or a VIP kube-vip announces
    there could be a phone's address (two hosts answering ARP for it: the port forward and the LAN reach either). And a
    LAN device the stack names (a DNS server, the NAS, a BMC) there: its address was a lease that ends.

    One key inside is said at that key, with its own fix. Two or more are one problem at routerPool: a pool holding
    several of the stack's addresses is as likely a routerPool written wrong (not the router's pool, one address of
    it, the LAN's whole span) as a stack numbered inside the router's pool, and one line per address (fifteen for the
    shipped homelab's nodes and VIPs) buries the one key to check first."""
    if ainur is None or ainur.netboot.mode != "dhcp" or not isinstance(ainur.netboot.router_pool, AddressRange):
        return
    pool = ainur.netboot.router_pool
    if network is not None and pool.overlaps(network.dhcp_range):
        return  # the pool against the range the Ainur lend is said first (stacks.netboot_mode): fixing it moves one of them
    few = f"a pool of {pool.size()} address{'' if pool.size() == 1 else 'es'}, seldom a router's" if pool.size() <= FEW else ""
    lb = network.load_balancer_pool if network is not None else None
    each: list[Problem] = []
    inside: list[tuple[int, str]] = []  # (first address, "key address") for each key inside the pool
    if lb is not None and lb.overlaps(pool):
        each.append(
            Problem(
                "iluvatar:network.loadBalancerPool",
                f"{lb} overlaps ainur.netboot.routerPool {pool}, the pool the router lent: a household device may still hold one "
                "of its addresses until its lease ends, and Cilium would announce it for a Service; move the pool outside the router's",
            )
        )
        inside.append((int(max(lb.start, pool.start)), f"network.loadBalancerPool {lb}"))
    # One address, one device, one lease: with the routes to it (stacks.remote_access.lent_routes leaves those to this).
    pooled = with_routes(in_router_pool(held, ainur, network), routes)
    for h in held:
        if lb is not None and lb.overlaps(pool) and h.ip in lb:
            continue  # said once, by the pool's problem
        others = [o.path for o in pooled.get(h.ip, [])[1:]]
        # The router's DHCP server lent that pool: its own address is no lease of it (network.gateway is not checked there
        # either), nor of the other keys that write it, which name the same device (`in_router_pool`).
        if h.kind in DEVICES and h.ip != ainur.netboot.router_address and h.ip in pool and others:
            # One address, one device, one lease: said once, at the first key that names it, with the others.
            if pooled[h.ip][0] == h:
                each.append(
                    Problem(
                        f"iluvatar:{h.path}",
                        f"{_written(h)} is inside ainur.netboot.routerPool {pool}, the pool the router "
                        f"lent before ainur.netboot.mode dhcp turned its DHCP off, and {and_list(others)} name{'s' if len(others) == 1 else ''} "
                        "the same device: it holds the address only until its lease ends, then the Ainur lend it another; give the device a "
                        f"fixed address outside the router's pool and network.dhcpRange, and {_write_it(pooled[h.ip])}",
                    )
                )
                inside.append((int(h.ip), f"{h.path} {h.ip}"))
        elif h.kind in DEVICES and h.ip != ainur.netboot.router_address and h.ip in pool:
            # The router no longer lends in dhcp mode: a device the stack names keeps the address it was lent only until
            # its lease ends, then the Ainur lend it one of network.dhcpRange, and the forwarding, the NFS mounts, the
            # backups or the power control the stack pointed at it reach nothing (or another device).
            each.append(
                Problem(
                    f"iluvatar:{h.path}",
                    f"{_written(h) if h.kind in SERVERS else h.ip} is inside ainur.netboot.routerPool {pool}, the pool the router lent "
                    "before ainur.netboot.mode dhcp "
                    f"turned its DHCP off: {h.owner} holds it only until its lease ends, then the Ainur lend it another; give the "
                    "device a fixed address outside the router's pool and network.dhcpRange, and write that",
                )
            )
            inside.append((int(h.ip), f"{h.path} {h.ip}"))
        if h.kind in OWN and h.ip in pool:
            each.append(
                Problem(
                    f"iluvatar:{h.path}",
                    f"{h.ip} is inside ainur.netboot.routerPool {pool}, the pool the router lent: a household device may still hold "
                    f"it until its lease ends, and {h.owner} would then share its address; give it a free address outside the router's pool",
                )
            )
            inside.append((int(h.ip), f"{h.path} {h.ip}"))
    if len(inside) < 2:
        for problem in each:
            # One key inside a pool this small: the key, or the pool, may be the slip.
            check = f"; or, if routerPool {pool} ({few}) is not the router's pool, copy start and end from its DHCP settings"
            yield Problem(problem.path, problem.message + check) if few else problem
        return
    named = [key for _, key in sorted(inside)]
    shown = ", ".join(named[:NAMED_INSIDE]) + (f" and {len(named) - NAMED_INSIDE} more" if len(named) > NAMED_INSIDE else "")
    yield Problem(
        f"iluvatar:{ROUTER_POOL}",
        f"{pool}{f', {few},' if few else ''} holds the addresses of {len(named)} of this stack's keys ({shown}): it is the pool the router lent before "
        "ainur.netboot.mode dhcp turned its DHCP off, and a household device may hold any address of it until its lease ends, "
        "so each could be a phone's as well. If it is not the router's pool, copy start and end from the router's DHCP "
        f"settings, or write routerPool: none if no DHCP server but the Ainur ever lent on this LAN or the router's DHCP has "
        "been off for longer than its lease time; if it is, give each of them an address outside it and network.dhcpRange "
        "(docs/layers/netboot.md#changing-the-dhcp-mode)",
    )


# Who lends a range (`Lent.lender`): "ainur", the Ainur's dnsmasq (dhcp mode: its `dhcp-range` lines,
# plans.netboot.dnsmasq); "router", the router's DHCP (proxy mode, or no Ainur), which may hold a reservation inside its
# range the stack cannot see; "held", the router's old pool in dhcp mode: its DHCP is off, and the household's devices
# hold the addresses it lent them until their leases end, then the Ainur lend them others.
Lender = Literal["ainur", "router", "held"]
DHCP_RANGE = "network.dhcpRange"
DISCOVERY_POOL = "arda.discovery.pool"
ROUTER_POOL = "ainur.netboot.routerPool"


@dataclass(frozen=True)
class Lent:
    """A range of the LAN's addresses that DHCP lends to devices, by the config key that says it."""

    key: str
    range: AddressRange
    lender: Lender


def lent_ranges(network: Network | None, ainur: Ainur | None, discovery_pool: AddressRange | None) -> list[Lent]:
    """Every range lent on the LAN, the one list each rule about lent addresses reads: network.dhcpRange (the Ainur lend
    it in dhcp mode, the router in proxy mode or without the Ainur), the discovery pool (the Ainur lend it to machines
    waiting to be read; refused in proxy mode, stacks.discovery), and ainur.netboot.routerPool (the router's old pool,
    held until its leases end, in dhcp mode; in proxy mode the pool the router lends, said on a move from dhcp)."""
    dhcp = ainur is not None and ainur.netboot.mode == "dhcp"
    out: list[Lent] = []
    if network is not None:
        out.append(Lent(DHCP_RANGE, network.dhcp_range, "ainur" if dhcp else "router"))
    if discovery_pool is not None:
        out.append(Lent(DISCOVERY_POOL, discovery_pool, "ainur"))
    if ainur is not None and isinstance(ainur.netboot.router_pool, AddressRange):
        out.append(Lent(ROUTER_POOL, ainur.netboot.router_pool, "held" if dhcp else "router"))
    return out


def route_ranges(network: Network | None, ainur: Ainur | None, discovery_pool: AddressRange | None) -> list[Lent]:
    """The lent ranges a remote-access route is checked against (stacks.remote_access.lent_routes, stacks.warn
    ._routes_into_lent): every one, routerPool in proxy mode among them, as the router lends it after a move from dhcp
    (docs/layers/netboot.md#changing-the-dhcp-mode) whatever network.dhcpRange still says."""
    return lent_ranges(network, ainur, discovery_pool)


@dataclass(frozen=True)
class Reached:
    """A lent range a route reaches (`lent_reached`): the part of it the route holds, first..last, and how."""

    lent: Lent
    first: IPv4Address
    last: IPv4Address

    @property
    def whole(self) -> bool:
        """Whether the route holds the whole range."""
        return self.first == self.lent.range.start and self.last == self.lent.range.end

    @property
    def shown(self) -> str:
        return f"{self.lent.key} {self.lent.range}"


def lent_reached(route: IPv4Network, lent: Sequence[Lent]) -> tuple[list[Reached], bool]:
    """The lent ranges `route` reaches, in address order, and whether they hold every address of it: a route wholly lent,
    inside one range or across ranges that meet (network.dhcpRange and the discovery pool laid end to end), reaches only
    devices that are lent their addresses."""
    first, last = route.network_address, route.broadcast_address
    reached = sorted(
        (Reached(r, max(first, r.range.start), min(last, r.range.end)) for r in lent if r.range.start <= last and first <= r.range.end),
        key=lambda r: (r.first, r.last),
    )
    covered = int(first) - 1
    for r in reached:
        if int(r.first) > covered + 1:
            break
        covered = max(covered, int(r.last))
    return reached, covered >= int(last)


def and_list(items: Sequence[str]) -> str:
    """`a, b and c`, as a message lists things."""
    return f"{', '.join(items[:-1])} and {items[-1]}" if len(items) > 1 else items[0]
