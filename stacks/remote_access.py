"""Remote access config (`iluvatar:remoteAccess`): its flavour's needs, what it advertises, who reaches what.

The model is `stacks.remote_model.RemoteAccess`; this module holds its rules, each naming its config path. The
subnet router advertises exactly envoy-internal's address and the VIPs people use (plans.remote_access), plus
`routes` the user asks for, which must be the homelab's own networks. The tailnet gives every device an address in
100.64.0.0/10, so a LAN there would be shadowed. Who may reach what is said by the identity layer's groups, so a
group it does not know is refused, as is a flavour without what it needs (the OAuth client's secret, Headscale's URL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, summarize_address_range
from types import MappingProxyType
from urllib.parse import urlsplit

from stacks.addresses import DISCOVERY_POOL, ROUTER_POOL, ClustersOwn, Lent, hostless, lent_reached, routers
from stacks.apps import under
from stacks.errors import Problem, UnsetSecret, show
from stacks.model import AddressRange, App, Identity, Network
from stacks.reach import TAILNET_RANGE as TAILNET_RANGE
from stacks.reach import private_tld
from stacks.remote_model import RemoteAccess
from stacks.rules import _static_address, free_address
from stacks.special_names import special_use

REMOTE = "iluvatar:remoteAccess"
SECRET = "tailscaleOauthClientSecret"  # noqa: S105 - the secret's config key, not a secret
# The headscale flavour's subnet router's own Headscale user (plans.remote_access.ROUTER_USER): its step removes that
# user's offline router nodes, so no member may be it.
ROUTER_USER = "iluvatar-router"
# No cluster address and no lent range: what a caller that knows neither passes.
NO_CLUSTERS = ClustersOwn(MappingProxyType({}))


def tailnet_group(group: str) -> str:
    """The tailnet's name for an identity group: `group:` and the group in lower case, each run of other characters
    one '-' (`example:homelab-admins` is `group:example-homelab-admins`; a policy group is one word after `group:`)."""
    return "group:" + (re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-") or "group")


def base_domain(remote: RemoteAccess, network: Network) -> str:
    """Headscale's MagicDNS domain: the stack's, else `tailnet.<network.domain>`."""
    assert remote.headscale is not None
    return remote.headscale.base_domain or f"tailnet.{network.domain}"


def check(
    remote: RemoteAccess | None,
    remote_set: bool,
    network: Network | None,
    ainur_set: bool,
    identity: Identity | None,
    identity_set: bool,
    apps: Sequence[tuple[int, App]],
    taken: Mapping[IPv4Address, str],
    secrets: Collection[str],
    arda_patches: Sequence[Mapping[str, object]] = (),
    ports_written: Sequence[str] = (),
    free_of: Container[IPv4Address] = (),
    zone_names: Mapping[str, str] | None = None,
    clusters: ClustersOwn = NO_CLUSTERS,
    offer: Callable[[], IPv4Address | None] | None = None,
    fixed: Collection[IPv4Address] = (),
    servers: Sequence[tuple[str, str]] = (),
) -> list[Problem]:
    """Every remote access rule. `taken` maps the LAN's static addresses (machines, VIPs, the front door) to what holds them;
    `free_of`: what an address suggested as free must not be (the whole address table and the lent ranges,
    stacks.rules.Taken), `taken`'s keys if empty.
    `ports_written`: the apps of the stack file that list ports, even one refused (and so not in `apps`) for another mistake.
    `zone_names`: the internal zone's names that are not apps (machines, the VIPs', the gateways', the Git mirror's,
    identity's), with what owns each.
    `clusters`: the clusters' own addresses a route must not open to a group kept off them, and the lent ranges no route
    may run into (stacks.addresses.clusters_own).
    `fixed`: the address table's addresses and network.gateway, whose /32 in a lent range is said by the rule that places
    the address (`lent_routes`).
    `offer`: the free address to suggest, one no other message offered (stacks.load._free_beside, which the address
    table's messages share), else the first outside `free_of`.
    `servers`: the other layers' servers written as a name, with their keys (stacks.addresses.server_names)."""
    secret = f"iluvatar:{SECRET}"
    if remote is None:
        if not remote_set and SECRET in secrets:
            return [Problem(secret, f"is set, but {REMOTE} is not; set {REMOTE} (flavour: tailscale), or remove the secret")]
        return []
    out: list[Problem] = []
    out += _flavour(remote, ainur_set, secrets)
    if network is not None:
        out += _overlap(network)
        # A /32 route at Headscale's own address is the route's slip, unless something else holds that address (then
        # Headscale's is, said at headscale.ip): `taken` leaves the routes out.
        own = remote.headscale.ip if remote.headscale is not None and remote.flavour == "headscale" and remote.headscale.ip not in taken else None
        said = list(_routes(remote, network, apps, clusters, own))
        out += said
        # A route refused above is said once: its fix leaves the lent ranges out already.
        skip = {i for i in range(len(remote.routes)) if any(p.path == f"{REMOTE}.routes[{i}]" for p in said)}
        out += [p for p, refused in lent_routes(remote, network, clusters.lent, fixed, skip, clusters.waiting, clusters.workers) if refused]
        if remote.headscale is not None and remote.flavour == "headscale":
            out += _headscale(remote, network, taken, apps, free_of or frozenset(taken), zone_names or {}, offer, servers)
    if remote.flavour == "tailscale":
        # The routers run on Arda (the Connector's pods) only in this flavour.
        out += _cluster_overlap(arda_patches)
    # An app refused for a mistake in its ports still has them: reach: ports naming it is not wrong.
    out += _access(remote, identity, identity_set, sorted({*ports_written, *(a.name for _, a in apps if a.ports)}), ainur_set)
    if remote.flavour == "headscale":
        out += _headscale_users(remote)
    else:
        out += _tailscale_logins(remote)
    return out


def _flavour(remote: RemoteAccess, ainur_set: bool, secrets: Collection[str]) -> Iterator[Problem]:
    secret = f"iluvatar:{SECRET}"
    other = "headscale" if remote.flavour == "tailscale" else "tailscale"
    if getattr(remote, other) is not None:
        yield Problem(f"{REMOTE}.{other}", f"is set, but flavour is {remote.flavour}, which does not use it; remove it")
    if remote.flavour == "tailscale":
        if remote.tailscale is None:
            yield Problem(
                f"{REMOTE}.tailscale",
                "is required for flavour tailscale: {oauthClientId: ..., replacePolicy: true}, the OAuth client (scopes policy_file, "
                "dns, oauth_keys) Pulumi uses; it makes the operator's own client",
            )
        elif not remote.tailscale.replace_policy:
            yield Problem(
                f"{REMOTE}.tailscale.replacePolicy",
                "is false: the first `pulumi up` replaces the tailnet's whole policy file with Iluvatar's (its groups, rules and "
                "route approvals), and every rule, group, tag owner, SSH or exit-node grant already there is lost; copy them "
                "from the admin console's Access controls first, then set replacePolicy: true",
            )
        if SECRET not in secrets:
            yield UnsetSecret(
                secret,
                f"is required for flavour tailscale: the OAuth client's secret; run `pulumi config set --secret {secret} <value>`",
                (secret,),
            )
        return
    if remote.headscale is None:
        yield Problem(
            f"{REMOTE}.headscale",
            "is required for flavour headscale: {url: https://<its public name>, ip: <its LAN address>}, where phones reach it",
        )
    if not ainur_set:
        yield Problem(f"{REMOTE}.flavour", "headscale runs on the Ainur, which outlive Arda (the way in while Arda is rebuilt); set iluvatar:ainur")
    if SECRET in secrets:
        yield Problem(secret, "is set, but flavour is headscale, which has no OAuth client; remove the secret")


def _overlap(network: Network) -> Iterator[Problem]:
    """A LAN or VLAN inside the tailnet's range: a device's address would shadow a machine's, and the tailnet's own
    resolver (100.100.100.100) another."""
    why = f"the addresses a tailnet gives its devices ({REMOTE} is on), so a device could shadow a machine of it; renumber it"
    if network.lan.overlaps(TAILNET_RANGE):
        yield Problem("iluvatar:network.lan", f"{network.lan} overlaps {TAILNET_RANGE}, {why}")
    for i, vlan in enumerate(network.vlans):
        if vlan.cidr.overlaps(TAILNET_RANGE):
            yield Problem(f"iluvatar:network.vlans[{i}].cidr", f"{vlan.cidr} overlaps {TAILNET_RANGE}, {why}")


def _cluster_overlap(patches: Sequence[Mapping[str, object]]) -> Iterator[Problem]:
    """Arda's pod or service subnets (set by a patch's cluster.network) inside the tailnet's range: tailscaled in the
    subnet routers drops what comes into them from that range on any interface but its own (tailscale.com v1.102.3
    util/linuxfw/iptables_runner.go:700-709, the CGNAT drop rule), so pods and Services could not answer through them."""
    for k, patch in enumerate(patches):
        cluster = patch.get("cluster") if "kind" not in patch else None
        network = cluster.get("network") if isinstance(cluster, dict) else None
        if not isinstance(network, dict):
            continue
        for key in ("podSubnets", "serviceSubnets"):
            for i, value in enumerate(network.get(key) or ()):
                try:
                    subnet = IPv4Network(str(value), strict=False)
                except ValueError:
                    continue  # an IPv6 subnet, or one the patch rules refuse
                if subnet.overlaps(TAILNET_RANGE):
                    yield Problem(
                        f"iluvatar:arda.patches[{k}].cluster.network.{key}[{i}]",
                        f"{value} overlaps {TAILNET_RANGE}, the addresses a tailnet gives its devices ({REMOTE} is on): the subnet "
                        "routers' tailscaled drops traffic from that range that did not come over the tailnet, so pods there "
                        "could not answer; pick another range (Talos's default is 10.244.0.0/16 for pods, 10.96.0.0/12 for Services)",
                    )


def _routes(
    remote: RemoteAccess,
    network: Network,
    apps: Sequence[tuple[int, App]] = (),
    clusters: ClustersOwn = NO_CLUSTERS,
    headscale: IPv4Address | None = None,
) -> Iterator[Problem]:
    """The routes' rules. `headscale`: Headscale's address when it is Headscale's alone, which no route may name."""
    own = [("network.lan", network.lan), *((f"network.vlans[{i}].cidr", v.cidr) for i, v in enumerate(network.vlans))]
    known = ", ".join(f"{path} {net}" for path, net in own)
    seen: dict[IPv4Network, int] = {}
    # A route opens every port of what it holds to each group with reach: routes. The clusters' own addresses are opened
    # by reach: kubernetes, port by port (plans.remote_access.destinations): a group without it is kept off the clusters,
    # and a route over them would give it SSH, both API servers and the kubelets all the same. A group with it reaches the
    # clusters already, and a route to a Pi's SSH is then the owners' own choice.
    kept_off = kept_off_groups(remote)
    for i, route in enumerate(remote.routes):
        path = f"{REMOTE}.routes[{i}]"
        outside = not any(route.subnet_of(net) for _, net in own)
        # A CIDR holds another or is disjoint from it: a route no network holds either holds some of them whole (it is
        # wider than them, and holds addresses beyond them too) or none.
        wider = [(key, net) for key, net in own if net.subnet_of(route)] if outside else []
        if wider:
            # Each network it holds stands for it as a route of its own would (`_narrowed`), so the routes offered validate.
            standing = [_narrowed(net, network, clusters, bool(kept_off)) for _, net in wider]
            parts = [part for n in standing for part in n.rest]
            shown = _and([f"{key} {net}" for key, net in wider])
            left: list[str] = []
            if any(n.over_pool for n in standing):
                left.append(f"network.loadBalancerPool {network.load_balancer_pool}")
            if any(n.held for n in standing):
                left.append("the clusters' own addresses")
            left += list(dict.fromkeys(f"{what} {r}" for n in standing for what, r in n.lent))
            gateways = list(dict.fromkeys(f"{key} {ip}" for n in standing for key, ip in n.routers))
            workers = list(dict.fromkeys(w for n in standing for w in n.workers))
            kept = [f"{_and(left)}, which a route may not hold"] if left else []
            kept += [f"the router's {_and(gateways)}, which a group kept off the clusters should not reach either"] if gateways else []
            kept += [_workers_note(workers)] if workers else []
            less = f" (leaving out {'; and '.join(kept)})" if kept else ""
            beyond = route.num_addresses - sum(n.num_addresses for _, n in wider)
            yield Problem(
                path,
                f"{route} is wider than the homelab's networks: it holds {shown}, and {beyond:,} addresses beyond them, none of the "
                "homelab's, which the subnet router would advertise to the tailnet as reached through it; route the homelab's own "
                f"instead: {', '.join(str(p) for p in parts)}{less}",
            )
        elif outside:
            yield Problem(
                path,
                f"{route} is outside the homelab's networks ({known}); the subnet router advertises only those: "
                "narrow it, or add the network to network.vlans",
            )
        # Two CIDRs overlap only when one holds the other: the smaller is advertised twice, as a route of its own and
        # inside the larger, and removing it alone would not take it off the tailnet.
        earlier = next(((j, other) for other, j in seen.items() if route.overlaps(other)), None)
        if earlier is not None:
            j, other = earlier
            if route == other:
                yield Problem(path, f"{route} is already routes[{j}]; remove one")
            elif route.subnet_of(other):
                yield Problem(path, f"{route} is inside routes[{j}] {other}, which advertises it already; remove it, or narrow routes[{j}]")
            else:
                yield Problem(path, f"{route} holds routes[{j}] {other}, which it advertises again; remove routes[{j}], or narrow this one")
        seen.setdefault(route, i)
        if outside:
            continue
        if headscale is not None and remote.headscale is not None and route == IPv4Network(headscale):
            # The route is the slip, not Headscale's address: a client reaches Headscale at its URL through the router's
            # port forward to headscale.ip, to join the tailnet and after, and never through a subnet router it advertises.
            yield Problem(
                path,
                f"{route} is Headscale's own address ({REMOTE.removeprefix('iluvatar:')}.headscale.ip): clients reach Headscale at "
                f"{remote.headscale.url} through the port forward, before they join the tailnet and after, never through the "
                "subnet router; remove the route",
            )
            continue
        pool = network.load_balancer_pool
        first, last = route.network_address, route.broadcast_address
        narrowed = _narrowed(route, network, clusters, bool(kept_off))
        over_pool, held, lent, rest = narrowed.over_pool, narrowed.held, narrowed.lent, narrowed.rest
        if not over_pool and not held:
            continue
        if over_pool and not held:
            # A raw-port app's address is advertised by `reach: ports`, its ports alone, and only then does its policy let
            # the Connector's pods in (plans.ports): with Tailscale a route to it is dropped at the app.
            raw = {a.address: (k, a) for k, a in apps if a.ports and a.address is not None}
            apps_held = [ip for ip in raw if first <= ip <= last]
            inside = int(min(last, pool.end)) - int(max(first, pool.start)) + 1
            if apps_held and len(apps_held) == inside:
                names = ", ".join(f"apps[{raw[ip][0]}].address ({raw[ip][1].name})" for ip in sorted(apps_held))
                what = f"is {names}, a raw-port app's" if len(apps_held) == 1 else f"holds only raw-port apps' addresses, {names}"
                yield Problem(
                    path,
                    f"{route} {what}: the tailnet reaches such an app through reach: ports, which advertises its address with "
                    "its ports alone (and, in flavour tailscale, lets the router's pods past the app's policy, which a route does "
                    "not); remove the route and give the groups that should reach them reach: ports",
                )
                continue
        said: list[str] = []
        if over_pool:
            # The pool is Arda's Services: envoy-external among them, which only the public side reaches, and every
            # LoadBalancer Service an app adds. What the tailnet may reach of it is advertised one address at a time
            # (envoy-internal's /32 for the apps), so a route over the pool opens what `access` never granted.
            said.append(
                f"{route} covers network.loadBalancerPool {pool}, Arda's Services, envoy-external among them: the tailnet would "
                "reach every one, though remote access reaches the apps through envoy-internal alone"
            )
        if held:
            named = [f"{low if low == high else f'{low}-{high}'} ({owner.replace(' (', ', ').removesuffix(')')})" for low, high, owner in held]
            shown = ", ".join(named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
            what = f"is {held[0][2]}" if route.num_addresses == 1 else f"covers the clusters' own addresses {shown}"
            groups = ", ".join(kept_off)
            one = len(kept_off) == 1
            # A BMC is no machine of a cluster but holds them all: its API powers, reflashes and opens the serial
            # console of each machine in its board (plans.power).
            bmc = any(".power.bmc.address" in owner for _, _, owner in held)
            said.append(
                f"{'it also' if over_pool else route} {what}: {groups} reach{'es' if one else ''} routes (every port of each routed "
                f"address) but not kubernetes, so the tailnet would open to {'it' if one else 'them'} the SSH, API server and "
                f"kubelet of whichever machine holds each{' (a BMC: the power, reflashing and serial console of the machines in its board)' if bmc else ''}"
                ", "
                f"which {'its' if one else 'their'} grant withholds"
            )
        left_out = [f"{what} {r}" for what, r in lent]
        if rest:
            fix = f"route {', '.join(str(n) for n in rest)} instead"
            notes = [f"{_and(left_out)}, whose addresses are only lent"] if left_out else []
            notes += (
                [f"the router's {_and([f'{key} {ip}' for key, ip in narrowed.routers])}, which a group kept off the clusters should not reach either"]
                if narrowed.routers
                else []
            )
            notes += [_workers_note(narrowed.workers)] if narrowed.workers else []
            if notes:
                fix += f" (leaving out {'; and '.join(notes)})"
        elif over_pool:
            fix = "remove it (the apps behind the gateways are reached through reach: apps, a raw-port app's own ports through reach: ports)"
        else:
            fix = "remove it"
        if held and not over_pool:
            fix += f", or give {groups} reach: kubernetes if {'it' if len(kept_off) == 1 else 'they'} should reach the clusters"
        yield Problem(path, "; ".join(said) + f"; {fix}")


# Why a group kept off the clusters should not reach an Arda worker: a worker reset or reflashed runs Talos in
# maintenance mode at its inventory address until the next `up` (plans.bringup's probe "maintenance"), as a machine
# discovered does until its apply step, and maintenance mode applies a configuration from anyone (`_lent_harm`).
WORKER_WHEN = "in maintenance mode (a worker reset or reflashed, until the next `up`; a machine newly discovered, until its apply)"


def kept_off_groups(remote: RemoteAccess) -> list[str]:
    """The groups kept off the clusters: they reach the routes but not kubernetes (`_routes`)."""
    return [g.group for g in remote.access if "routes" in g.reach and "kubernetes" not in g.reach]


# Why a route into a lent range is refused, beyond what every lent address risks. In maintenance mode Talos applies a
# configuration from a client of any role, one with no certificate too (talosctl apply-config --insecure):
# siderolabs/talos internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:194-198 asks for the admin role
# only once the machine has its configuration, and internal/app/machined/pkg/system/services/machined.go:57-61 lets the
# reader role call ApplyConfiguration.
def _maintenance(remote: RemoteAccess) -> str:
    """Why a machine waiting in maintenance mode must not be routed to: who could take it over. A route opens every port
    of what it holds only to the groups with reach: routes (plans.remote_access.destinations)."""
    reaching = [g.group for g in remote.access if "routes" in g.reach]
    api = "runs Talos in maintenance mode, whose API (port 50000) applies a machine configuration sent by anyone (talosctl apply-config --insecure)"
    if not reaching:
        return f"{api}: no group reaches routes today, but the day one does, each of its devices could take the machine over"
    return f"{api}, so each device of {_and(reaching)} (reach: routes) could take the machine over before it is the household's"


def _lent_harm(lent: Lent, waiting: Collection[str], remote: RemoteAccess) -> str | None:
    """Why a route into `lent` is refused, beyond what every lent address risks; None where the devices lent it are the
    household's own, which the user may mean to reach (warned of). In maintenance mode Talos applies a configuration
    from a client of any role, one with no certificate too: siderolabs/talos
    internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:194-198 asks for the admin role only once the
    machine has its configuration, and internal/app/machined/pkg/system/services/machined.go:57-61 lets the reader
    role call ApplyConfiguration."""
    if lent.key == DISCOVERY_POOL:
        return f"a machine waiting in the discovery pool {_maintenance(remote)}"
    if lent.key in waiting:
        # In proxy mode a machine waiting to be discovered on network.lan is lent the router's pool (stacks.discovery).
        return f"in proxy mode the router lends {lent.key} to the machines waiting to be discovered (arda.discovery), and each {_maintenance(remote)}"
    if lent.lender == "held":
        return (
            f"{ROUTER_POOL} is the pool the router lent before its DHCP went off: no reservation keeps a device there, and "
            "each device leaves it when its lease ends"
        )
    return None


def lent_routes(
    remote: RemoteAccess,
    network: Network,
    lent: Sequence[Lent],
    fixed: Collection[IPv4Address] = (),
    skip: Container[int] = (),
    waiting: Collection[str] = (),
    worker_addresses: Mapping[IPv4Address, str] = MappingProxyType({}),
) -> Iterator[tuple[Problem, bool]]:
    """A route into a lent range (`lent`: stacks.addresses.route_ranges), whatever the groups reach, with whether it is
    refused: the tailnet would reach every port of whichever device is lent an address of it. Refused where machines
    wait to be discovered (a machine there takes a configuration from anyone, `_lent_harm`), a /32 there too, and the
    router's old pool in dhcp mode (no device stays there), and a route holding nothing but lent addresses (it reaches
    no device for good); a route that also holds fixed addresses and runs into the other ranges (network.dhcpRange, the
    router's pool in proxy mode) is warned of (stacks.warn._routes_into_lent): the devices lent them are the
    household's own, which the user may mean to reach. The message names the route's every lent range with the part it
    holds, and the routes without them, which validate with no warning of their own.
    Left to other rules: the routes `_routes` refuses (`skip`), which leave the lent ranges out already; a /32 to a
    fixed address (`fixed`), said by the rule that places that address inside the range (stacks.addresses.check,
    stacks.discovery's pool rule), whose fix moves the range or the device; a /32 in a range the router lends (proxy
    mode, or no Ainur) where no machine waits, which may be a device it holds a reservation for
    (stacks.warn._routes_into_lent).
    `waiting`: the lent ranges machines waiting to be discovered are lent (stacks.addresses.waiting_range), refused as
    the discovery pool is: the router's pool where it lends it to them (proxy mode). `worker_addresses`: Arda's
    workers' (stacks.addresses.ClustersOwn.workers), which the routes offered leave out for a group kept off the
    clusters, as they do the router's."""
    kept = bool(kept_off_groups(remote))
    for i, route in enumerate(remote.routes):
        if i in skip or not any(route.subnet_of(net) for net in network.subnets()):
            continue
        one = route.num_addresses == 1
        if one and route.network_address in fixed:
            continue
        # A /32 where the router lends may be a device it holds a reservation for, but not where machines wait to be
        # discovered: those take whichever address is free.
        reached, inside = lent_reached(route, [r for r in lent if not (one and r.lender == "router" and r.key not in waiting)])
        if not reached:
            continue
        first, last = route.network_address, route.broadcast_address
        # A group kept off the clusters is warned of a route to the router (stacks.warn._routes_to_a_router).
        gateways = [(key, ip) for key, ip in routers(network) if first <= ip <= last] if kept else []
        # And of Arda's workers (stacks.warn._routes_over_workers).
        workers = [(ip, owner) for ip, owner in sorted(worker_addresses.items()) if first <= ip <= last] if kept else []
        closed = [(r.first, r.last) for r in reached] + [(ip, ip) for _, ip in gateways] + [(ip, ip) for ip, _ in workers]
        rest = [net for net in _rest(first, last, closed) if not hostless(network, net)]
        parts = [
            f"{r.shown} ({'all of it' if r.whole else f'{r.first}-{r.last} of it' if r.first != r.last else f'{r.first} of it'})" for r in reached
        ]
        harm = list(dict.fromkeys(h for r in reached if (h := _lent_harm(r.lent, waiting, remote)) is not None))
        if rest:
            fix = f"route {', '.join(str(n) for n in rest)} instead"
            notes = (
                [f"the router's {_and([f'{key} {ip}' for key, ip in gateways])}, which a group kept off the clusters should not reach either"]
                if gateways
                else []
            )
            notes += [_workers_note([_shown(ip, owner) for ip, owner in workers])] if workers else []
            if notes:
                fix += f" (leaving out {'; and '.join(notes)})"
        else:
            fix = "give the device a fixed address outside the lent ranges and route that"
        problem = Problem(
            f"{REMOTE}.routes[{i}]",
            f"{route} runs into {_and(parts)}, addresses that are only lent: the tailnet would reach every port of whichever "
            f"device is lent one{''.join(f', and {h}' for h in harm)}; {fix}",
        )
        yield problem, inside or bool(harm)


def _shown(ip: IPv4Address, owner: str) -> str:
    """An address with its owner, as the messages show the clusters' own: `192.168.0.31 (nodes[6].ip, gandalf)`."""
    return f"{ip} ({owner.replace(' (', ', ').removesuffix(')')})"


def _workers_note(workers: Sequence[str]) -> str:
    """What a route offered to a group kept off the clusters leaves out of Arda's workers, and why (stacks.warn
    ._routes_over_workers)."""
    return f"Arda's worker{'s' if len(workers) > 1 else ''} {_and(list(workers))}, whose Talos API {WORKER_WHEN} applies a machine configuration sent by anyone"


def _and(items: Sequence[str]) -> str:
    return f"{', '.join(items[:-1])} and {items[-1]}" if len(items) > 1 else items[0]


@dataclass(frozen=True)
class Narrowed:
    """What a route inside the homelab's networks holds that a route may not (`_narrowed`), and what it may hold."""

    over_pool: bool  # it runs into network.loadBalancerPool
    held: list[tuple[IPv4Address, IPv4Address, str]]  # the clusters' own addresses it holds (ClustersOwn.within)
    lent: list[tuple[str, AddressRange]]  # the lent ranges it runs into
    routers: list[tuple[str, IPv4Address]]  # the router's addresses `rest` leaves out (stacks.warn._routes_to_a_router)
    workers: list[str]  # Arda's workers `rest` leaves out (stacks.warn._routes_over_workers), as messages show them
    rest: list[IPv4Network]  # the route itself when it holds neither the pool nor the clusters' own, else what is left


def _narrowed(route: IPv4Network, network: Network, clusters: ClustersOwn, kept: bool) -> Narrowed:
    """A route's refusals by what it holds (`_routes`), and the routes that may stand for it. `kept`: a group with
    reach: routes is kept off the clusters, so their own addresses may not be routed. What the route may still hold:
    itself less the pool, the clusters' addresses it covers and the lent ranges, each a route of its own that
    validates: a remainder running into a lent range is refused or warned of (`lent_routes`), as the lent addresses
    reach whichever device is lent them. For a group kept
    off the clusters the router's own addresses are left out too, which such a group is warned it would reach
    (stacks.warn._routes_to_a_router), so the routes offered validate without a warning."""
    pool = network.load_balancer_pool
    first, last = route.network_address, route.broadcast_address
    over_pool = first <= pool.end and pool.start <= last
    held = clusters.within(first, last) if kept else []
    gateways = [(key, ip) for key, ip in routers(network) if first <= ip <= last] if kept else []
    workers = [(ip, owner) for ip, owner in sorted(clusters.workers.items()) if first <= ip <= last] if kept else []
    if not over_pool and not held and not gateways and not workers:
        return Narrowed(False, [], [], [], [], [route])
    lent = [(r.key, r.range) for r in clusters.lent if r.range.start <= last and first <= r.range.end]
    closed = ([(pool.start, pool.end)] if over_pool else []) + [(low, high) for low, high, _ in held] + [(r.start, r.end) for _, r in lent]
    closed += [(ip, ip) for _, ip in gateways] + [(ip, ip) for ip, _ in workers]
    rest = [net for net in _rest(first, last, closed) if not hostless(network, net)]
    return Narrowed(over_pool, held, lent, gateways, [_shown(ip, owner) for ip, owner in workers], rest)


def _rest(first: IPv4Address, last: IPv4Address, closed: Sequence[tuple[IPv4Address, IPv4Address]]) -> list[IPv4Network]:
    """The networks of first..last outside the closed ranges, in order."""
    out: list[IPv4Network] = []
    start = int(first)
    for low, high in sorted(closed):
        lo, hi = max(int(low), int(first)), min(int(high), int(last))
        if lo > hi:
            continue
        if start < lo:
            out += summarize_address_range(IPv4Address(start), IPv4Address(lo - 1))
        start = max(start, hi + 1)
    if start <= int(last):
        out += summarize_address_range(IPv4Address(start), last)
    return out


def _headscale(
    remote: RemoteAccess,
    network: Network,
    taken: Mapping[IPv4Address, str],
    apps: Sequence[tuple[int, App]],
    free_of: Container[IPv4Address],
    zone_names: Mapping[str, str] = MappingProxyType({}),
    offer: Callable[[], IPv4Address | None] | None = None,
    servers: Sequence[tuple[str, str]] = (),
) -> Iterator[Problem]:
    assert remote.headscale is not None
    settings = remote.headscale
    path = f"{REMOTE}.headscale"
    yield from _static_address(f"{path}.ip", settings.ip, network, free_of)
    if settings.ip in taken:
        owner = taken[settings.ip]
        key = owner.split(" ", 1)[0]
        spare = offer() if offer is not None else free_address(network, free_of)
        move = f"give it a free one (e.g. {spare}) and move the router's port forward with it" if spare is not None else "give it a free one"
        if key == "storage.nfs.server" or key.endswith(".power.bmc.address"):
            # A device of the LAN (the NFS server, a BMC) exists outside the homelab and keeps its address: Headscale's,
            # the homelab's own, is the one that moves (stacks.addresses.check says a DNS server's alike). The NFS server
            # may be the slip, so its key is the other way out; a BMC's address is its own (stacks.addresses.ALONE).
            other = (
                f", or, if the NFS server is not at {settings.ip}, write its own address in storage.nfs.server" if key == "storage.nfs.server" else ""
            )
            yield Problem(
                f"{path}.ip",
                f"{settings.ip} is {owner}, a device of the LAN that keeps its address; Headscale needs one of its own (the port "
                f"forward's target): {move}{other}",
            )
        else:
            yield Problem(f"{path}.ip", f"{settings.ip} is {owner}; Headscale needs an address of its own (the port forward's target): {move}")
    parts = urlsplit(settings.url)
    host = parts.hostname or ""
    if parts.port not in (None, 443):
        yield Problem(
            f"{path}.url",
            f"{settings.url}: Headscale gets its certificate from Let's Encrypt by TLS-ALPN-01, which is asked on port 443 only; "
            "drop the port and forward TCP 443 to headscale.ip",
        )
    if _is_address(host):
        yield Problem(
            f"{path}.url",
            f"{settings.url}: Headscale's Let's Encrypt client (autocert, hscontrol/app.go:874-889 at v0.27.1) picks its "
            "certificate by the server name a client sends, and clients send none for an address (TLS SNI carries names "
            "only): use a public DNS name (a dynamic DNS name works)",
        )
    if under(host, network.domain):
        yield Problem(
            f"{path}.url",
            f"{settings.url}: {host} is in the internal zone network.domain {network.domain}, which only the LAN resolves; "
            "a phone away from home looks it up in public DNS: use a public name",
        )
    elif not _is_address(host) and (suffix := private_tld(host)) is not None:
        # The same reason as the internal zone: public DNS has no such name, and Let's Encrypt issues only for a name
        # under a public suffix (Boulder's policy refuses the rest as rejectedIdentifier).
        yield Problem(
            f"{path}.url",
            f"{settings.url}: {host} ends in .{suffix}, a private name no public resolver answers and Let's Encrypt does not "
            "certify; a phone away from home looks it up in public DNS: use a public name (a dynamic DNS name works)",
        )
    domain = base_domain(remote, network)
    key = f"{path}.baseDomain" if settings.base_domain is not None else path
    # The domain a message offers is one the rules below take: under the internal zone, holding none of its names (an
    # app's host, a machine's, the VIPs', the gateways', identity's), nor Headscale's own name, nor a zone of the homelab.
    every = [a.host for _, a in apps] + list(zone_names)
    free = next(
        (
            d
            for d in (f"{p}.{network.domain}" for p in ("tailnet", "ts", "vpn"))
            if d != domain
            and not any(under(n, d) for n in every)
            and not under(host, d)
            and not any(z is not None and under(z, d) for z in (network.domain, network.external_domain))
        ),
        f"a name under {network.domain}",
    )
    special = special_use(domain) if settings.base_domain is not None and special_use(network.domain) is None else None
    if special is not None:
        # The devices' names are looked up through the phones' and laptops' own resolvers, which hand a special-use name
        # to multicast DNS, to loopback or to a negative answer before MagicDNS's resolver (100.100.100.100) is asked.
        why = special[1].replace("the LAN's DNS server", "the tailnet's MagicDNS resolver")
        yield Problem(key, f"{domain} is under .{special[0]}, {why}, so no device's name under it would resolve; write {free}")
    zones = [z for z in (network.domain, network.external_domain) if z is not None and under(z, domain)]
    # Headscale refuses a base domain that is the server's host or a suffix of it (hscontrol/types/config.go:1013-1045,
    # isSafeServerURL, at v0.27.1): the devices' resolver would answer for the server, which would then be unreachable.
    holds_headscale = host == domain or host.endswith(f".{domain}")
    if zones:
        # Said once: every name of the zone is held by it too, which this one fix undoes; and Headscale's own name with
        # it, where the domain holds that too (one slip, one fix).
        what = f"{domain} is a zone of the homelab" if domain in zones else f"{domain} holds {zones[0]}, a zone of the homelab"
        joined = " and holds" if domain in zones else ", and"
        also = f"{joined} {host}, Headscale's own name (headscale.url), which the tailnet would answer for" if holds_headscale else ""
        yield Problem(key, f"{what}{also}; the devices' names need a domain of their own, e.g. {free}")
    elif holds_headscale:
        yield Problem(key, f"{domain} holds {host}, Headscale's own name (headscale.url); the tailnet would answer for it: pick another")
    # The other layers' servers written as a name at or under a base domain written here (a hosted Git forge, an alert
    # receiver, the NAS). Headscale hands the base domain to its clients as their MagicDNS domain (headscale v0.27.1
    # config-example.yaml:273-278, dns.base_domain), which each answers from the tailnet alone at 100.100.100.100
    # (tailscale.com v1.102.3 net/tsaddr/tsaddr.go:66): a name of public DNS there stops resolving for a phone or laptop
    # on the tailnet. The clusters are no tailnet clients (the subnet router is a pod of its own on the Ainur,
    # plans.remote_access.router_manifests, whose resolver is no other pod's nor a Pi's), so they resolve it as before.
    # A base domain already refused above is the one slip, said once.
    named = [(path, name) for path, name in servers if under(name, domain)]
    if named and settings.base_domain is not None and not zones and not holds_headscale:
        itself = [path for path, name in named if name == domain]
        held_names = [f"{name} ({path}'s server)" for path, name in named if name != domain]
        listed = " and ".join([*([f"is the server of {_and(itself)}"] if itself else []), *([f"holds {_and(held_names)}"] if held_names else [])])
        them = "them" if len(named) > 1 else "it"
        yield Problem(
            key,
            f"{domain} {listed}: Headscale makes the base domain the tailnet's MagicDNS domain, which its clients answer "
            f"from the tailnet alone (their resolver at 100.100.100.100), so a phone or laptop on the tailnet could no longer "
            f"resolve {them} (the clusters, no tailnet clients, still do); give the tailnet a domain of its own, e.g. {free}",
        )
    for i, app in apps:
        if app.host == host:
            yield Problem(
                f"iluvatar:apps[{i}].host",
                f"{app.host} is Headscale's public name (headscale.url {settings.url}), whose port forward goes to Headscale; "
                "give the app another host",
            )
    # Every name of the internal zone, one table (an app's host, a machine's, the VIPs', the gateways', the Git mirror's,
    # identity's): the clients' MagicDNS answers the base domain and every name under it from the tailnet alone, so a name
    # of the zone there stops resolving away from home, which is what remote access is for.
    held = [(f"apps[{i}].host", app.host) for i, app in apps if under(app.host, domain)]
    held += [(owner, name) for name, owner in sorted(zone_names.items()) if under(name, domain)]
    if held and not zones:
        if len(held) == 1 and held[0][1] == domain:
            names = f"is {held[0][0]}"
        else:
            names = "holds " + "; ".join(f"{said} {name}" if said.startswith("apps[") else f"{name}, {said}" for said, name in held)
        them = "them" if len(held) > 1 else "it"
        apps_only = len(held) == sum(1 for _, a in apps if under(a.host, domain))
        other = f", or give {'those apps' if len(held) > 1 else 'the app'} a host outside it" if apps_only else ""
        yield Problem(
            key,
            f"{domain} {names}; the tailnet's resolver would answer for {them}, not the internal zone's; set "
            f"remoteAccess.headscale.baseDomain to a domain no name of the internal zone is under (e.g. {free}){other}",
        )


def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _access(
    remote: RemoteAccess, identity: Identity | None, identity_set: bool, port_apps: Sequence[str] = (), ainur_set: bool = True
) -> Iterator[Problem]:
    known = [b.group for b in identity.groups] if identity is not None else []
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, grant in enumerate(remote.access):
        path = f"{REMOTE}.access[{i}]"
        if identity is None:
            if not identity_set and not ainur_set:
                # Setting identity alone is refused in turn (stacks.identity: Dex runs on the Ainur): the whole chain at once.
                yield Problem(
                    f"{path}.group",
                    f"{grant.group}: iluvatar:identity is not set, so no group is known, and remote access (either flavour) needs "
                    "it; identity in turn needs iluvatar:ainur (Dex runs on the Ainur), which is not set either: add the Ainur and "
                    "then iluvatar:identity, whose groups say who may sign in to what (and reach it remotely), or remove "
                    "iluvatar:remoteAccess",
                )
            elif not identity_set:
                yield Problem(
                    f"{path}.group",
                    f"{grant.group}: iluvatar:identity is not set, so no group is known; set iluvatar:identity, whose groups say who may "
                    "sign in to what (and, here, reach it remotely)",
                )
        elif grant.group not in known:
            yield Problem(
                f"{path}.group",
                f"{grant.group} is not a group the identity layer binds (identity.groups: {', '.join(known)}); bind it there first, "
                "or name one of those",
            )
        if grant.group in seen:
            yield Problem(f"{path}.group", f"{grant.group} is already access[{seen[grant.group]}].group; merge the two")
        else:
            name = tailnet_group(grant.group)
            if name in names:
                yield Problem(f"{path}.group", f"{grant.group} is {name} in the tailnet's policy, as access[{names[name]}].group is; rename one")
            names.setdefault(name, i)
        seen.setdefault(grant.group, i)
        if "routes" in grant.reach and not remote.routes:
            yield Problem(f"{path}.reach", f"{show(list(grant.reach))} names routes, but remoteAccess.routes is empty; add the routes, or remove it")
        if "ports" in grant.reach and not port_apps:
            yield Problem(
                f"{path}.reach", f"{show(list(grant.reach))} names ports, but no app has ports (iluvatar:apps[].ports); add them, or remove it"
            )
        elif "ports" in grant.reach and not grant.ports:
            yield Problem(
                f"{path}.ports",
                f"is required with reach: ports: name the apps with ports {grant.group} reaches (of {', '.join(sorted(port_apps))}); "
                "each app is granted on its own",
            )
        elif grant.ports and "ports" not in grant.reach:
            yield Problem(f"{path}.ports", f"{show(list(grant.ports))} names apps, but reach has no ports; add ports to reach, or remove it")
        for k, name in enumerate(grant.ports):
            if port_apps and name not in port_apps:
                yield Problem(f"{path}.ports[{k}]", f"{name} is not an app with ports (of {', '.join(sorted(port_apps))}); name one of those")
        for k, value in enumerate(grant.reach):
            if value in grant.reach[:k]:
                yield Problem(f"{path}.reach[{k}]", f"{value} is listed twice")


def _tailscale_logins(remote: RemoteAccess) -> Iterator[Problem]:
    """Each member is a Tailscale login, which Tailscale's policy file names whole, domain and all: the user's e-mail, or
    `user@github` for a GitHub login, `user@passkey` for a passkey (the tailnet policy file's syntax reference, "users",
    tailscale.com/docs/reference/syntax/policy-file; docs/remote-access.md). A login with nothing after or before its @
    (`bob@`, Headscale's form for a user it made itself) is no user of Tailscale's: the group's grant would reach no one."""
    for i, grant in enumerate(remote.access):
        for k, member in enumerate(grant.members):
            user, _, domain = member.rpartition("@")
            if user and domain:
                continue
            example = f"{user}@github" if user else "alice@example.org"
            form = "is Headscale's form of a user, not a Tailscale login" if user else "has no user before its @, so it is no Tailscale login"
            yield Problem(
                f"{REMOTE}.access[{i}].members[{k}]",
                f"{member} {form}: Tailscale's policy file names a user by the whole login the admin "
                "console's Users page shows (an e-mail, or user@github for a GitHub login, user@passkey for a passkey), so it "
                f"would match no one and the group would reach nothing; write the login, e.g. {example}",
            )


# A Headscale user name (hscontrol/util/dns.go:37-68, ValidateUsername, at v0.27.1): two characters or more, a letter
# first, then letters, digits, '-', '.', '_' and at most one '@'.
_HEADSCALE_USER = re.compile(r"^[^\W\d_][\w.-]*(@[\w.-]*)?$")


def _headscale_users(remote: RemoteAccess) -> Iterator[Problem]:
    """Each member is a Headscale user the enrolment makes (plans.remote_access.enroll_script): its login without the
    trailing @ (`bob@` is bob), which Headscale must take as a user name."""
    for i, grant in enumerate(remote.access):
        for k, member in enumerate(grant.members):
            user = member.removesuffix("@")
            if len(user) < 2 or not _HEADSCALE_USER.match(user):
                yield Problem(
                    f"{REMOTE}.access[{i}].members[{k}]",
                    f"{member}: Headscale would make the user {user or '(nothing)'}, which it refuses (two characters or more, a "
                    "letter first, then letters, digits, '-', '.', '_' and one '@'); e.g. bob@ for the user bob",
                )
            elif user == ROUTER_USER:
                yield Problem(
                    f"{REMOTE}.access[{i}].members[{k}]",
                    f"{member}: the Headscale user {ROUTER_USER} is the subnet router's own (its step removes that user's offline "
                    "router nodes); use the person's own login, e.g. bob@",
                )
