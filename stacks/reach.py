"""The addresses nothing in the house can reach from the LAN side: one rule for every server the stack names.

The stack names servers its machines and pods dial from the LAN: the resolvers (`network.dns`, which the Pis' netplan,
Talos's resolvers and the Ainur's forwarder use), the alert receiver, the GitOps repository and its mirror, the backup
target, the NFS class's server. Some addresses name no such server, whoever writes them:

- loopback (127.0.0.0/8, ::1, `localhost`) and the unspecified address: each client dials its own host or pod;
- link-local (169.254.0.0/16, fe80::/10): no router forwards it, so it is reached only on the client's own link;
- the tailnet's 100.64.0.0/10: the subnet router advertises the LAN into the tailnet, never the way back, so a client
  on the LAN sends it to the LAN's gateway, which has no route into the tailnet (Tailscale's MagicDNS resolver,
  100.100.100.100, answers only on a host that runs tailscaled: no Pi nor Talos machine does);
- a Kubernetes Service name (`*.svc`, `*.cluster.local`): only pods resolve it through their cluster's DNS; a client
  outside the cluster (k3s on the Pis, the Pis' resolvers) asks `network.dns`, where it does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

# The addresses a tailnet gives its devices (Tailscale's CGNAT range, tsaddr.CGNATRange in tailscale.com
# net/tsaddr/tsaddr.go at v1.102.3; Headscale's default prefixes.v4, config-example.yaml at v0.27.1), which
# also holds the devices' own resolver, 100.100.100.100.
TAILNET_RANGE = IPv4Network("100.64.0.0/10")
LINK_LOCAL = IPv4Network("169.254.0.0/16")
LINK_LOCAL_V6 = IPv6Network("fe80::/10")
# Tailscale's in-process resolver (tsaddr.TailscaleServiceIP in tailscale.com/net/tsaddr).
MAGIC_DNS = ip_address("100.100.100.100")


@dataclass(frozen=True)
class Clients:
    """Who dials a server, as a message names them, and what fails when they cannot."""

    clients: str  # "Arda's nodes": "traffic from Arda's nodes to it goes through the LAN's gateway"
    harm: str  # "so no volume would mount"
    fix: str  # "give the NAS's LAN address"
    # Why a Kubernetes Service name cannot be this server (a client outside the cluster resolves it through
    # network.dns), or None when every client is a pod, which resolves it.
    service_name: str | None = None


def unreachable(host: str, who: Clients, shown: str | None = None, local: Sequence[IPv4Network] = ()) -> str | None:
    """Why `who` cannot reach the server `host` (an address or a name, no port) from the LAN side, or None.

    `shown` is the server as the message names it (default: `host`). `local`: the homelab's own networks (network.lan,
    the VLANs), which the clients reach directly or through the LAN's gateway; an address inside one is a device of the
    LAN's, whatever range it is in (a LAN numbered inside the tailnet's range is said once, at network.lan, by
    stacks.remote_access)."""
    shown = shown or host
    name = host.strip("[]").rstrip(".").lower()
    try:
        ip = ip_address(name)
    except ValueError:
        ip = None
    if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:
        # An IPv4-mapped literal (::ffff:a.b.c.d) is dialled as that IPv4 address: Go's TCPAddr.family() is AF_INET when
        # IP.To4() is not nil (go src/net/tcpsock_posix.go, family), and Python's ip_address() keeps it IPv6, whose
        # is_loopback is False for ::ffff:127.0.0.1 (3.11).
        ip = ip.ipv4_mapped
    if name == "localhost" or name.endswith(".localhost") or (ip is not None and (ip.is_loopback or ip.is_unspecified)):
        return f"{shown} is loopback: to {who.clients} it names each one's own host or pod, not a server of the LAN, {who.harm}; {who.fix}"
    if ip is not None and (ip in LINK_LOCAL if ip.version == 4 else ip in LINK_LOCAL_V6):
        return f"{shown} is link-local ({LINK_LOCAL}, fe80::/10), which no router forwards: it is not on the link of {who.clients}, {who.harm}; {who.fix}"
    if ip is not None and ip.version == 4 and ip in TAILNET_RANGE and not any(ip in n for n in local):
        magic = " (Tailscale's MagicDNS resolver, which answers only on a host running tailscaled)" if ip == MAGIC_DNS else ""
        return (
            f"{shown} is inside {TAILNET_RANGE}, the addresses a tailnet gives its devices{magic}: traffic from {who.clients} to it goes "
            f"through the LAN's gateway, which has no route into the tailnet, {who.harm}; {who.fix}"
        )
    if ip is None and who.service_name is not None and (name.endswith((".svc", ".cluster.local")) or ".svc." in name):
        return f"{shown} is a Kubernetes Service name, which only a cluster's pods resolve: {who.service_name}, {who.harm}; {who.fix}"
    return None


def multicast_name(host: str, resolvers: str, answering: str) -> str | None:
    """Why a server written as a multicast DNS name (RFC 6762's `.local`, a NAS's Bonjour name) is reached by none of
    `resolvers` (who asks the name), or None: each of `answering` is a unicast DNS resolver, and a `.local` name is
    answered by multicast DNS alone, on the link."""
    name = host.rstrip(".").lower()
    if name != "local" and not name.endswith(".local"):
        return None
    return f"the server {host} is a multicast DNS (.local) name, which none of {resolvers} asks ({answering} answer unicast DNS only)"


def private_tld(name: str, domain: str | None = None) -> str | None:
    """The private-use suffix `name` ends in (`.internal`, `.lan`, `.home.arpa`, `.local`, ...), or None when it may be
    public. `domain` is network.domain, the internal zone, which no public resolver answers either."""
    name = name.rstrip(".").lower()
    if domain is not None and (name == domain.lower() or name.endswith("." + domain.lower())):
        return domain.lower()
    for suffix in PRIVATE_SUFFIXES:
        if name.endswith("." + suffix) or name == suffix:
            return suffix
    if "." not in name:
        return name
    return None


# Names no public resolver answers and no public CA certifies: ICANN's private-use .internal, RFC 8375's home.arpa,
# RFC 6762's .local (mDNS), RFC 6761's .test/.localhost/.invalid/.example, RFC 7686's .onion (Tor's), and the unofficial
# .lan, .home, .corp and .localdomain routers hand out.
PRIVATE_SUFFIXES = ("home.arpa", "internal", "local", "lan", "home", "corp", "localdomain", "test", "localhost", "invalid", "example", "onion")
